"""The quota governor: whether and when the next VirusTotal request may go out.

- **Pace.** Calls start evenly spaced at the key's per-minute rate: an
  aiolimiter bucket of capacity one (:class:`Pace`), so there is never a burst
  above the rate, not even at start or after a pause, however many calls the
  gateway keeps in flight. The time of the last call is persisted, so a
  restarted or failed-over gateway waits out the interval instead of bursting.
- **Quotas.** Calls are counted per UTC day (reset 00:00 UTC), optionally per
  UTC month, and per ``source`` against optional per-source daily caps. A spent
  quota raises :class:`~pipeline.errors.DailyQuotaExhausted` with the seconds
  until it resets, before any call is made.
- **Slow down.** After a 429 (v3) or 204 (v2) the gateway calls :meth:`pause`;
  every caller then waits until the pause is over.
- **Priority.** Lanes are an ordered list: live lookups (0), replay lookups
  (1), polls of pending scans and retries (2). A caller waits until every
  lane ahead of its own has been idle for ``LIVE_GRACE`` seconds, so a replay
  cannot delay live traffic and a backlog of scans delays neither.

State is a :class:`~pipeline.contracts.quota.QuotaState` (``state()``/``load()``) that the gateway stores in a
changelogged table on the compacted ``vt.quota`` topic after every call.

Time comes from the injected ``clock`` (wall time: days, months, pauses, the
persisted last call), ``monotonic`` (lane idleness) and ``sleep``, so tests
drive those with a fake clock and no real waiting. The pace alone runs on the
event loop's clock (aiolimiter's); tests inject a :class:`Pace` of their own.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Iterator, Mapping

from aiolimiter import AsyncLimiter

from pipeline.contracts.quota import QuotaState, utc_day, utc_month
from pipeline.errors import DailyQuotaExhausted, VtStreamError
from pipeline.observe.metrics import QuotaReading
from pipeline.rules.allowances import Allowances, ReportedAllowances, effective

#: Longest single sleep while paused, so callers can notice a rebalance.
PAUSE_SLICE = 5.0
#: How long the lanes ahead must have been idle before a lower lane may call.
LIVE_GRACE = 0.2
#: Starts are spaced this much wider than the rate: scheduling jitter between here and
#: VirusTotal then cannot put one call too many into a strict sliding minute.
PACE_HEADROOM = 0.01
#: How often a caller queued for its start checks whether it must yield.
YIELD_CHECK_S = 0.5


def seconds_to_midnight_utc(now: float) -> float:
    dt = datetime.fromtimestamp(now, timezone.utc)
    midnight = (dt + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - dt).total_seconds()


def seconds_to_month_end_utc(now: float) -> float:
    dt = datetime.fromtimestamp(now, timezone.utc)
    first = dt.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (first + timedelta(days=32)).replace(day=1)
    return (following - dt).total_seconds()


#: Sources counted by name on vt.quota (a source with a cap always is); the rest under
#: :data:`OTHER_SOURCES`. A record names its own source, so without a bound a feed of made-up
#: sources would grow the quota record past what Kafka accepts.
MAX_SOURCES_COUNTED = 64
OTHER_SOURCES = "(other sources)"


class Pace:
    """Evenly spaced call starts at ``rate_per_minute``: an aiolimiter bucket of one.

    A bucket of capacity one never bursts: after any idle time (start, a pause)
    one call goes at once and the next one a full interval later. Callers take
    turns at the bucket one at a time, by lane priority and then in arrival
    order: with many calls in flight, records of a lower lane already queued
    for their start do not go ahead of live work that arrives after them. A
    rate change (VirusTotal reported a smaller allowance) starts a new bucket.
    """

    def __init__(self, rate_per_minute: int) -> None:
        self.set_rate(rate_per_minute)
        self._turns: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        self._holder: asyncio.Future[None] | None = None

    def set_rate(self, rate_per_minute: int) -> None:
        self.interval = 60.0 / rate_per_minute * (1 + PACE_HEADROOM)
        self._limiter = AsyncLimiter(1, self.interval)

    async def wait(self, should_yield: Callable[[], bool], priority: int = 0) -> bool:
        """Wait for this caller's turn, then its start; False when ``should_yield`` turned true first."""
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._turns, (priority, next(self._arrivals), turn))
        self._next_turn()
        try:
            if not await _until(turn, should_yield):
                return False
            while True:
                limiter = self._limiter
                if not await _until(asyncio.ensure_future(limiter.acquire()), should_yield):
                    return False
                if limiter is self._limiter:
                    return True
        finally:
            turn.cancel()  # nothing if it was granted; otherwise it leaves the queue
            if self._holder is turn:
                self._holder = None
            self._next_turn()

    def _next_turn(self) -> None:
        """Grant the turn to the first caller still waiting, if nobody holds it."""
        while self._holder is None and self._turns:
            _priority, _arrival, turn = heapq.heappop(self._turns)
            if not turn.done():
                turn.set_result(None)
                self._holder = turn


async def _until(waiting: "asyncio.Future[Any]", should_yield: Callable[[], bool]) -> bool:
    """Wait for ``waiting``; False (and ``waiting`` cancelled) when ``should_yield`` turns true first."""
    try:
        while not waiting.done():
            await asyncio.wait([waiting], timeout=YIELD_CHECK_S)
            if not waiting.done() and should_yield():
                return False
        return True
    finally:
        waiting.cancel()  # nothing if it is done


class Governor:
    """Per-minute pacing, daily/monthly/per-source quotas, pauses, priorities.

    >>> import asyncio
    >>> g = Governor(rate_per_minute=600, daily_quota=2)
    >>> asyncio.run(g.acquire()); g.used_today
    1
    >>> g.remaining_today
    1
    """

    def __init__(self, rate_per_minute: int, daily_quota: int, *, monthly_quota: int = 0,
                 source_caps: Mapping[str, int] | None = None,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 pace: Pace | None = None) -> None:
        self.rate_per_minute = rate_per_minute
        self._pace = pace or Pace(rate_per_minute)
        self.daily_quota = daily_quota
        self.monthly_quota = monthly_quota
        self.source_caps = dict(source_caps or {})
        self.configured = Allowances(rate_per_minute, daily_quota, monthly_quota)
        self.reported: ReportedAllowances | None = None
        self.reported_note: str | None = None
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._serving: dict[int, int] = {}  # lane priority -> records being served right now
        self._idle_since: dict[int, float] = {}  # lane priority -> when it last finished a record
        now = clock()
        self.day, self.month = utc_day(now), utc_month(now)
        self.used_today = self.used_month = 0
        self.by_source: dict[str, int] = {}
        self.last_call_at: float | None = None
        self.blocked_until: float | None = None
        self.blocked_reason: str | None = None
        self._resume_after = 0.0  # after a restart: the last recorded call + one interval

    # ----------------------------------------------------------------- state

    def state(self) -> QuotaState:
        """What survives a restart (the ``governor`` record on vt.quota)."""
        self._roll()
        return QuotaState(day=self.day, month=self.month, used_today=self.used_today, used_month=self.used_month,
                          daily_quota=self.daily_quota, monthly_quota=self.monthly_quota,
                          rate_per_minute=self.rate_per_minute, last_call_at=self.last_call_at,
                          blocked_until=self.blocked_until, blocked_reason=self.blocked_reason,
                          by_source=dict(self.by_source), updated_at=self._clock(),
                          configured=asdict(self.configured),
                          virustotal=self.reported.as_dict() if self.reported else None,
                          virustotal_note=self.reported_note)

    def load(self, stored: QuotaState) -> None:
        """Resume from a stored state; counts of a past day or month are dropped."""
        state = stored.rolled(self._clock())
        self.day, self.month = state.day, state.month
        self.used_today, self.used_month = state.used_today, state.used_month
        self.by_source = dict(state.by_source)
        self.last_call_at = state.last_call_at
        if self.last_call_at is not None:
            self._resume_after = self.last_call_at + self.interval
        self.blocked_until, self.blocked_reason = state.blocked_until, state.blocked_reason

    def _roll(self) -> None:
        now = self._clock()
        if utc_day(now) != self.day:
            self.day, self.used_today, self.by_source = utc_day(now), 0, {}
        if utc_month(now) != self.month:
            self.month, self.used_month = utc_month(now), 0

    @property
    def interval(self) -> float:
        """Seconds between two call starts."""
        return self._pace.interval

    def adopt(self, reported: ReportedAllowances | None, note: str | None = None) -> None:
        """Use, per period, the smaller of the settings and VirusTotal's ``reported`` allowances
        (the settings alone when None, with ``note`` saying why); both views go into :meth:`state`."""
        self.reported, self.reported_note = reported, note
        allowances = effective(self.configured, reported)
        if allowances.per_minute != self.rate_per_minute:
            self.rate_per_minute = allowances.per_minute
            self._pace.set_rate(allowances.per_minute)
        self.daily_quota, self.monthly_quota = allowances.daily, allowances.monthly

    @property
    def paused(self) -> bool:
        """True while a pause (429, wrong key) holds every caller."""
        return self.blocked_until is not None and self.blocked_until > self._clock()

    def readings(self) -> list[QuotaReading]:
        """The day and month windows for /metrics (the month's remaining only when a monthly quota is set)."""
        monthly = self.monthly_quota
        return [QuotaReading("day", self.used_today, self.remaining_today),
                QuotaReading("month", self.used_month, max(0, monthly - self.used_month) if monthly else None)]

    @property
    def remaining_today(self) -> int:
        self._roll()
        return max(0, self.daily_quota - self.used_today)

    # --------------------------------------------------------------- calling

    def check(self, source: str | None = None) -> None:
        """Raise DailyQuotaExhausted when the day's, month's or source's quota is spent."""
        self._roll()
        now = self._clock()
        if self.used_today >= self.daily_quota:
            raise DailyQuotaExhausted(
                f"not checked: daily quota of {self.daily_quota} requests exhausted; resets at 00:00 UTC",
                retry_after=seconds_to_midnight_utc(now))
        if self.monthly_quota and self.used_month >= self.monthly_quota:
            raise DailyQuotaExhausted(
                f"not checked: monthly quota of {self.monthly_quota} requests exhausted; resets on the 1st",
                retry_after=seconds_to_month_end_utc(now))
        cap = self.source_caps.get(source) if source else None
        if cap is not None and self.by_source.get(source or "", 0) >= cap:
            raise DailyQuotaExhausted(
                f"not checked: daily cap of {cap} requests for source {source!r} reached; resets at 00:00 UTC",
                retry_after=seconds_to_midnight_utc(now))

    @contextmanager
    def serving(self, priority: int) -> Iterator[None]:
        """Mark work of lane ``priority`` in progress for the duration (each gateway lane wraps its records)."""
        self._serving[priority] = self._serving.get(priority, 0) + 1
        try:
            yield
        finally:
            self._serving[priority] -= 1
            self._idle_since[priority] = self._monotonic()

    def _ahead_busy(self, priority: int) -> bool:
        """True while a lane ahead of ``priority`` serves a record or finished one within LIVE_GRACE."""
        now = self._monotonic()
        return any(self._serving.get(lane) or now - self._idle_since.get(lane, float("-inf")) < LIVE_GRACE
                   for lane in set(self._serving) | set(self._idle_since) if lane < priority)

    async def acquire(self, source: str | None = None, priority: int = 0,
                      should_yield: Callable[[], bool] = lambda: False) -> None:
        """Wait for the next slot; count the call against every quota.

        ``should_yield`` is polled while waiting; when it turns true the wait
        ends with :class:`Yielded` so the caller can re-park its record.
        """
        self.check(source)
        if priority > 0:
            await self._wait_for_lanes_ahead(priority, should_yield)
        while True:
            await self._wait_until_clear(should_yield)
            if not await self._pace.wait(should_yield, priority):
                raise Yielded(self._clock())
            if not self.paused:  # a 429 may have paused everyone while this caller queued
                break
        self.check(source)
        self.used_today += 1
        self.used_month += 1
        if source:
            counted = source if (source in self.by_source or source in self.source_caps
                                 or len(self.by_source) < MAX_SOURCES_COUNTED) else OTHER_SOURCES
            self.by_source[counted] = self.by_source.get(counted, 0) + 1
        self.last_call_at = self._clock()
        self._resume_after = 0.0  # from now on the pace spaces the calls in-process

    async def _wait_for_lanes_ahead(self, priority: int, should_yield: Callable[[], bool]) -> None:
        started = self._clock()
        while self._ahead_busy(priority):
            if should_yield():
                raise Yielded(started)
            await self._sleep(LIVE_GRACE)

    async def _wait_until_clear(self, should_yield: Callable[[], bool]) -> None:
        """Honour a pause and, after a restart, the spacing from the last recorded call."""
        while True:
            now = self._clock()
            until = max(self.blocked_until or 0.0, self._resume_after)
            if until <= now:
                self.blocked_until = self.blocked_reason = None
                return
            if should_yield():
                raise Yielded(until)
            await self._sleep(min(until - now, PAUSE_SLICE))

    def pause(self, seconds: float, reason: str) -> None:
        """Stop every caller for ``seconds`` (VirusTotal said the quota is exceeded)."""
        self.blocked_until = max(self.blocked_until or 0.0, self._clock() + seconds)
        self.blocked_reason = reason


class Yielded(VtStreamError):
    """The governor gave up waiting because the caller must yield (rebalance, shutdown): not a
    failure; the caller re-parks its record."""

    def __init__(self, until: float) -> None:
        super().__init__(f"paused until {until}")
        self.until = until
