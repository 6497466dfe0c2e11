"""Replay runs: the pure rules behind ``vtstream replay`` (times, names, cost, budget, report).

A run reads a past range of a raw-indicator topic and feeds it through the
pipeline at replay priority. Everything here is a plain function of its
inputs and an injected ``now``; :mod:`pipeline.replay.driver` does the I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable

import datasketches

from pipeline.contracts.events import iso_utc, parse_iso
from pipeline.contracts.indicator import HASH_TYPES, Indicator
from pipeline.contracts.run_state import MAX_SOURCES, DetectedRow, SightingRow
from pipeline.errors import ConfigError
from pipeline.settings.groups import RetrySettings, VtSettings
from pipeline.settings.values import parse_duration, share

#: v3 files larger than this are uploaded through an upload URL: one request more (the client's limit).
DIRECT_UPLOAD_BYTES = 32 * 1024 * 1024


def parse_time(text: str, now: float) -> float:
    """ISO 8601 (``2026-11-01T00:00:00Z``) or a span back from ``now`` (``7d``, ``12h``) -> epoch seconds.

    >>> parse_time("2026-11-01T00:00:00Z", 0.0), parse_time("1h", 7200.0)
    (1793491200.0, 3600.0)
    """
    raw = text.strip()
    if re.fullmatch(r"[0-9.]+\s*(ms|s|m|h|d)", raw, re.IGNORECASE):
        return now - parse_duration(raw)
    try:
        return parse_iso(raw)
    except ValueError:
        raise ConfigError(f"time {text!r}: give ISO 8601 (2026-11-01T00:00:00Z) or a span back "
                          "from now (7d, 12h)") from None


def default_run_name(topic: str, since: str, until: str | None) -> str:
    """A run name from the topic and the range *as written*, so the same command resumes the same run.

    >>> default_run_name("indicators.raw", "2026-11-01T00:00:00Z", None)
    'indicators.raw_2026-11-01T000000Z_now'
    """
    name = f"{topic}_{since}_{until or 'now'}"
    return re.sub(r"[^A-Za-z0-9._-]", "", name.replace(" ", "_"))


def run_name(template: str, now: float) -> str:
    """A ``--run`` name with ``{date}`` replaced by the UTC date at ``now``, so a daily job started again
    the same day resumes the same run.

    >>> run_name("retrohunt-{date}", 1767225600.0), run_name("november", 0.0)
    ('retrohunt-2026-01-01', 'november')
    """
    name = template.replace("{date}", datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%d"))
    if "{" in name or "}" in name:
        raise ConfigError(f"run name {template!r}: the only placeholder is {{date}} (the UTC date)")
    return name


def budget_requests(text: str, daily_quota: int) -> int:
    """A ``--budget``: a number of requests (``400``), or a share of the daily quota (``15%``, ``0.15``).

    >>> budget_requests("400", 500), budget_requests("15%", 500), budget_requests("0.5", 500)
    (400, 75, 250)
    """
    raw = text.strip()
    if raw.isdigit():
        if int(raw) < 1:
            raise ConfigError("--budget: give at least 1 request, or a share of the daily quota such as 15%")
        return int(raw)
    try:
        return share(raw).of(daily_quota)
    except ValueError as exc:
        raise ConfigError(f"--budget {text!r}: give a number of requests (400) or a share of "
                          f"VTSTREAM_VT_DAILY_QUOTA (15% or 0.15); {exc}") from None


def duration_s(requests: int, rate_per_minute: int, daily_quota: int, used_today: int = 0) -> float:
    """How long ``requests`` calls take at the key's pace, waiting for midnight resets when a
    day's quota runs out (a fresh day allows ``daily_quota``).

    >>> duration_s(8, 4, 500), duration_s(600, 600, 500) // 3600
    (120.0, 24.0)
    """
    if requests <= 0:
        return 0.0
    pace = 60.0 / rate_per_minute
    today = max(0, daily_quota - used_today)
    if requests <= today:
        return requests * pace
    later = requests - today
    days = math.ceil(later / daily_quota)  # each further day starts after a full day's wait
    return days * 86400.0 + (later - (days - 1) * daily_quota) * pace


def worst_case(action: str, indicator_type: str, vt: VtSettings, retry: RetrySettings,
               upload_bytes: int | None = None) -> int:
    """The most VirusTotal requests one new indicator can cost: what a replay reserves before it feeds it.

    A lookup (v3: plus one per relationship in ``VTSTREAM_VT_RELATIONSHIPS``, plus
    the behaviour summary of a file with ``VTSTREAM_VT_BEHAVIOUR``). A URL, and a
    file VirusTotal does not know that may be uploaded (``upload_bytes``: its size;
    None when its labels do not allow it), can also be submitted and polled: the
    submission (a v3 file over 32 MB: two), one poll per attempt the retry tiers
    allow (``VTSTREAM_RETRY_MAX_ATTEMPTS``), and in v3 the report fetched again by
    the poll that finds the scan done.

    >>> vt, retry = VtSettings(), RetrySettings()
    >>> worst_case("submit_ip", "ip", vt, retry), worst_case("submit_url", "url", vt, retry)
    (1, 11)
    """
    if vt.api_version == "v2":
        lookup, report = 1, 0  # a v2 poll that finds the scan done is the report
    else:
        lookup = 1 + len(vt.relationships) + (1 if vt.behaviour and indicator_type in HASH_TYPES else 0)
        report = lookup
    if action == "submit_url":
        submission = 1
    elif action == "submit_file" and upload_bytes is not None:
        submission = 2 if vt.api_version == "v3" and upload_bytes > DIRECT_UPLOAD_BYTES else 1
    else:
        return lookup
    return lookup + submission + retry.max_attempts + report


class Budget:
    """A ceiling on the VirusTotal requests one invocation of a run causes; ``None`` means no cap.

    Before a sighting is fed it reserves its indicator's worst case
    (:func:`worst_case`), and the reservation travels with the work as its
    allowance, which the gateway never passes. What answers report is spent;
    when the work is over (a final answer, or a summary that needed no request)
    what it did not spend is released. Spending that no reservation of this
    invocation covers (answers to an earlier invocation's work) counts too, so
    the invocation never causes more than ``cap`` requests.

    >>> b = Budget(12)
    >>> b.reserve("r/0/1", 11), b.fits(1), b.fits(2)
    (True, True, False)
    >>> b.spend("r/0/1", 4); b.release("r/0/1"); b.committed
    4
    """

    def __init__(self, cap: int | None) -> None:
        self.cap = cap
        self.spent = 0
        self._held: dict[str, list[int]] = {}  # reserving ref -> [reserved, spent so far]
        self._unspent = 0  # reserved and not spent, over every held reservation

    @property
    def committed(self) -> int:
        """Requests spent plus those still reserved: the most this invocation's work can come to."""
        return self.spent + self._unspent

    @property
    def holding(self) -> bool:
        """True while some reservation may still be released."""
        return bool(self._held)

    def fits(self, cost: int) -> bool:
        return self.cap is None or self.committed + cost <= self.cap

    def reserve(self, ref: str, cost: int) -> bool:
        """Reserve ``cost`` requests for the work ``ref`` feeds; False (nothing reserved) when it does not fit."""
        if not self.fits(cost):
            return False
        self._held[ref] = [cost, 0]
        self._unspent += cost
        return True

    def spend(self, ref: str, requests: int) -> None:
        """An answer to the work of ``ref`` reported ``requests``."""
        self.spent += requests
        held = self._held.get(ref)
        if held is not None:
            covered = min(requests, held[0] - held[1])
            held[1] += requests
            self._unspent -= max(0, covered)

    def release(self, ref: str) -> None:
        """The work of ``ref`` is over: what it did not spend is free again."""
        held = self._held.pop(ref, None)
        if held is not None:
            self._unspent -= max(0, held[0] - held[1])


class UniqueCount:
    """The run's unique indicators over every invocation: a HyperLogLog sketch of their keys.

    Exact while small (the sketch lists what it saw), then within about 1 %
    (lg k = 14) in 8 KB however many there are, and an invocation adds to the
    last one's sketch, so a key seen in two invocations counts once. Apache
    DataSketches' HLL: one well-kept implementation instead of our own.

    >>> u = UniqueCount.of(b"")
    >>> for key in ("ip:1.1.1.1", "ip:2.2.2.2", "ip:1.1.1.1"): u.add(key)
    >>> UniqueCount.of(u.to_bytes()).estimate()
    2
    """

    LG_K = 14

    def __init__(self, sketch: "datasketches.hll_sketch") -> None:
        self._sketch = sketch

    @classmethod
    def of(cls, stored: bytes) -> "UniqueCount":
        if stored:
            try:
                return cls(datasketches.hll_sketch.deserialize(stored))
            except (RuntimeError, ValueError):
                pass  # unreadable: start again (the count restarts; nothing else depends on it)
        return cls(datasketches.hll_sketch(cls.LG_K, datasketches.tgt_hll_type.HLL_4))

    def add(self, key: str) -> None:
        self._sketch.update(key)

    def estimate(self) -> int:
        return round(self._sketch.get_estimate())

    def to_bytes(self) -> bytes:
        return bytes(self._sketch.serialize_compact())


@dataclass
class RunTally:
    """A replay invocation's tally of one indicator: how often it was sighted, when, from which sources,
    and its verdict (one sighting itself is an :class:`~pipeline.contracts.origin.Origin`)."""

    indicator: Indicator
    sightings: int = 0
    first_seen: float = math.inf
    last_seen: float = -math.inf
    sources: set[str] = field(default_factory=set)
    positives: int | None = None
    total: int | None = None
    answered_at: float | None = None

    def seen(self, ts: float, source: str | None) -> None:
        self.sightings += 1
        if ts < self.first_seen:
            self.first_seen = ts
        if ts > self.last_seen:
            self.last_seen = ts
        if source and len(self.sources) < MAX_SOURCES:
            self.sources.add(source)

    def answered(self, positives: int | None, total: int | None, at: float) -> None:
        self.positives, self.total, self.answered_at = positives, total, at

    @property
    def worth_keeping(self) -> bool:
        """Unanswered or detected: the rows a report needs (a clean verdict needs none)."""
        return self.answered_at is None or (self.positives or 0) >= 1

    def row(self, run: str, invocation: int) -> SightingRow:
        seen = self.sightings > 0
        return SightingRow(run, invocation, self.indicator, self.sightings, self.first_seen if seen else None,
                           self.last_seen if seen else None, tuple(sorted(self.sources)), self.positives,
                           self.total, self.answered_at)


def report_rows(rows: Iterable[SightingRow], legacy: Iterable[DetectedRow], threshold: int
                ) -> tuple[DetectedRow, ...]:
    """The report's detected indicators: every invocation's rows of an indicator added up (sightings
    summed, first and last seen widened, sources joined), with its newest verdict; those at
    ``positives >= threshold``. ``legacy``: rows a run state of the previous version kept.
    """
    merged: dict[str, SightingRow] = {}
    for row in rows:
        before = merged.get(row.indicator.key)
        merged[row.indicator.key] = row if before is None else _added(before, row)
    out = {row.key: row for row in legacy if (row.positives or 0) >= threshold}
    for key, row in merged.items():
        if row.answered_at is None or (row.positives or 0) < threshold or row.sightings == 0:
            continue
        found = DetectedRow(row.indicator, row.sightings, iso_utc(row.first_seen), iso_utc(row.last_seen),
                            row.sources, row.positives, row.total)
        earlier = out.get(key)
        if earlier is not None:
            found = DetectedRow(found.indicator, found.sightings + earlier.sightings,
                                min(found.first_seen, earlier.first_seen), max(found.last_seen, earlier.last_seen),
                                tuple(sorted(set(found.sources) | set(earlier.sources)))[:MAX_SOURCES],
                                found.positives, found.total)
        out[key] = found
    return tuple(sorted(out.values(), key=lambda r: (-(r.positives or 0), -r.sightings, r.key)))


def _added(a: SightingRow, b: SightingRow) -> SightingRow:
    firsts = [t for t in (a.first_seen, b.first_seen) if t is not None]
    lasts = [t for t in (a.last_seen, b.last_seen) if t is not None]
    verdict = b if (b.answered_at or -1.0) >= (a.answered_at or -1.0) else a
    return SightingRow(a.run, max(a.invocation, b.invocation), a.indicator, a.sightings + b.sightings,
                       min(firsts) if firsts else None, max(lasts) if lasts else None,
                       tuple(sorted(set(a.sources) | set(b.sources)))[:MAX_SOURCES], verdict.positives,
                       verdict.total, verdict.answered_at)
