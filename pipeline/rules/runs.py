"""Replay runs: the pure rules behind ``vtstream replay`` (times, names, cost, budget, report).

A run reads a past range of a raw-indicator topic and feeds it through the
pipeline at replay priority. Everything here is a plain function of its
inputs and an injected ``now``; :mod:`pipeline.replay.driver` does the I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Iterable, Mapping

from pipeline.contracts.events import iso_utc
from pipeline.contracts.indicator import Indicator
from pipeline.contracts.run_state import DetectedRow
from pipeline.errors import ConfigError
from pipeline.settings.values import parse_duration, share

def parse_time(text: str, now: float) -> float:
    """ISO 8601 (``2026-11-01T00:00:00Z``) or a span back from ``now`` (``7d``, ``12h``) -> epoch seconds.

    >>> parse_time("2026-11-01T00:00:00Z", 0.0), parse_time("1h", 7200.0)
    (1793491200.0, 3600.0)
    """
    raw = text.strip()
    if re.fullmatch(r"[0-9.]+\s*(ms|s|m|h|d)", raw, re.IGNORECASE):
        return now - parse_duration(raw)
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(f"time {text!r}: give ISO 8601 (2026-11-01T00:00:00Z) or a span back "
                          "from now (7d, 12h)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


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


@dataclass
class Sighting:
    """What the range says about one indicator: how often, when, from which sources, and its verdict."""

    indicator: Indicator
    sightings: int = 0
    first_seen: float = math.inf
    last_seen: float = -math.inf
    sources: set[str] = field(default_factory=set)
    positives: int | None = None
    total: int | None = None

    def seen(self, ts: float, source: str | None) -> None:
        self.sightings += 1
        self.first_seen, self.last_seen = min(self.first_seen, ts), max(self.last_seen, ts)
        if source:
            self.sources.add(source)

    def report_row(self) -> DetectedRow:
        return DetectedRow(self.indicator, self.sightings, iso_utc(self.first_seen), iso_utc(self.last_seen),
                           tuple(sorted(self.sources)), self.positives, self.total)


def detected(sightings: Mapping[str, Sighting], earlier: Iterable[DetectedRow], threshold: int
             ) -> tuple[DetectedRow, ...]:
    """Report rows of every indicator now detected (``positives >= threshold``), merged with an earlier
    invocation's rows of the same run (sighting counts add up, the newest verdict wins)."""
    rows = {row.key: row for row in earlier}
    for item in sightings.values():
        if item.positives is None or item.positives < threshold:
            continue
        row = item.report_row()
        before = rows.get(row.key)
        if before is not None:
            row = replace(row, sightings=row.sightings + before.sightings,
                          first_seen=min(row.first_seen, before.first_seen),
                          last_seen=max(row.last_seen, before.last_seen),
                          sources=tuple(sorted(set(row.sources) | set(before.sources))))
        rows[row.key] = row
    return tuple(sorted(rows.values(), key=lambda r: (-(r.positives or 0), -r.sightings, r.key)))


class Budget:
    """Caps the VirusTotal requests an invocation may spend; ``None`` means no cap.

    Each new indicator reserves its estimated cost when fed; when its answer
    arrives, what VirusTotal really charged replaces the estimate. Feeding stops
    when the next reservation would pass the cap.

    >>> b = Budget(2, per_lookup=1)
    >>> b.reserve("ip:1.1.1.1"), b.reserve("ip:2.2.2.2"), b.reserve("ip:3.3.3.3")
    (True, True, False)
    >>> b.answered("ip:1.1.1.1", 0); b.reserve("ip:3.3.3.3")
    True
    """

    def __init__(self, cap: int | None, per_lookup: int) -> None:
        self.cap, self.per_lookup = cap, per_lookup
        self._outstanding: dict[str, int] = {}
        self.spent = 0

    @property
    def committed(self) -> int:
        """Requests spent plus those reserved for answers still to come."""
        return self.spent + sum(self._outstanding.values())

    def reserve(self, key: str) -> bool:
        """Reserve one lookup for ``key``; False (nothing reserved) when the cap would be passed."""
        if self.cap is not None and self.committed + self.per_lookup > self.cap:
            return False
        self._outstanding[key] = self._outstanding.get(key, 0) + self.per_lookup
        return True

    def answered(self, key: str, requests: int) -> None:
        """An answer for ``key`` cost ``requests``: it replaces the reservation."""
        self._outstanding.pop(key, None)
        self.spent += requests

    def settled(self, key: str) -> None:
        """``key`` has its final summary: whatever it has not charged by now it never will
        (a sighting that joined another request's answer costs nothing)."""
        self._outstanding.pop(key, None)
