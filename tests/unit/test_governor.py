import asyncio
from datetime import datetime, timezone
from typing import Any, Coroutine

import pytest

from pipeline.errors import DailyQuotaExhausted
from pipeline.vt import governor as governor_module
from pipeline.vt.governor import LIVE_GRACE, Governor, seconds_to_midnight_utc

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeTime:
    """A wall clock, a monotonic clock and a sleep that only moves both clocks forward."""

    def __init__(self, wall: float = 1_000_000.0, *, yield_to_loop: bool = False) -> None:
        self.wall, self.mono = wall, 0.0
        self.slept: list[float] = []
        self._yield = yield_to_loop  # let other coroutines run (no real time passes)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.wall += seconds
        self.mono += seconds
        if self._yield:
            await asyncio.sleep(0)

    def governor(self, **kwargs: Any) -> Governor:
        return Governor(clock=lambda: self.wall, monotonic=lambda: self.mono, sleep=self.sleep, **kwargs)


def run_without_loop(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` with no event loop at all: it may only wait through the injected sleep.

    A wait on anything else (the loop's clock, a timer, a future) needs a running loop and
    fails here; a coroutine that completes in one step waited on the fake time only.
    """
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise AssertionError("the governor waited on the event loop instead of the injected sleep")


class _NoTimeModule:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the governor read time.{name}() instead of an injected clock")


@pytest.fixture
def no_time_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """The governor module's ``time`` refuses every use: only injected clocks may be read."""
    monkeypatch.setattr(governor_module, "time", _NoTimeModule())


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


def test_no_burst_even_at_start(no_time_module):
    """At 6/min calls are 10 s apart from the very first one, measured on the injected clocks only."""
    t = FakeTime()
    gov = t.governor(rate_per_minute=6, daily_quota=100)
    for _ in range(5):
        run_without_loop(gov.acquire())
    assert t.slept == [10.0, 10.0, 10.0, 10.0]
    assert gov.used_today == 5


def test_concurrent_callers_queue_one_interval_apart():
    """The live and the deferred gateway share a governor: their calls never start together."""
    slept: list[float] = []

    async def record_sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(0)

    gov = Governor(rate_per_minute=6, daily_quota=100, clock=lambda: 1_000_000.0, monotonic=lambda: 50.0,
                   sleep=record_sleep)

    async def run():
        await asyncio.gather(gov.acquire(), gov.acquire(), gov.acquire())
    asyncio.run(run())
    assert sorted(slept) == [10.0, 20.0]


def test_seconds_to_midnight():
    t = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()
    assert seconds_to_midnight_utc(t) == 12 * 3600


def test_restart_waits_out_the_interval_from_the_recorded_last_call():
    clock = Clock(1_000_000.0)
    first = Governor(rate_per_minute=6, daily_quota=100, clock=clock)
    asyncio.run(first.acquire())
    state = first.state()
    clock.t += 4.0
    slept = []

    async def fake_sleep(seconds):
        slept.append(seconds)
        clock.t += seconds

    restarted = Governor(rate_per_minute=6, daily_quota=100, clock=clock, sleep=fake_sleep)
    restarted.load(state)
    assert restarted.used_today == 1
    asyncio.run(restarted.acquire())
    assert sum(slept) == pytest.approx(6.0)  # 10 s interval, 4 s of it already passed
    assert restarted.used_today == 2


def test_counts_of_a_past_day_are_dropped_on_load():
    clock = Clock(datetime(2026, 5, 2, 1, 0, tzinfo=timezone.utc).timestamp())
    gov = Governor(rate_per_minute=60, daily_quota=10, clock=clock)
    gov.load({"day": "2026-05-01", "used_today": 9, "month": "2026-05", "used_month": 40})
    assert gov.used_today == 0 and gov.used_month == 40


def test_monthly_quota_and_source_caps():
    clock = Clock(datetime(2026, 5, 31, 12, 0, tzinfo=timezone.utc).timestamp())
    gov = Governor(rate_per_minute=60000, daily_quota=100, monthly_quota=3, source_caps={"noisy": 1},
                   clock=clock)

    async def run():
        await gov.acquire(source="noisy")
        with pytest.raises(DailyQuotaExhausted, match="source 'noisy'"):
            await gov.acquire(source="noisy")
        await gov.acquire(source="quiet")
        await gov.acquire()
        with pytest.raises(DailyQuotaExhausted, match="monthly") as info:
            await gov.acquire()
        assert info.value.retry_after == pytest.approx(12 * 3600)
    asyncio.run(run())


def test_pause_holds_every_caller(no_time_module):
    """A 429 pause is waited out on the injected wall clock, in slices a rebalance can interrupt."""
    t = FakeTime()
    gov = t.governor(rate_per_minute=60000, daily_quota=100)
    gov.pause(12.0, "429")
    run_without_loop(gov.acquire())
    assert t.slept == [5.0, 5.0, 2.0]
    assert gov.state()["blocked_until"] is None


def test_deferred_caller_waits_for_live_grace_on_the_injected_monotonic_clock(no_time_module):
    t = FakeTime()
    gov = t.governor(rate_per_minute=60000, daily_quota=100)
    with gov.serving(0):
        pass  # live work went idle at monotonic 0.0
    run_without_loop(gov.acquire(priority=1))
    assert t.slept == [LIVE_GRACE]
    assert t.mono == LIVE_GRACE and gov.used_today == 1


def test_deferred_work_waits_while_live_work_flows(no_time_module):
    t = FakeTime(yield_to_loop=True)
    gov = t.governor(rate_per_minute=60000, daily_quota=1000)
    order = []

    async def live():
        for i in range(10):
            with gov.serving(0):
                await gov.acquire(priority=0)
                order.append(f"live{i}")
                await t.sleep(0.02)

    async def deferred():
        await t.sleep(0.01)
        await gov.acquire(priority=1)
        order.append("poll")

    async def run():
        await asyncio.gather(live(), deferred())
    asyncio.run(run())
    assert order[-1] == "poll"


def test_deferred_caller_yields_on_request():
    from pipeline.vt.governor import Yielded

    gov = Governor(rate_per_minute=60000, daily_quota=1000)

    async def run():
        with gov.serving(0):
            with pytest.raises(Yielded):
                await gov.acquire(priority=1, should_yield=lambda: True)
    asyncio.run(run())


def test_lanes_are_an_ordered_list_live_then_replay_then_polls(no_time_module):
    t = FakeTime(yield_to_loop=True)
    gov = t.governor(rate_per_minute=60000, daily_quota=1000)
    order = []

    async def lane(priority, name, n, start):
        await t.sleep(start)
        for _ in range(n):
            with gov.serving(priority):
                await gov.acquire(priority=priority)
                order.append(name)
                await t.sleep(0.02)

    async def run():
        await asyncio.gather(lane(0, "live", 8, 0.0), lane(2, "poll", 1, 0.01), lane(1, "replay", 3, 0.01))
    asyncio.run(run())
    assert order == ["live"] * 8 + ["replay"] * 3 + ["poll"]
