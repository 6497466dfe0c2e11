"""The quota governor's state: one record on the compacted ``vt.quota`` topic.

The gateway's governor writes it after every VirusTotal call (and when a pause
starts); a restarted or failed-over gateway resumes from it, and ``vtstream
status`` reads it with no worker running. Both use this class, its table key
(:data:`GOVERNOR_KEY`) and its day and month roll-over (:meth:`QuotaState.rolled`),
so the writer and the reader cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Mapping

import orjson

from pipeline.contracts.reader import FieldReader
from pipeline.contracts.version import RECORD_VERSION
from pipeline.errors import RecordError

#: The governor's key in the quota table (and on vt.quota).
GOVERNOR_KEY = b"governor"


def utc_day(now: float) -> str:
    """The UTC day of ``now``: quotas reset at 00:00 UTC.

    >>> utc_day(0.0)
    '1970-01-01'
    """
    return datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%d")


def utc_month(now: float) -> str:
    """The UTC month of ``now``: monthly quotas reset on the 1st."""
    return datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m")


@dataclass(frozen=True, slots=True)
class QuotaState:
    """What survives a restart of the gateway, and what ``vtstream status`` shows.

    ``configured`` and ``virustotal`` are the two views of the key's allowances
    (the settings, and what VirusTotal reported: ``per_minute``/``daily``/...);
    the smaller of the two applies.
    """

    day: str
    month: str
    used_today: int = 0
    used_month: int = 0
    daily_quota: int = 0
    monthly_quota: int = 0
    rate_per_minute: int | None = None
    last_call_at: float | None = None
    blocked_until: float | None = None
    blocked_reason: str | None = None
    by_source: Mapping[str, int] = field(default_factory=dict)
    updated_at: float | None = None
    configured: Mapping[str, Any] | None = None
    virustotal: Mapping[str, Any] | None = None
    virustotal_note: str | None = None
    v: int = RECORD_VERSION

    def rolled(self, now: float) -> "QuotaState":
        """The state at ``now``: counts of a past UTC day (or month) are dropped.

        >>> QuotaState(day="2026-01-01", month="2026-01", used_today=9, used_month=9).rolled(0.0).used_today
        0
        """
        day, month = utc_day(now), utc_month(now)
        state = self
        if day != state.day:
            state = replace(state, day=day, used_today=0, by_source={})
        if month != state.month:
            state = replace(state, month=month, used_month=0)
        return state

    def to_bytes(self) -> bytes:
        return orjson.dumps({"v": self.v, "day": self.day, "used_today": self.used_today,
                             "daily_quota": self.daily_quota, "month": self.month, "used_month": self.used_month,
                             "monthly_quota": self.monthly_quota, "rate_per_minute": self.rate_per_minute,
                             "last_call_at": self.last_call_at, "blocked_until": self.blocked_until,
                             "blocked_reason": self.blocked_reason, "by_source": dict(self.by_source),
                             "updated_at": self.updated_at, "configured": self.configured,
                             "virustotal": self.virustotal, "virustotal_note": self.virustotal_note})

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "QuotaState":
        r = FieldReader.of("vt.quota record", raw)
        by_source = r.mapping("by_source", {})
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in by_source.values()):
            raise RecordError("vt.quota record", "by_source", "must map source names to integers")
        return cls(day=r.text("day"), month=r.text("month"), used_today=r.integer("used_today", 0),
                   used_month=r.integer("used_month", 0), daily_quota=r.integer("daily_quota", 0),
                   monthly_quota=r.integer("monthly_quota", 0), rate_per_minute=r.integer("rate_per_minute", None),
                   last_call_at=r.number("last_call_at", None), blocked_until=r.number("blocked_until", None),
                   blocked_reason=r.text("blocked_reason", None), by_source=by_source,
                   updated_at=r.number("updated_at", None), configured=r.mapping("configured", None),
                   virustotal=r.mapping("virustotal", None), virustotal_note=r.text("virustotal_note", None),
                   v=r.version)
