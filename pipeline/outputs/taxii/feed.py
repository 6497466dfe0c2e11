"""The TAXII collection's contents, read from indicators.stix page by page.

Kafka is the store: an object's ``date_added`` is the timestamp of the record
(bundle) that carried it. The paging rules live in
:mod:`pipeline.outputs.taxii.paging`; this module feeds them from one consumer
that is *assigned* the topic's partitions (no consumer group: nothing is
committed, so the server needs Read and Describe on the topic and no group
ACL). A page starts where ``next`` says, else at ``added_after``
(``offsets_for_times``), else at the log start, and reads until each partition
has a page's worth or has returned everything below its high watermark, as
reported by the fetches themselves.

One request reads at a time. Its deadline covers the wait for the consumer
too; a request that cannot get it in time is answered 503 (:class:`FeedBusy`),
so no filter can hold the topic for longer than one request's deadline and
scan budget.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Awaitable, Callable, Mapping, Sequence, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.errors import ConfigError, KafkaAccessDenied, VtStreamError
from pipeline.kafka.admin import make_consumer, start_with_retry, topic_partitions
from pipeline.outputs.taxii.paging import Page, Position, Query, Record, read_page, resume_points
from pipeline.settings import Settings

log = logging.getLogger("vtstream.outputs.taxii.feed")
T = TypeVar("T")

#: Records one fetch hands over at most (the budget bounds the page; this bounds one step of it).
FETCH_RECORDS = 500
#: Bytes one fetch asks for, per partition and in all. A page needs little (limit + 1 objects per
#: partition), and every page seeks, so what a larger fetch brings beyond the page is thrown away:
#: with the 16 MiB of the other consumers a page cost 3-4 times as much. A larger record still
#: comes whole (a broker always returns the first record batch).
FETCH_PARTITION_BYTES = 256 * 1024
FETCH_BYTES = 1024 * 1024
#: Beyond its deadline a request gets this long for a Kafka call in flight before it is answered 503.
GRACE_S = 5.0
#: aiokafka's ConsumerRecord.timestamp_type for producer timestamps.
CREATE_TIME = 0


class FeedBusy(VtStreamError):
    """The request's deadline passed before it could read (another request held the consumer, or Kafka hung)."""


def feed_settings(settings: Settings) -> Settings:
    """The Kafka settings the feed connects with: its own SASL login when one is set, else the worker's."""
    user, password, password_file = (settings.taxii.kafka_sasl_username, settings.taxii.kafka_sasl_password,
                                     settings.taxii.kafka_sasl_password_file)
    if not (user or password or password_file):
        return settings
    if not user or bool(password) == bool(password_file):
        raise ConfigError("the TAXII server's own Kafka login needs VTSTREAM_TAXII_KAFKA_SASL_USERNAME and exactly "
                         "one of VTSTREAM_TAXII_KAFKA_SASL_PASSWORD and VTSTREAM_TAXII_KAFKA_SASL_PASSWORD_FILE")
    if not settings.kafka.uses_sasl:
        raise ConfigError("VTSTREAM_TAXII_KAFKA_SASL_* are set but VTSTREAM_KAFKA_SECURITY_PROTOCOL="
                         f"{settings.kafka.security_protocol} does not use SASL: set it to SASL_PLAINTEXT or SASL_SSL")
    kafka = replace(settings.kafka, sasl_username=user, sasl_password=password, sasl_password_file=password_file)
    return replace(settings, kafka=kafka)


class Turns:
    """Requests read one at a time, each within its deadline, waiting for its turn included.

    A request whose deadline passes while it waits, or whose Kafka call hangs
    ``grace`` seconds past it, raises FeedBusy; the next request is not held up.
    """

    def __init__(self, clock: Callable[[], float], grace: float = GRACE_S) -> None:
        self.clock, self.grace = clock, grace
        self._lock = asyncio.Lock()

    async def take(self, deadline: float, work: Callable[[], Awaitable[T]], after: Callable[[], None]) -> T:
        """Run ``work`` alone once the turn comes, then ``after`` (still alone)."""
        try:
            async with asyncio.timeout(max(0.0, deadline - self.clock()) + self.grace):
                async with self._lock:
                    try:
                        if self.clock() >= deadline:
                            raise TimeoutError
                        return await work()
                    finally:
                        after()
        except TimeoutError:
            raise FeedBusy("the TAXII server is busy with other requests or Kafka is slow; retry shortly") from None


class KafkaSource:
    """A :class:`~pipeline.outputs.taxii.paging.Source` over one topic's partitions, assigned to ``consumer``."""

    def __init__(self, consumer: AIOKafkaConsumer, topic: str) -> None:
        self.consumer, self.topic = consumer, topic
        self._since_ms = 0
        self._warned = False

    def _tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self.topic, partition)

    async def seek(self, offsets: Mapping[int, int]) -> None:
        wanted = {self._tp(p) for p in offsets}
        if set(self.consumer.assignment()) != wanted:
            self.consumer.assign(list(wanted))
        for partition, offset in offsets.items():
            self.consumer.seek(self._tp(partition), offset)
        self.consumer.resume(*wanted)
        self._since_ms = int(time.time() * 1000)

    async def fetch(self, partitions: Sequence[int], timeout_s: float, max_records: int
                    ) -> Mapping[int, Sequence[Record]]:
        wanted = [self._tp(p) for p in partitions]
        self.consumer.pause(*(set(self.consumer.assignment()) - set(wanted)))
        batch = await self.consumer.getmany(*wanted, timeout_ms=int(timeout_s * 1000),
                                            max_records=max(1, min(max_records, FETCH_RECORDS)))
        out: dict[int, list[Record]] = {}
        for tp, records in batch.items():
            out[tp.partition] = [Record(r.offset, max(r.timestamp, 0), r.value) for r in records]
            if records and records[0].timestamp_type == CREATE_TIME and not self._warned:
                self._warned = True
                log.warning("%s keeps producer timestamps (CreateTime): date_added is the producer's clock, so a "
                            "client polling with added_after can miss a bundle appended late; create the topic "
                            "with message.timestamp.type=LogAppendTime ('vtstream topics create' does)", self.topic)
        return out

    async def caught_up(self, partition: int) -> bool:
        """True when a fetch answered since the seek and nothing below its high watermark is left to return."""
        tp = self._tp(partition)
        highwater, polled = self.consumer.highwater(tp), self.consumer.last_poll_timestamp(tp)
        return highwater is not None and polled is not None and polled >= self._since_ms and (
            await self.consumer.position(tp) >= highwater)

    def park(self) -> None:
        """No background fetching between requests."""
        self.consumer.pause(*self.consumer.assignment())


class Feed:
    """Reads the collection's topic for the TAXII server: one consumer, one request at a time."""

    def __init__(self, settings: Settings, topic: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings, self.topic, self.clock = feed_settings(settings), topic, clock
        self.budget = settings.taxii.scan_budget
        self._consumer = make_consumer(self.settings, group_id=None, enable_auto_commit=False,
                                       auto_offset_reset="earliest", fetch_max_wait_ms=20,
                                       max_partition_fetch_bytes=FETCH_PARTITION_BYTES, fetch_max_bytes=FETCH_BYTES)
        self._source = KafkaSource(self._consumer, topic)
        self._turns = Turns(clock)

    async def start(self) -> None:
        try:
            await start_with_retry(self._consumer, self.settings)
        except KafkaAccessDenied as exc:
            if self.settings.taxii.kafka_sasl_username:
                raise KafkaAccessDenied(f"{exc} (vtstream taxii logs in to Kafka with its own "
                                        "VTSTREAM_TAXII_KAFKA_SASL_USERNAME / _PASSWORD / _PASSWORD_FILE)") from None
            raise

    async def stop(self) -> None:
        await self._consumer.stop()

    async def page(self, query: Query, deadline: float) -> Page:
        """One page of objects matching ``query``; FeedBusy when the deadline passes before it is read."""
        return await self._turns.take(deadline, lambda: self._read(query, deadline), self._source.park)

    async def _read(self, query: Query, deadline: float) -> Page:
        starts, missing = resume_points(await self._partitions(), query.cursor)
        if missing:
            starts.update(await self._first_positions(missing, query))
        return await read_page(self._source, starts, query, budget=self.budget, deadline=deadline, clock=self.clock)

    async def _partitions(self) -> list[int]:
        """The topic's partitions from the cluster's metadata (none before the topic exists)."""
        return [tp.partition for tp in await topic_partitions(self._consumer, self.topic) or ()]

    async def _first_positions(self, partitions: list[int], query: Query) -> dict[int, Position]:
        """Where a first page starts: the log start, or the first record the broker dates after ``added_after``.

        A start too early costs reading (records are filtered by their own
        timestamp); only one too late could lose objects, and
        ``offsets_for_times`` gives the earliest offset whose timestamp is at
        or after the target. Where no record is that late, the end is used.
        """
        tps = [TopicPartition(self.topic, p) for p in partitions]
        if query.added_after_us is None:
            starts = await self._consumer.beginning_offsets(tps)
            return {tp.partition: (int(offset), 0) for tp, offset in starts.items()}
        found = await self._consumer.offsets_for_times({tp: query.added_after_us // 1000 + 1 for tp in tps})
        late = [tp for tp, at in found.items() if at is None]
        ends = await self._consumer.end_offsets(late) if late else {}
        return {tp.partition: (int(at.offset) if at is not None else int(ends[tp]), 0) for tp, at in found.items()}
