"""The MISP feed's state: one MISP event per UTC day, folded from enrichment events (pure).

Each record of ``indicators.enriched`` is folded into the day of its Kafka
timestamp: a checked summary or a ``verdict_change`` adds the indicator to
that day's event, or updates it. The state per indicator is a handful of
fields (:class:`~pipeline.outputs.misp.records.Observation`), so memory is
bounded by the days served times the indicators a day may hold, never by
the topic.

**Versions.** MISP pulls an event again when the manifest shows a later
``timestamp`` than the copy it has, and edits an attribute when the new one
carries a later ``timestamp``. So every change (a new indicator, a new
verdict, a higher TLP) stamps the day and the indicator's attributes with
the day's next version: the record's time in seconds, or one more than the
last version when that is later (two changes in one second still move it).
A repeat that changes nothing moves nothing.

**to_ids** follows the latest verdict: an indicator that becomes malicious
(``VTSTREAM_STIX_INDICATOR_AT`` engines or more) has ``to_ids`` set in every
served day that holds it, and one that stops being malicious has it cleared
everywhere, each such day getting a new version; the detection ratio of
each day stays the one seen that day.
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone

from pipeline.outputs.misp.records import CommunityScore, Observation, Sighted, parse
from pipeline.rules.privacy import UrlPrivacy

log = logging.getLogger("vtstream.outputs.misp.feed")

#: Namespace of the feed's uuids; an event's uuid is UUIDv5(app id + day) under it.
NAMESPACE = uuid.UUID("0b6a3f58-4f7e-5c1e-9d55-2f0e3c9a7b41")
#: Community scores waiting for their summary (they arrive just before it, on the same partition).
MAX_PENDING_SCORES = 4096
DAY_MS = 86_400_000
_EPOCH = date(1970, 1, 1).toordinal()


@dataclass(slots=True)
class Entry:
    """One indicator in one day's event."""

    obs: Observation
    community: str | None
    to_ids: bool
    version: int


@dataclass(slots=True)
class Day:
    """One UTC day's event: its indicators in arrival order, its version, what did not fit."""

    day: date
    uuid: str
    version: int = 0
    #: by the indicator's value: a value is only ever one kind (an address, a name, a URL, a hash)
    entries: dict[str, Entry] = field(default_factory=dict)
    #: undetected indicators, oldest first: a detected one may take their place when the day is full
    undetected: dict[str, None] = field(default_factory=dict)
    left_out: int = 0

    def stamp(self, second: int) -> int:
        """A new version: ``second``, or one more than the last one when that is later."""
        self.version = max(second, self.version + 1)
        return self.version

    @property
    def tlp(self) -> int:
        return max((e.obs.tlp for e in self.entries.values()), default=-1)

    def snapshot(self) -> "Day":
        """A copy to render away from the reader (in a thread): the reader changes entries in place."""
        return Day(self.day, self.uuid, self.version, {k: replace(e) for k, e in self.entries.items()},
                   left_out=self.left_out)


def day_of(timestamp_ms: int) -> date:
    return datetime.fromtimestamp(timestamp_ms // 1000, timezone.utc).date()


class FeedState:
    """Every served day's event, folded record by record; :meth:`prune` drops days past the window."""

    def __init__(self, *, app_id: str, days: int, max_indicators: int, indicator_at: int,
                 privacy: UrlPrivacy = UrlPrivacy()) -> None:
        self.app_id, self.window, self.max_indicators = app_id, days, max_indicators
        self.indicator_at, self.privacy = indicator_at, privacy
        self.days: dict[date, Day] = {}
        self._scores: OrderedDict[tuple[str, str], str] = OrderedDict()

    def event_uuid(self, day: date) -> str:
        return str(uuid.uuid5(NAMESPACE, f"{self.app_id} {day.isoformat()}"))

    def first_day(self, now: float) -> date:
        return day_of(int(now * 1000)) - timedelta(days=self.window - 1)

    def window_start_ms(self, now: float) -> int:
        """Where reading starts: 00:00 UTC of the oldest day served."""
        return int(datetime.combine(self.first_day(now), datetime.min.time(), timezone.utc).timestamp() * 1000)

    def fold(self, value: bytes | None, timestamp_ms: int, now: float) -> bool:
        """Fold one record; whether any served event changed. Records outside the window are ignored
        (older than its first day, or stamped later than tomorrow: a producer clock cannot open days)."""
        number, today = timestamp_ms // DAY_MS, int(now // 86400)
        if not today - self.window < number <= today + 1:  # whole days since 1970, no date per record
            return False
        found = parse(value, self.privacy)
        if isinstance(found, CommunityScore):
            self._scores[found.key] = found.score
            self._scores.move_to_end(found.key)
            while len(self._scores) > MAX_PENDING_SCORES:
                self._scores.popitem(last=False)
            return False
        if found is None:
            return False
        return self._observe(date.fromordinal(_EPOCH + number), found, timestamp_ms // 1000)

    def _observe(self, day: date, sighted: Sighted, second: int) -> bool:
        bucket = self.days.get(day)
        if bucket is None:
            bucket = self.days[day] = Day(day, self.event_uuid(day))
        obs, key = sighted.obs, sighted.obs.value
        community = self._scores.pop(sighted.key, None)
        old = bucket.entries.get(key)
        if old is not None:
            obs = _merged(old.obs, obs, self.indicator_at)
            community = community or old.community
            if obs == old.obs and community == old.community:
                return False
        elif len(bucket.entries) >= self.max_indicators and not self._make_room(bucket, obs):
            return False
        malicious = obs.verdict(self.indicator_at) == "malicious"
        bucket.entries[key] = Entry(obs, community, malicious, bucket.stamp(second))
        if obs.positives:
            bucket.undetected.pop(key, None)
        else:
            bucket.undetected[key] = None
        for other in self.days.values():  # to_ids follows the latest verdict on every day that holds it
            entry = other.entries.get(key)
            if other is not bucket and entry is not None and entry.to_ids != malicious:
                entry.to_ids, entry.version = malicious, other.stamp(second)
        return True

    def _make_room(self, bucket: Day, obs: Observation) -> bool:
        """A full day takes a detected indicator in place of its oldest undetected one; else leaves it out."""
        if obs.positives and bucket.undetected:
            evicted = next(iter(bucket.undetected))
            del bucket.undetected[evicted], bucket.entries[evicted]
            return True
        if bucket.left_out == 0:
            log.warning("MISP event of %s is full (%d indicators, VTSTREAM_MISP_FEED_MAX_INDICATORS): new indicators "
                        "of that day are left out, but a detection while an undetected one can make room",
                        bucket.day, self.max_indicators)
        bucket.left_out += 1
        return False

    def prune(self, now: float) -> list[date]:
        """Drop the days before the window; the days dropped."""
        first = self.first_day(now)
        gone = [day for day in self.days if day < first]
        for day in gone:
            del self.days[day]
        return gone

    def served(self) -> list[Day]:
        """The days that hold at least one indicator, oldest first."""
        return [self.days[d] for d in sorted(self.days) if self.days[d].entries]

    def find(self, event_uuid: str) -> Day | None:
        return next((d for d in self.served() if d.uuid == event_uuid), None)


def _merged(old: Observation, new: Observation, indicator_at: int) -> Observation:
    """A later observation of the same indicator on the same day: its facts win where it has them;
    the marking only rises; a change of verdict remembers the verdict it replaced."""
    previous = new.previous
    if previous is None and old.verdict(indicator_at) != new.verdict(indicator_at):
        previous = old.verdict(indicator_at)
    return replace(new, tlp=max(old.tlp, new.tlp), scan_date=new.scan_date or old.scan_date,
                   hashes=new.hashes or old.hashes, asn=new.asn or old.asn, country=new.country or old.country,
                   resolutions=new.resolutions or old.resolutions, previous=previous or old.previous)
