"""The retry tiers' due / re-park logic, driven through retry.hold with a fake clock and outbox."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from pipeline.contracts.indicator import Indicator
from pipeline.contracts.origin import Origin
from pipeline.contracts.wire import DeadLetter, ParkedRecord, VtRequest
from pipeline.kafka.runtime import Received
from pipeline.settings import Settings
from pipeline.stages import retry

from tests.support.fakes import T0, Clock, RecordingOutbox
from tests.support.stages import FakeApp, stage_context
from topics import DEAD, POLLS, retry_topic

pytestmark = pytest.mark.unit

SETTINGS = Settings.of(retry_tiers=("30s", "2m"), retry_slice_s=0.001)
POLL = VtRequest(indicator=Indicator("url", "http://evil.example.com/"), action="submit_url", api="v3",
                 origin=Origin(ref="indicators.raw/0/3"), op="poll", attempt=2, analysis_id="u-1")


class SendTimes(RecordingOutbox):
    """Also notes the clock's reading at each send."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.at: list[float] = []

    async def send(self, topic: str, key: bytes | str | None, value: Any) -> None:
        self.at.append(self.clock.now)
        await super().send(topic, key, value)


def hold(value: bytes, *, clock: Clock, tier: str = "30s", delay: float = 30.0,
         app: FakeApp | None = None) -> SendTimes:
    ctx = stage_context(SETTINGS, app=app, clock=clock)
    out = SendTimes(clock)
    asyncio.run(retry.hold(ctx, tier, delay, out, Received(b"url:x", value, "vt.retry.30s/0/0", clock.now)))
    return out


def parked_at(now: float, wait_s: float) -> bytes:
    _topic, record = retry.parked(POLL, wait_s=wait_s, reason="scan queued", now=now, tiers=SETTINGS.retry.tiers)
    return record.to_bytes()


def test_a_record_is_held_until_due_then_handed_to_the_gateway_unchanged():
    clock = Clock(step=1.0)
    out = hold(parked_at(T0, 30.0), clock=clock)
    assert out.topics() == [POLLS] and out.one(POLLS) == POLL
    assert T0 + 30.0 <= out.at[0] < T0 + 32.0  # not before it is due, and not long after


def test_a_record_already_due_goes_at_once():
    clock = Clock()
    clock.now = T0 + 100
    out = hold(parked_at(T0, 30.0), clock=clock)
    assert out.topics() == [POLLS] and out.at == [T0 + 100]


def test_a_wait_beyond_the_tier_delay_is_re_parked_for_the_rest_with_its_not_before():
    clock = Clock(step=1.0)
    value = parked_at(T0, 600.0)  # a quota reset: longer than the 2m tier it was parked on
    out = hold(value, clock=clock, tier="2m", delay=120.0)
    (topic, again), = out.sent
    assert topic == retry_topic("2m") and T0 + 120.0 <= out.at[0] < T0 + 122.0
    assert isinstance(again, ParkedRecord) and again.request == POLL
    assert again.not_before_ms == ParkedRecord.from_bytes(value).not_before_ms
    assert again.parked_at_ms == int(out.at[0] * 1000)


def test_a_rebalance_while_holding_puts_the_record_back_on_its_tier():
    app = FakeApp(rebalancing=True)
    value = parked_at(T0, 30.0)
    out = hold(value, clock=Clock(), app=app)
    assert out.topics() == [retry_topic("30s")] and out.one(retry_topic("30s")) == ParkedRecord.from_bytes(value)


def test_a_parked_record_of_version_0_is_forwarded_with_its_attempt_and_analysis_id():
    """1822a84 kept attempt and analysis_id beside the request; the request itself had neither."""
    old = {"not_before": int(T0 * 1000), "parked_at": int(T0 * 1000), "attempt": 4, "reason": "scan still queued",
           "analysis_id": "u-old", "request": {"key": "url:x", "indicator": {"type": "url", "value": "http://a.example/"},
                                               "action": "submit_url", "api": "v3", "origin": {"ref": "r/0/1"},
                                               "requested_at": T0 - 60, "op": "poll", "attempt": 0}}
    out = hold(orjson.dumps(old), clock=Clock())
    forwarded = out.one(POLLS)
    assert (forwarded.op, forwarded.attempt, forwarded.analysis_id) == ("poll", 4, "u-old")


def test_a_malformed_parked_record_is_dead_lettered_naming_the_field():
    out = hold(orjson.dumps({"v": 1, "not_before": "soon", "parked_at": 0, "request": POLL.to_dict()}), clock=Clock())
    dead = out.one(DEAD)
    assert isinstance(dead, DeadLetter) and dead.stage == "retry.30s"
    assert dead.error == "malformed parked record: not_before must be an integer, not str"
