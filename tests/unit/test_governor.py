import asyncio
import time
from datetime import datetime, timezone

import pytest

from pipeline.errors import DailyQuotaExhausted
from pipeline.governor import Governor, seconds_to_midnight_utc

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_daily_quota_then_reset_at_midnight_utc():
    start = datetime(2026, 3, 1, 23, 59, 0, tzinfo=timezone.utc).timestamp()
    clock = Clock(start)
    gov = Governor(rate_per_minute=60000, daily_quota=2, clock=clock)

    async def run():
        await gov.acquire()
        await gov.acquire()
        with pytest.raises(DailyQuotaExhausted) as info:
            await gov.acquire()
        assert info.value.retry_after == pytest.approx(60.0)
        clock.t = start + 61
        await gov.acquire()
    asyncio.run(run())
    assert gov.used_today == 1 and gov.remaining_today == 1


def test_no_burst_even_at_start():
    """At 600/min calls are 0.1 s apart from the very first one: five calls take >= 0.4 s."""
    gov = Governor(rate_per_minute=600, daily_quota=100)

    async def run():
        t0 = time.monotonic()
        for _ in range(5):
            await gov.acquire()
        return time.monotonic() - t0
    assert asyncio.run(run()) >= 0.38


def test_seconds_to_midnight():
    t = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()
    assert seconds_to_midnight_utc(t) == 12 * 3600
