"""Reading one output topic a bounded batch at a time, for the feed servers.

The TAXII server reads a page of ``indicators.stix`` per request
(:meth:`TopicReader.records`: one partition from an offset to a fixed end);
the MISP feed follows ``indicators.enriched`` from the first day it serves
(:meth:`TopicReader.follow`, then :meth:`TopicReader.poll`). Both read the
same way: a plain consumer without a group (nothing is committed: Kafka is
the store and every reader starts where it needs), the partitions of one
topic, a start found by time, and batches of at most ``batch`` records, so
nothing but the batch in hand is in memory.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from pipeline.kafka.admin import make_consumer, start_with_retry, topic_partitions
from pipeline.settings import Settings


class TopicReader:
    """One consumer over one topic; callers hold :attr:`lock` (or are alone) while they read."""

    def __init__(self, settings: Settings, topic: str, batch: int = 50) -> None:
        self.settings, self.topic, self.batch = settings, topic, batch
        # a short fetch wait: a reader asks for what is there now, and aiokafka's default 500 ms
        # wait would be paid at every partition's end
        self._consumer = make_consumer(settings, group_id=None, auto_offset_reset="earliest", fetch_max_wait_ms=20)
        self.lock = asyncio.Lock()

    async def start(self) -> None:
        await start_with_retry(self._consumer, self.settings)

    async def stop(self) -> None:
        await self._consumer.stop()

    async def partitions(self) -> list[TopicPartition]:
        """The topic's partitions, from the cluster's metadata (none while the topic does not exist)."""
        return await topic_partitions(self._consumer, self.topic) or []

    async def beginning(self, tp: TopicPartition) -> int:
        return int((await self._consumer.beginning_offsets([tp]))[tp])

    async def end(self, tp: TopicPartition) -> int:
        return int((await self._consumer.end_offsets([tp]))[tp])

    async def offset_at(self, tp: TopicPartition, timestamp_ms: int) -> int:
        """The first offset whose record is stamped at or after ``timestamp_ms``; the end when none is."""
        found = (await self._consumer.offsets_for_times({tp: max(0, timestamp_ms)}))[tp]
        return await self.end(tp) if found is None else int(found.offset)

    async def position(self, tp: TopicPartition) -> int:
        """The offset of the next record a followed partition gives."""
        return int(await self._consumer.position(tp))

    def follow(self, starts: dict[TopicPartition, int]) -> None:
        """Read these partitions from these offsets with :meth:`poll` (replaces what was followed)."""
        self._consumer.assign(list(starts))
        for tp, offset in starts.items():
            self._consumer.seek(tp, offset)

    async def poll(self, timeout_ms: int = 1000) -> list[ConsumerRecord]:
        """The next records of the followed partitions, at most ``batch``; none when nothing came in time."""
        batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=self.batch)
        return [record for records in batch.values() for record in records]

    async def records(self, tp: TopicPartition, start: int, end: int) -> AsyncIterator[ConsumerRecord]:
        """The records of ``tp`` from ``start`` up to (not including) ``end``, in offset order."""
        if start >= end:
            return
        self._consumer.assign([tp])
        self._consumer.seek(tp, start)
        offset = start
        while offset < end:
            batch = (await self._consumer.getmany(tp, timeout_ms=1000, max_records=self.batch)).get(tp, [])
            if not batch and await self._consumer.position(tp) >= end:
                return  # the rest up to ``end`` holds no records (transaction markers)
            for record in batch:
                if record.offset >= end:
                    return
                offset = record.offset + 1
                yield record
