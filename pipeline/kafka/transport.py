"""faust's aiokafka transport, changed so that a rebalance never skips records.

faust (0.15.3, with aiokafka 0.14) drops records around rebalances and restarts
in three ways (faust-streaming issue #596 is the first); here they lost scans
parked on ``vt.polls`` across a restart, and responses when a group member died.

1. When recovery completes, faust resumes fetching the stream partitions,
   seeks them to their committed offsets, and only then clears its stream
   buffers: what was fetched in between is dropped after the position moved
   past it. Here stream partitions stay paused until the buffers are cleared
   (:meth:`_Consumer.resume_partitions`, :meth:`_Consumer.resume_flow`).
2. faust hands its *live* set of active partitions to each fetch and changes
   it while the fetch waits; aiokafka reads an empty set as "every partition",
   so records of paused partitions come back and faust skips them, past their
   position. Here each fetch gets a snapshot (:meth:`_ConsumerThread._fetch_records`).
3. aiokafka's ``seek_to_committed`` only moves partitions committed above 0,
   so a partition without a commit (a fresh ``vt.polls``, or one whose records
   are all in flight) keeps the position after what was dropped. Here such
   partitions go back to offset 0 or, never committed, to the earliest offset.

Records handled before a rebalance but not committed are handled again; the
stages tolerate that (same ``event_id``, cache hits, a poll costs one more
call). Changelog partitions are left alone: table recovery positions them.

Its producer also learns the partitions of every table's changelog when it
starts (:class:`_Producer`): faust partitions a table write by key from the
producer's metadata, synchronously, and aiokafka's producer only knows the
topics it has asked about. The embedded broker answers a metadata request for
no topics with all of them; Apache Kafka with none, so there the first cache
write raised ``TypeError`` and the lookup went to ``vt.dead``.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Set

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.consumer import RecordMap
from faust.types import TP
from faust.types.transports import TransportT


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    async def _fetch_records(self, consumer: aiokafka.AIOKafkaConsumer, active_partitions: Set[TP],
                             timeout: float | None = None, max_records: int | None = None) -> RecordMap:
        """Fetch for a snapshot of the active partitions, never for "all" (cause 2)."""
        snapshot = set(active_partitions)
        if not snapshot:
            return {}
        return await super()._fetch_records(consumer, snapshot, timeout=timeout, max_records=max_records)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Seek every stream partition, committed or not (cause 3)."""
        return await self.call_thread(self._seek_every_partition_to_committed)

    async def _seek_every_partition_to_committed(self) -> Mapping[TP, int]:
        consumer = self._ensure_consumer()
        committed = await consumer.seek_to_committed()
        never_committed = []
        for tp, offset in committed.items():
            if offset or self.consumer._is_changelog_tp(tp):
                continue
            if offset == 0:
                consumer.seek(tp, 0)
            else:
                never_committed.append(tp)
        if never_committed:  # create_app resets to earliest
            await consumer.seek_to_beginning(*never_committed)
        return committed


class _Consumer(faust_aiokafka.Consumer):
    def __post_init__(self) -> None:
        super().__post_init__()
        self._held: set[TP] = set()

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def resume_partitions(self, tps: Iterable[TP]) -> None:
        """Hold stream partitions until :meth:`resume_flow` (cause 1); resume changelogs now."""
        tpset = set(tps)
        streams = {tp for tp in tpset if not self._is_changelog_tp(tp)}
        self._held |= streams
        super().resume_partitions(tpset - streams)

    def pause_partitions(self, tps: Iterable[TP]) -> None:
        tpset = set(tps)
        self._held -= tpset
        super().pause_partitions(tpset)

    def resume_flow(self) -> None:
        """Resume, then let the held stream partitions fetch: faust has cleared its buffers by now."""
        super().resume_flow()
        if self._held:
            held, self._held = self._held & self.assignment(), set()
            super().resume_partitions(held)


class _Producer(faust_aiokafka.Producer):
    async def on_start(self) -> None:
        await super().on_start()
        producer = self._ensure_producer()
        for table in self.app.tables.values():
            await producer.partitions_for(table.changelog_topic.get_topic_name())  # waits for the metadata


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer
    Producer = _Producer


class App(faust.App):
    """A faust app whose consumer uses :class:`Transport`."""

    def _new_transport(self) -> TransportT:
        return Transport(self.conf.broker_consumer, self)

