"""A stage on a plain aiokafka consumer group, below faust's per-event machinery.

faust moves about a fifth of what aiokafka does per record (stream iteration,
conductor, per-event acks: a faust agent that only decodes reaches 10,800 events/s
where a plain aiokafka consume-decode-produce loop reaches about 50,000 on the same
2-core box). The hot path, intake, sees every
record the SIEM sends, most of them repeats, so it runs here instead: one
``getmany`` batch is handled in a plain loop, its outputs are produced, and
only when the broker has acknowledged all of them are the batch's offsets
committed (forward first, then ack, as in :mod:`pipeline.kafka.runtime`).

The next batch is handled while the previous one's outputs travel, but a
batch's offsets are committed only after its outputs are acknowledged, and in
order. A rebalance waits for the batches in hand: the revoke callback takes
the lock a batch holds while it is handled, then waits for the commits, so a
partition changes hands only between batches and a stop never commits work
whose outputs were not produced.
"""

from __future__ import annotations

import asyncio
from collections import deque
import logging
import random
import time
from typing import Any, Awaitable, Callable, Optional

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.partitioner import murmur2
from mode import Service

from pipeline.contracts.wire import Outgoing
from pipeline.kafka.admin import make_consumer, make_producer, start_with_retry
from pipeline.kafka.runtime import (TURN_EVERY_S, Handler, Outbox, Received, Watch, fits, handle_one, limits,
                                    too_large)
from pipeline.observe.logs import handling
from pipeline.observe.metrics import Metrics
from pipeline.observe.probes import Readiness
from pipeline.rules.memo import Memo
from pipeline.settings import Settings

log = logging.getLogger("vtstream.kafka.direct")

#: Largest batch the intake producer builds (at most VTSTREAM_KAFKA_MAX_RECORD_BYTES: make_producer caps it).
BATCH_BYTES = 1024 * 1024

#: Longest a fetch may wait for data. Some brokers (the embedded one) hold a fetch
#: for the whole wait although records arrived; 500 ms (aiokafka's default) added
#: ~30 ms to the median cache hit at 2,000 events/s. Costs idle polls, nothing else.
FETCH_WAIT_MS = 10

#: Batches handled whose outputs or commit are still travelling. Waiting for each batch's
#: commit before handling the next put a broker round trip between every two batches:
#: the fetched records waited behind it (``vtstream bench latency``, bench-results.md).
BATCHES_IN_FLIGHT = 4

#: A record's whole output, when a stage can tell it without the general path: (topic, key, value).
Answer = tuple[str, bytes, bytes]
#: ``answer(value, ref, now)``: the Answer of a record the stage answers at once, or None for its handler.
Answerer = Callable[[Optional[bytes], str, float], Optional[Answer]]

# A fetched batch's outputs go to the producer once, after its last record: handing them
# over every 250 records cost 4-8 us of worker CPU per cache hit (+20-30 %: a produce
# request each) and did not shorten the tail, since a worker that falls behind then
# spends more per record and falls further behind (``vtstream bench hot-path``,
# bench-results.md).


class DirectStage(Service):
    """Consumes ``topic`` in consumer group ``group``; one batch at a time, committed after its outputs."""

    def __init__(self, settings: Settings, stage: str, topic: str, group: str, handle: Handler,
                 metrics: Metrics | None = None, readiness: Readiness | None = None,
                 clock: Callable[[], float] = time.time, max_records: int = 2000,
                 answer: Answerer | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings, self.stage, self.topic, self.group = settings, stage, topic, group
        self.handle, self.max_records, self.answer = handle, max_records, answer
        self.metrics = metrics if metrics is not None else Metrics()
        self.readiness = readiness if readiness is not None else Readiness()
        self.clock = clock
        self.metrics.read_offsets(self.offsets)
        self._batch = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._loop_done: asyncio.Future[None] | None = None
        self._settling: asyncio.Future[None] | None = None  # the last batch's; it waits for the earlier ones
        self._unsettled: deque[asyncio.Future[None]] = deque()
        self._committed: dict[TopicPartition, int] = {}

    async def on_start(self) -> None:
        session_ms = int(self.settings.kafka.session_timeout_s * 1000)
        self._consumer = make_consumer(
            self.settings, group_id=self.group, enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=session_ms, heartbeat_interval_ms=max(500, session_ms // 10),
            fetch_max_wait_ms=FETCH_WAIT_MS)
        self._producer = make_producer(self.settings, linger_ms=1, max_batch_size=BATCH_BYTES)
        await start_with_retry(self._producer, self.settings)
        await start_with_retry(self._consumer, self.settings)
        self._consumer.subscribe([self.topic], listener=_WaitForBatch(self))
        self._loop_done = self.add_future(self.run_batches(self._consumer, self._producer))

    async def run_batches(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        """The stage's loop on these clients (``on_start`` passes the real ones; tests, fakes)."""
        out = BatchOutbox(producer, self.metrics.watcher(self.stage, self.clock), **limits(self.settings, self.stage))
        counted = self.metrics.records.labels(self.stage)
        answer = self.answer or _no_answer
        while not self.should_stop:
            batch = await consumer.getmany(timeout_ms=200, max_records=self.max_records)
            if not batch:
                continue
            async with self._batch:
                acks: list[Awaitable[Any]] = []
                turn_at = time.perf_counter() + TURN_EVERY_S
                for tp, records in batch.items():
                    counted.inc(len(records))
                    for record in records:
                        ref, now = f"{tp.topic}/{tp.partition}/{record.offset}", self.clock()
                        try:
                            answered = answer(record.value, ref, now)
                        except Exception:  # the handler decides, and routes any failure
                            answered = None
                        if answered is None:
                            await handle_one(self.stage, self.handle, out,
                                             Received(record.key or b"", record.value, ref, now), self.settings.privacy)
                        elif not out.put(*answered):
                            await out.send(*answered)
                        if time.perf_counter() >= turn_at:  # slow (hostile) records: the heartbeat runs
                            await asyncio.sleep(0)
                            turn_at = time.perf_counter() + TURN_EVERY_S
                handling(self.stage, None)
                acks += await out.submit()
                offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
                self._settling = asyncio.ensure_future(self._settle(consumer, self._settling, acks, offsets))
                self._unsettled.append(self._settling)
                while len(self._unsettled) > BATCHES_IN_FLIGHT:  # bounded; commits stay in order
                    await asyncio.wait([self._unsettled.popleft()])
        await self.settled()

    async def _settle(self, consumer: AIOKafkaConsumer, previous: asyncio.Future[None] | None,
                      acks: list[Awaitable[Any]], offsets: dict[TopicPartition, int]) -> None:
        """Commit ``offsets`` once their outputs are acknowledged and the previous batch is committed.

        The next batches are handled while this one's acks and commit travel, but a
        commit never runs ahead of its outputs nor of an earlier batch's commit. A
        failed produce stops the worker, and no later batch commits: they are
        replayed on restart.
        """
        if previous is not None:
            await asyncio.wait([previous])
            if previous.cancelled() or previous.exception() is not None:
                return
        try:
            await asyncio.gather(*acks)
        except Exception as exc:
            log.critical("%s: outputs not acknowledged by the broker; stopping: %r", self.topic, exc)
            await self.crash(exc)
            raise
        await self._commit(consumer, offsets)

    async def settled(self) -> None:
        """Wait until every handled batch is acknowledged and committed."""
        if self._settling is not None:
            await asyncio.wait([self._settling])

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        try:
            await consumer.commit(offsets)
            self._committed.update(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The partitions moved on (rebalance): their next owner replays the batch, and
            # every output carries a deterministic event_id, so consumers can drop the repeats.
            log.warning("%s: commit failed, the batch will be replayed: %r", self.topic, exc)

    def offsets(self) -> dict[tuple[str, int], tuple[int, int | None]]:
        """(end, committed) of each partition in hand, for the lag metric; the end is the high
        water of the last fetch, which is right on every broker (the embedded broker's ListOffsets
        answers the last batch's base offset + 1, not the end)."""
        consumer = self._consumer
        if consumer is None:
            return {}
        found: dict[tuple[str, int], tuple[int, int | None]] = {}
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            if end is not None:
                found[(tp.topic, tp.partition)] = (end, self._committed.get(tp))
        return found

    async def on_stop(self) -> None:
        if self._loop_done is not None:
            await asyncio.wait([self._loop_done])  # the batches in hand finish and commit
        if self._consumer is not None:
            await self._consumer.stop()  # leaves the group: the partitions move on at once
        if self._producer is not None:
            await self._producer.stop()


class BatchOutbox(Outbox):
    """Builds one record batch per topic partition; flush submits them and waits for the acks.

    aiokafka's per-record ``send`` costs a coroutine, a future and a log call per
    record; intake produces one record per input, so it fills batches itself
    (with the producers' murmur2 partitioning, so keys land where faust expects them).
    """

    def __init__(self, producer: AIOKafkaProducer, watch: Watch, **options: Any) -> None:
        super().__init__(lambda topic, key, value: producer.send(topic, value, key=key), watch, **options)
        self._producer = producer
        self._partitions: dict[str, list[int]] = {}
        self._open: dict[tuple[str, int], Any] = {}
        self._contents: dict[tuple[str, int], list[tuple[bytes | None, bytes]]] = {}

    async def send(self, topic: str, key: bytes | str | None, value: Outgoing) -> None:
        self._watch(topic, value)
        if isinstance(key, str):
            key = key.encode()
        payload = self._payload(topic, key, value)
        if payload is None:  # on its way to vt.dead instead
            return
        partitions = self._partitions.get(topic)
        if partitions is None:
            partitions = self._partitions[topic] = sorted(await self._producer.partitions_for(topic))
        partition = partitions[key_slot(key, len(partitions))] if key else random.choice(partitions)
        if self._append(topic, partition, key, payload):
            return
        if (topic, partition) in self._open:  # full: submit it, start the next one
            await self._submit(topic, partition)
        builder = self._open[(topic, partition)] = self._producer.create_batch()
        if builder.append(timestamp=None, key=key, value=payload) is None:  # larger than a batch
            del self._open[(topic, partition)]
            await self._start(topic, key, payload)
            return
        self._contents[(topic, partition)] = [(key, payload)]

    def put(self, topic: str, key: bytes, payload: bytes) -> bool:
        """Add a record to its partition's open batch at once, if the batch has room for it and
        the topic's partitions are known (else False: :meth:`send` it)."""
        partitions = self._partitions.get(topic)
        if partitions is None or not fits(key, payload, self.limit):
            return False
        return self._append(topic, partitions[key_slot(key, len(partitions))], key, payload)

    def _append(self, topic: str, partition: int, key: bytes | None, payload: bytes) -> bool:
        """Add a record to the partition's open batch; False when none is open or it is full."""
        builder = self._open.get((topic, partition))
        if builder is None or builder.append(timestamp=None, key=key, value=payload) is None:
            return False
        self._contents[(topic, partition)].append((key, payload))
        return True

    async def _submit(self, topic: str, partition: int) -> None:
        builder = self._open.pop((topic, partition))
        contents = self._contents.pop((topic, partition), [])
        if builder.record_count():
            sent = await self._producer.send_batch(builder, topic, partition=partition)
            self._pending.append(asyncio.ensure_future(self._batch_acked(sent, topic, partition, contents)))
            self._sent.append(None)

    async def _batch_acked(self, sent: Awaitable[Any], topic: str, partition: int,
                           contents: list[tuple[bytes | None, bytes]]) -> None:
        """Wait for a batch's ack. A batch the broker refuses as too large (a topic whose
        max.message.bytes is below ours) is sent again record by record, so only the
        records that are too large themselves go to vt.dead."""
        try:
            await sent
        except Exception as exc:
            if not too_large(exc):
                raise
            log.warning("%s: a batch of %d records for %s/%d was refused as too large; sending them one by one",
                        self.stage, len(contents), topic, partition)
            for key, payload in contents:
                try:
                    await (await self._producer.send(topic, payload, key=key, partition=partition))
                except Exception as again:
                    if not too_large(again):
                        raise
                    self._too_large(topic, key, payload)
            await self._flush_refused()

    async def submit(self) -> list[Awaitable[Any]]:
        """Hand every open batch to the producer; the acks of all records sent since the last call."""
        for topic, partition in list(self._open):
            await self._submit(topic, partition)
        pending, sent = self._take()
        if all(record is None for record in sent):
            return pending
        return [asyncio.ensure_future(self._settled(pending, sent))]  # records sent alone: see _settled

    async def flush(self) -> None:
        await asyncio.gather(*await self.submit())


def _key_slot(key: bytes, count: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % count


#: Kafka's default partitioning, remembered: aiokafka's murmur2 is pure Python and costs a
#: fifth of the cache-hit path, while a SIEM repeats the same keys. Only keys up to 256 bytes
#: are remembered (a URL's key can be 11 KB): 65,536 of them hold at most 64 MiB.
key_slot: Memo[int] = Memo(_key_slot, entries=65536, entry_chars=256, size=lambda key, count: len(key))


def _no_answer(value: bytes | None, ref: str, now: float) -> None:
    return None


class _WaitForBatch(ConsumerRebalanceListener):
    """Hands partitions over only after the batches in hand are committed."""

    def __init__(self, stage: DirectStage) -> None:
        self._stage = stage

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self._stage._batch:
            await self._stage.settled()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        stage = self._stage
        consumer = stage._consumer
        assert consumer is not None
        for tp in assigned:
            committed = await consumer.committed(tp)
            if committed is not None:
                stage._committed[tp] = committed
        stage.readiness.done(stage.group)
