"""Records worked on at once are acknowledged in offset order, only after their outputs are produced.

A fake stream hands out records and records acks; a fake producer holds every
send until the test lets it through; handlers wait on events the test sets. No
broker, no clock: the order of events is the whole test.
"""

import asyncio
from dataclasses import dataclass
from typing import AsyncIterator

import pytest

from pipeline.kafka.inflight import run_in_flight
from pipeline.kafka.runtime import Handler, Outbox, Received
from pipeline.rules.ack_order import AckOrder
from tests.support.stages import stage_context
from topics import POLLS, REQUESTS, RESPONSES

pytestmark = pytest.mark.unit

TP = (REQUESTS, 0)


def test_a_finished_record_waits_for_every_older_one_of_its_partition():
    flight: AckOrder[str] = AckOrder()
    for offset in (10, 11, 12):
        flight.start(TP, offset, f"a{offset}")
    flight.start((POLLS, 0), 3, "b3")
    assert flight.finish(TP, 12) == [] and flight.finish(TP, 11) == []
    assert flight.committable(TP) == 10  # never past the oldest unfinished record
    assert flight.finish((POLLS, 0), 3) == ["b3"]  # another partition is not held back
    assert flight.finish(TP, 10) == ["a10", "a11", "a12"]
    assert flight.committable(TP) == 13 and len(flight) == 0


@dataclass(frozen=True)
class FakeMessage:
    """Where an event came from, as the loop reads it to ack in offset order."""

    topic: str
    partition: int
    offset: int


@dataclass
class FakeEvent:
    offset: int

    @property
    def key(self) -> bytes:
        return f"k{self.offset}".encode()

    @property
    def value(self) -> bytes:
        return f"v{self.offset}".encode()

    @property
    def message(self) -> FakeMessage:
        return FakeMessage(TP[0], TP[1], self.offset)


class FakeStream:
    """faust's ``stream.noack()`` for the loop: hands out events, records acks."""

    def __init__(self, count: int) -> None:
        self.events_out = [FakeEvent(i) for i in range(count)]
        self.acked: list[int] = []

    def noack(self) -> "FakeStream":
        return self

    async def events(self) -> AsyncIterator[FakeEvent]:
        for event in self.events_out:
            yield event

    async def ack(self, event: FakeEvent) -> None:
        self.acked.append(event.offset)


class HeldProducer:
    """Every send returns a future the test resolves: the broker's ack of that output."""

    def __init__(self) -> None:
        self.sent: dict[bytes, asyncio.Future[None]] = {}

    async def send(self, topic: str, key: bytes | None, value: bytes) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent[key or b""] = future
        return future


def start(stream: FakeStream, producer: HeldProducer, handle: Handler, limit: int) -> "asyncio.Future[None]":
    """The gateway's loop on the fakes, one outbox per record on the fake producer."""
    return asyncio.ensure_future(run_in_flight(stage_context(clock=lambda: 0.0), stream, "gateway", handle, limit,
                                               outbox=lambda: Outbox(producer.send)))


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_acks_wait_for_outputs_and_for_older_records_in_flight():
    """Record 1 answers first but is acked only after record 0, and record 0 only once its
    output is produced (its future resolved), never when its handler returns."""
    stream, producer = FakeStream(3), HeldProducer()
    answer = {i: asyncio.Event() for i in range(3)}
    running: list[int] = []

    async def handle(out: Outbox, record: Received) -> None:
        assert record.value is not None
        i = int(record.value[1:])
        running.append(i)
        await answer[i].wait()  # the VirusTotal call
        await out.send(RESPONSES, record.key, record.value)

    async def run() -> None:
        loop = start(stream, producer, handle, limit=2)
        await settle()
        assert running == [0, 1]  # two in flight, the third waits for a slot
        answer[1].set()
        await settle()
        producer.sent[b"k1"].set_result(None)
        await settle()
        assert stream.acked == []  # record 1 is done, but record 0 is still in flight
        assert running == [0, 1, 2]  # record 1's slot went to record 2
        answer[0].set()
        await settle()
        assert stream.acked == []  # record 0's output is not produced yet
        producer.sent[b"k0"].set_result(None)
        await settle()
        assert stream.acked == [0, 1]
        answer[2].set()
        await settle()
        producer.sent[b"k2"].set_result(None)
        await loop
        assert stream.acked == [0, 1, 2]
    asyncio.run(run())


def test_a_failed_produce_is_never_acked_and_stops_the_loop():
    stream, producer = FakeStream(2), HeldProducer()

    async def handle(out: Outbox, record: Received) -> None:
        assert record.value is not None
        await out.send(RESPONSES, record.key, record.value)

    async def run() -> None:
        loop = start(stream, producer, handle, limit=4)
        await settle()
        producer.sent[b"k0"].set_exception(RuntimeError("broker gone"))
        producer.sent[b"k1"].set_result(None)
        with pytest.raises(RuntimeError, match="broker gone"):
            await loop
        assert stream.acked == []  # record 1 is produced, but record 0 below it never was
    asyncio.run(run())
