"""The key's allowances: what is configured, what VirusTotal reports, and which one binds.

VirusTotal v3 tells a key's owner its allowances at
``GET /api/v3/users/{key}/overall_quotas``: per category (``api_requests_hourly``,
``api_requests_daily``, ``api_requests_monthly``) the ``user``'s own allowance and,
for a key in a group, the ``group``'s, each as ``{"allowed": N, "used": N}``. Both
bind, so the smaller allowance of the two counts. The gateway then uses, per
period, the smaller of that and the setting (:func:`effective`).

>>> body = {"data": {"api_requests_hourly": {"user": {"allowed": 60000, "used": 3}},
...                  "api_requests_daily": {"user": {"allowed": 1000, "used": 10},
...                                         "group": {"allowed": 800, "used": 500}}}}
>>> reported = reported_allowances(body)
>>> reported.daily, reported.daily_used, reported.monthly
(800, 500, None)
>>> effective(Allowances(per_minute=4, daily=500, monthly=0), reported)
Allowances(per_minute=4, daily=500, monthly=0)
>>> effective(Allowances(per_minute=2000, daily=5000, monthly=0), reported)
Allowances(per_minute=1000, daily=800, monthly=0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

_PERIODS = {"hourly": "api_requests_hourly", "daily": "api_requests_daily", "monthly": "api_requests_monthly"}


@dataclass(frozen=True, slots=True)
class Allowances:
    """Requests the gateway may make: per minute, per UTC day, per UTC month (0: no monthly limit)."""

    per_minute: int
    daily: int
    monthly: int = 0


@dataclass(frozen=True, slots=True)
class ReportedAllowances:
    """VirusTotal's view of the key: allowed and used per period (None: not reported)."""

    hourly: int | None
    daily: int | None
    monthly: int | None
    hourly_used: int | None = None
    daily_used: int | None = None
    monthly_used: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        return asdict(self)


def reported_allowances(body: Any) -> ReportedAllowances | None:
    """Read an ``overall_quotas`` answer; None when it carries no API request allowance at all."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        return None
    read = {period: _tightest(data.get(category)) for period, category in _PERIODS.items()}
    if all(allowed is None for allowed, _used in read.values()):
        return None
    return ReportedAllowances(*(read[p][0] for p in _PERIODS), *(read[p][1] for p in _PERIODS))


def _tightest(category: Any) -> tuple[int | None, int | None]:
    """(allowed, used) of whichever of ``user`` and ``group`` leaves the fewest requests."""
    best: tuple[int | None, int | None] = (None, None)
    best_left: int | None = None
    for holder in ("user", "group"):
        entry = category.get(holder) if isinstance(category, dict) else None
        allowed = _count(entry.get("allowed")) if isinstance(entry, dict) else None
        if allowed is None:
            continue
        used = _count(entry.get("used")) if isinstance(entry, dict) else None
        left = allowed - (used or 0)
        if best_left is None or left < best_left:
            best, best_left = (allowed, used), left
    return best


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def effective(configured: Allowances, reported: ReportedAllowances | None) -> Allowances:
    """Per period, the smaller of the setting and VirusTotal's allowance (the setting alone if None).

    An hourly allowance becomes a per-minute pace of a sixtieth of it (at least one a minute).
    """
    if reported is None:
        return configured
    per_minute = configured.per_minute
    if reported.hourly is not None:
        per_minute = min(per_minute, max(1, reported.hourly // 60))
    daily = min(configured.daily, reported.daily) if reported.daily else configured.daily
    monthly = configured.monthly
    if reported.monthly:
        monthly = min(monthly, reported.monthly) if monthly else reported.monthly
    return Allowances(per_minute, daily, monthly)
