"""The sightings stage: counted sightings are sent to vt.sightings and added to the verdict memory."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from pipeline.contracts.verdict import Seen, SightingTally, VerdictCheck, VerdictMemory
from pipeline.kafka.runtime import Context, Received
from pipeline.stages import sightings
from tests.support.fakes import RecordingOutbox
from tests.support.stages import FakeApp, FakeProducer, stage_context
from topics import DEAD, ENRICHED, SIGHTINGS

pytestmark = pytest.mark.unit

KEY = b"domain:verdict-turns.net"
T = 1_790_000_000.0


def context(producer: FakeProducer | None = None) -> Context:
    return stage_context(app=FakeApp(producer=producer))


def test_the_flusher_sends_one_tally_per_indicator_and_starts_counting_again():
    producer = FakeProducer()
    ctx = context(producer)
    for at in (T + 5, T + 1, T + 9):
        ctx.sightings.saw(KEY.decode(), at)
    ctx.sightings.saw("ip:198.51.100.7", T)
    asyncio.run(sightings.Flusher(ctx).flush())
    sent = {key: SightingTally.from_bytes(value) for topic, key, value in producer.sent if topic == SIGHTINGS}
    assert sent == {KEY: SightingTally(3, T + 1), b"ip:198.51.100.7": SightingTally(1, T)}
    asyncio.run(sightings.Flusher(ctx).flush())
    assert len(producer.sent) == 2  # nothing new counted: nothing sent


def test_a_flush_the_broker_refuses_loses_counts_and_nothing_else():
    ctx = context(FakeProducer(fail=True))
    ctx.sightings.saw(KEY.decode(), T)
    asyncio.run(sightings.Flusher(ctx).flush())  # logged, not raised


def test_a_tally_is_added_to_the_memory_and_a_bad_one_is_dead_lettered():
    ctx, out = context(), RecordingOutbox()
    memory = VerdictMemory(VerdictCheck("benign", 0, 70, T), since=T, ref="vt.responses/0/1")
    ctx.verdicts[KEY] = memory.to_bytes()

    def handle(value: bytes) -> None:
        asyncio.run(sightings.handle(ctx, out, Received(KEY, value, "vt.sightings/0/7", T + 60)))

    handle(SightingTally(3, T + 10).to_bytes())
    handle(SightingTally(2, T + 5).to_bytes())
    assert VerdictMemory.from_bytes(ctx.verdicts[KEY]).seen == Seen(5, T + 5)
    handle(orjson.dumps({"v": 1, "count": "many", "first": T}))
    assert out.topics() == [DEAD] and "count" in out.one(DEAD).error
    unknown = b"ip:203.0.113.1"
    asyncio.run(sightings.handle(ctx, out, Received(unknown, SightingTally(1, T).to_bytes(), "vt.sightings/0/8", T)))
    assert unknown not in ctx.verdicts  # no verdict remembered: nothing to add to


def test_sightings_answered_from_the_cache_are_counted_live_ones_only():
    """Intake's one hop and the lookup stage count what they answer; a replay's records are not counted."""
    from pipeline.contracts.card import SummaryCard
    from pipeline.contracts.cache_entry import CachedResult
    from pipeline.kafka.replica import CacheCopy
    from pipeline.stages import intake, lookup

    ctx, out = context(), RecordingOutbox()
    entry = CachedResult(SummaryCard(found=True, positives=0, total=70), fetched_at=T, expires_at=T + 86400)
    copy = CacheCopy(10)
    copy.apply(KEY, entry.to_bytes())
    ctx.clock = lambda: T + 60
    raw = orjson.dumps({"value": "verdict-turns.net", "id": "s1"})
    asyncio.run(intake.handle(ctx, copy, out, Received(b"", raw, "indicators.raw/0/1", T + 60)))
    ctx.cache[KEY] = entry.to_bytes()
    for ref, replay in (("indicators.raw/0/2", None), ("siem.archive/0/9", "daily")):
        sighting = {"indicator": {"type": "domain", "value": "verdict-turns.net"}, "action": "submit_domain",
                    "origin": {"ref": ref, "received_at": T + 30, **({"replay": replay} if replay else {})}}
        asyncio.run(lookup.handle(ctx, out, Received(KEY, orjson.dumps(sighting), f"vt.lookups/0/{ref[-1]}", T + 90)))
    assert out.topics() == [ENRICHED] * 3  # three answers from the cache
    assert ctx.sightings.take() == [(KEY.decode(), SightingTally(2, T + 30))]  # intake's and the live lookup's
