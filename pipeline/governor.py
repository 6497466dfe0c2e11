"""The quota governor: when the next VirusTotal request may go out.

Calls are spaced evenly at the key's per-minute rate (an aiolimiter bucket of
capacity one, so there is never a burst above the rate, not even at start),
and counted against the daily quota, which resets at 00:00 UTC. The gateway
awaits :meth:`Governor.acquire` before every HTTP request, relationship fetches
included, because each one costs quota.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Callable

from aiolimiter import AsyncLimiter

from .errors import DailyQuotaExhausted


def utc_day(now: float) -> str:
    return datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%d")


def seconds_to_midnight_utc(now: float) -> float:
    dt = datetime.fromtimestamp(now, timezone.utc)
    midnight = (dt + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - dt).total_seconds()


class Governor:
    """Per-minute pacing plus a daily counter.

    >>> import asyncio
    >>> g = Governor(rate_per_minute=600, daily_quota=2)
    >>> asyncio.run(g.acquire()); g.used_today
    1
    """

    def __init__(self, rate_per_minute: int, daily_quota: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._limiter = AsyncLimiter(1, 60.0 / rate_per_minute)
        self.daily_quota = daily_quota
        self._clock = clock
        self._day = utc_day(clock())
        self.used_today = 0

    @property
    def remaining_today(self) -> int:
        self._roll_day()
        return max(0, self.daily_quota - self.used_today)

    async def acquire(self) -> None:
        """Wait for the next slot; raise DailyQuotaExhausted when the day's quota is spent."""
        if self.remaining_today <= 0:
            now = self._clock()
            raise DailyQuotaExhausted(
                f"daily quota of {self.daily_quota} requests used; resets at 00:00 UTC",
                retry_after=seconds_to_midnight_utc(now))
        await self._limiter.acquire()
        self._roll_day()
        self.used_today += 1

    def _roll_day(self) -> None:
        day = utc_day(self._clock())
        if day != self._day:
            self._day, self.used_today = day, 0
