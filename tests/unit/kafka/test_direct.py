"""The direct stage commits a batch's offsets only after the broker acknowledged its outputs.

A scripted consumer hands out two batches; a fake producer holds every output batch's
acknowledgement until the test releases it, late and in reverse order. Every commit is
checked against what was acknowledged at that moment.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
from aiokafka import TopicPartition

from pipeline.kafka.direct import DirectStage
from pipeline.kafka.runtime import Outbox, Received
from pipeline.settings import Settings
from topics import ENRICHED, RAW

pytestmark = pytest.mark.unit

SOURCE, OUTPUT = RAW, ENRICHED
OUTPUTS_PER_RECORD = 2


@dataclass(frozen=True)
class Record:
    offset: int
    key: bytes
    value: bytes


def batch_of(partition: int, offsets: range) -> dict[TopicPartition, list[Record]]:
    return {TopicPartition(SOURCE, partition): [Record(o, b"k%d" % o, b"v") for o in offsets]}


class ScriptedConsumer:
    """Hands out the scripted batches, then nothing; records each commit with what was acked then."""

    def __init__(self, batches: list[dict[TopicPartition, list[Record]]], acked: set[str]) -> None:
        self._batches = batches
        self._acked = acked
        self.handed: list[str] = []
        self.commits: list[dict[TopicPartition, int]] = []
        self.violations: list[str] = []

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Record]]:
        if self._batches:
            batch = self._batches.pop(0)
            self.handed += [f"{tp.topic}/{tp.partition}/{r.offset}" for tp, rs in batch.items() for r in rs]
            return batch
        await asyncio.sleep(0)
        return {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, committed in offsets.items():
            for ref in self.handed:
                topic, partition, offset = ref.rsplit("/", 2)
                covered = (topic, int(partition)) == (tp.topic, tp.partition) and int(offset) < committed
                if covered and ref not in self._acked:
                    self.violations.append(f"committed {tp.partition}:{committed} before {ref} was acknowledged")
        self.commits.append(dict(offsets))


@dataclass
class HeldBatch:
    """A record batch the producer accepted; its ack is a future the test resolves."""

    capacity: int = 3
    refs: list[str] = field(default_factory=list)
    ack: asyncio.Future[None] | None = None

    def append(self, timestamp: Any, key: bytes, value: bytes) -> object | None:
        if len(self.refs) == self.capacity:
            return None
        self.refs.append(value.decode())
        return object()

    def record_count(self) -> int:
        return len(self.refs)


class LateAckProducer:
    """Accepts record batches and acknowledges each only when the test says so."""

    def __init__(self) -> None:
        self.held: list[HeldBatch] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1}

    def create_batch(self) -> HeldBatch:
        return HeldBatch()

    async def send_batch(self, batch: HeldBatch, topic: str, partition: int) -> asyncio.Future[None]:
        batch.ack = asyncio.get_running_loop().create_future()
        self.held.append(batch)
        return batch.ack


async def forward(out: Outbox, record: Received) -> None:
    """The handler: two outputs per input, each carrying the input's ref."""
    for _ in range(OUTPUTS_PER_RECORD):
        await out.send(OUTPUT, record.key, record.ref.encode())


def committed(consumer: ScriptedConsumer) -> dict[TopicPartition, int]:
    """The group's committed offsets after every commit so far."""
    merged: dict[TopicPartition, int] = {}
    for offsets in consumer.commits:
        merged.update(offsets)
    return merged


async def until(condition: Callable[[], bool]) -> None:
    """Let the stage run until ``condition`` holds (the loop turns; no wall-clock timeout)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def test_commits_never_pass_a_record_whose_outputs_are_unacknowledged() -> None:
    first = {**batch_of(0, range(0, 3)), **batch_of(1, range(0, 2))}
    second = batch_of(0, range(3, 6))
    acked: set[str] = set()
    consumer = ScriptedConsumer([first, second], acked)
    producer = LateAckProducer()
    outputs = OUTPUTS_PER_RECORD * 8
    everything = {TopicPartition(SOURCE, 0): 6, TopicPartition(SOURCE, 1): 2}

    async def run() -> None:
        stage = DirectStage(Settings(), "intake", SOURCE, "group", forward)
        loop = asyncio.ensure_future(stage.run_batches(consumer, producer))
        await until(lambda: sum(b.record_count() for b in producer.held) == outputs)
        assert consumer.commits == []
        # Acks arrive late and out of order: the second batch's first, then the first's, last first.
        for held in reversed(producer.held):
            acked.update(held.refs)
            assert held.ack is not None
            held.ack.set_result(None)
            for _ in range(20):
                await asyncio.sleep(0)
        await until(lambda: committed(consumer) == everything or bool(consumer.violations))
        await stage.stop()
        await loop

    asyncio.run(run())
    assert consumer.violations == []
    assert consumer.commits == [{TopicPartition(SOURCE, 0): 3, TopicPartition(SOURCE, 1): 2},
                                {TopicPartition(SOURCE, 0): 6}]  # in order, each batch once



def test_no_batch_commits_after_an_earlier_batch_failed_to_produce() -> None:
    """Batches settle in a chain: a later batch's acks arriving first never commit past a failed one."""
    first, second = batch_of(0, range(0, 3)), batch_of(0, range(3, 6))
    acked: set[str] = set()
    consumer = ScriptedConsumer([first, second], acked)
    producer = LateAckProducer()

    async def run() -> None:
        stage = DirectStage(Settings(), "intake", SOURCE, "group", forward)
        loop = asyncio.ensure_future(stage.run_batches(consumer, producer))
        await until(lambda: sum(b.record_count() for b in producer.held) == OUTPUTS_PER_RECORD * 6)
        for held in producer.held:  # the second batch's outputs are acknowledged
            if int(held.refs[0].rsplit("/", 1)[1]) >= 3:
                acked.update(held.refs)
                assert held.ack is not None
                held.ack.set_result(None)
        for held in producer.held:  # the first batch's are refused
            if int(held.refs[0].rsplit("/", 1)[1]) < 3 and held.ack is not None and not held.ack.done():
                held.ack.set_exception(RuntimeError("broker refused"))
        for _ in range(200):
            await asyncio.sleep(0)
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)

    asyncio.run(run())
    assert consumer.commits == []


def test_records_the_stage_answers_at_once_share_the_batches_and_their_commit() -> None:
    """An answer goes into the same output batches as the handler's records, in input order, and is
    committed only once acknowledged; a record the answerer fails on, or declines, goes to the handler."""
    values = [b"quick", b"v", b"boom", b"quick", b"quick", b"v"]
    batch = {TopicPartition(SOURCE, 0): [Record(o, b"k%d" % o, value) for o, value in enumerate(values)]}
    acked: set[str] = set()
    consumer = ScriptedConsumer([batch], acked)
    producer = LateAckProducer()

    def answer(value: bytes | None, ref: str, now: float) -> tuple[str, bytes, bytes] | None:
        if value == b"boom":
            raise ValueError("the handler decides")
        return (OUTPUT, b"answered", ref.encode()) if value == b"quick" else None  # one output, not two

    async def run() -> None:
        stage = DirectStage(Settings(), "intake", SOURCE, "group", forward, answer=answer)
        loop = asyncio.ensure_future(stage.run_batches(consumer, producer))
        await until(lambda: sum(b.record_count() for b in producer.held) == 3 + OUTPUTS_PER_RECORD * 3)
        assert consumer.commits == []
        for held in producer.held:
            acked.update(held.refs)
            assert held.ack is not None
            held.ack.set_result(None)
        await until(lambda: bool(consumer.commits))
        await stage.stop()
        await loop

    asyncio.run(run())
    sent = Counter(ref for held in producer.held for ref in held.refs)
    assert sent == {f"{SOURCE}/0/{o}": 1 if values[o] == b"quick" else OUTPUTS_PER_RECORD for o in range(len(values))}
    assert consumer.violations == [] and consumer.commits == [{TopicPartition(SOURCE, 0): 6}]
