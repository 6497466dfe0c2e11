import asyncio
from datetime import datetime, timezone
from typing import Any, Coroutine

import pytest

from pipeline.contracts.quota import QuotaState
from pipeline.errors import DailyQuotaExhausted
from pipeline.rules.allowances import ReportedAllowances
from pipeline.vt import governor as governor_module
from pipeline.vt.governor import LIVE_GRACE, PACE_HEADROOM, Governor, Pace, seconds_to_midnight_utc

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FreePace(Pace):
    """A pace that never waits: the tests on fake time are about everything but the pace."""

    async def wait(self, should_yield: Any, priority: int = 0) -> bool:
        return True


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
        return Governor(clock=lambda: self.wall, monotonic=lambda: self.mono, sleep=self.sleep,
                        pace=FreePace(kwargs["rate_per_minute"]), **kwargs)


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


async def _starts(gov: Governor, callers: int) -> list[float]:
    """Start ``callers`` acquires at once; the loop time at which each one was let through."""
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def call() -> None:
        await gov.acquire()
        starts.append(loop.time())
    await asyncio.gather(*(call() for _ in range(callers)))
    return sorted(starts)


def test_callers_in_flight_start_one_interval_apart_from_the_first():
    """The pace on a real loop with a tiny interval (6,000/min: 10 ms): many callers at once (calls
    in flight) start evenly spaced, never two together, not even the first two."""
    gov = Governor(rate_per_minute=6000, daily_quota=1000)

    async def run() -> list[float]:
        return await _starts(gov, 8)
    starts = asyncio.run(run())
    # Each start is seen when its caller runs again, a little late under load; so the span
    # is checked, which lateness only stretches: 8 starts take at least 7 intervals.
    assert starts[-1] - starts[0] >= 7 * gov.interval * 0.999, starts
    assert gov.interval == pytest.approx(0.01 * (1 + PACE_HEADROOM))
    assert gov.used_today == 8


def test_no_burst_after_a_pause():
    """Callers queued behind a 429 pause start one interval apart when it ends, not all at once."""
    gov = Governor(rate_per_minute=6000, daily_quota=1000)
    gov.pause(0.05, "429")

    async def run() -> list[float]:
        return await _starts(gov, 5)
    starts = asyncio.run(run())
    assert starts[-1] - starts[0] >= 4 * gov.interval * 0.999, starts


def test_live_work_goes_before_lower_lane_calls_already_queued_for_their_start():
    """Five replay calls queue at the pace (100 ms apart); a live call arriving after them gets the
    next turn but one (the replay caller already at the bucket keeps its start), not the last."""
    gov = Governor(rate_per_minute=600, daily_quota=1000)
    order: list[str] = []

    async def call(name: str, priority: int) -> None:
        await gov.acquire(priority=priority)
        order.append(name)

    async def run() -> None:
        replays = [asyncio.ensure_future(call(f"replay{i}", 1)) for i in range(5)]
        await asyncio.sleep(0.05)  # replay0 started, replay1 waits at the bucket, the rest queue
        await call("live", 0)
        await asyncio.gather(*replays)
    asyncio.run(run())
    assert order.index("live") <= 2, order


def test_adopting_a_smaller_allowance_slows_the_pace_and_the_settings_stay_the_ceiling():
    gov = Governor(rate_per_minute=1200, daily_quota=5000, monthly_quota=0, pace=FreePace(1200))
    gov.adopt(ReportedAllowances(hourly=36000, daily=800, monthly=20000))
    assert (gov.rate_per_minute, gov.daily_quota, gov.monthly_quota) == (600, 800, 20000)
    assert gov.interval == pytest.approx(0.1 * (1 + PACE_HEADROOM))
    gov.adopt(ReportedAllowances(hourly=10**6, daily=10**6, monthly=None))
    assert (gov.rate_per_minute, gov.daily_quota, gov.monthly_quota) == (1200, 5000, 0)
    gov.adopt(None, note="404")
    state = gov.state()
    assert state.configured == {"per_minute": 1200, "daily": 5000, "monthly": 0}
    assert state.virustotal is None and state.virustotal_note == "404"


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
    assert sum(slept) == pytest.approx(6.1)  # 10.1 s interval (with the headroom), 4 s of it already passed
    assert restarted.used_today == 2


def test_counts_of_a_past_day_are_dropped_on_load():
    clock = Clock(datetime(2026, 5, 2, 1, 0, tzinfo=timezone.utc).timestamp())
    gov = Governor(rate_per_minute=60, daily_quota=10, clock=clock)
    gov.load(QuotaState(day="2026-05-01", used_today=9, month="2026-05", used_month=40))
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
    assert gov.state().blocked_until is None


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


def test_made_up_sources_cannot_grow_the_quota_record():
    """Every record names its own source: past 64 names the rest are counted together."""
    gov = Governor(rate_per_minute=6_000_000, daily_quota=1_000_000, source_caps={"siem": 10})

    async def run() -> None:
        for n in range(100):
            await gov.acquire("x" * 1000 + str(n))
        await gov.acquire("siem")

    asyncio.run(run())
    state = gov.state()
    assert len(state.by_source) == governor_module.MAX_SOURCES_COUNTED + 2  # the named, the rest, the capped
    assert state.by_source[governor_module.OTHER_SOURCES] == 100 - governor_module.MAX_SOURCES_COUNTED
    assert state.by_source["siem"] == 1 and len(state.to_bytes()) < 100_000
