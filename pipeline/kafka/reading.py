"""Reading a topic to its real end: the start offsets, the drain, the whole topic, the last value per key.

``vtstream replay`` reads its source range and its run states here, and
``vtstream status`` reads vt.quota and the true end offsets here, so "read to
the end" is written once. The end comes from a fetch's high watermark as well
as ListOffsets: the embedded broker answers ListOffsets with the last batch's
base offset + 1, which undercounts whenever a producer batched several records.
"""

from __future__ import annotations

import logging
from typing import Any, AsyncIterator, Callable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.errors import ConfigError
from pipeline.kafka.admin import make_consumer, start_with_retry, topic_partitions
from pipeline.settings import Settings

log = logging.getLogger("vtstream.kafka.reading")

#: Rounds of empty fetches after which a partition whose broker never reported a high watermark counts as read.
_IDLE_ROUNDS = 10


def reader(settings: Settings, group: str | None = None) -> AIOKafkaConsumer:
    """A consumer that reads from the earliest offset and commits only when told."""
    return make_consumer(settings, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest")


async def partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions from the cluster's metadata (:func:`~pipeline.kafka.admin.topic_partitions`)."""
    found = await topic_partitions(consumer, topic)
    if found is None:
        raise ConfigError(f"topic {topic} does not exist")
    return found


async def drain(consumer: AIOKafkaConsumer, starts: dict[TopicPartition, int],
                should_stop: Callable[[], bool] = lambda: False, max_records: int = 500
                ) -> AsyncIterator[tuple[TopicPartition, list[Any]]]:
    """Yield each partition's records from ``starts`` to the end the broker reports on the first fetch.

    The end comes from the fetch's high watermark, not only ListOffsets: the
    embedded broker answers ListOffsets with the last batch's base offset + 1.
    Records appended after that first fetch are left for a later run.
    """
    if not starts:
        return
    consumer.assign(list(starts))
    listed = await consumer.end_offsets(list(starts))
    for tp, start in starts.items():
        consumer.seek(tp, start)
    ends: dict[TopicPartition, int] = {}
    pending, idle = set(starts), 0
    while pending and not should_stop():
        batch = await consumer.getmany(*pending, timeout_ms=300, max_records=max_records)
        idle = 0 if batch else idle + 1
        for tp in list(pending):
            highwater = consumer.highwater(tp)
            if highwater is not None:
                ends.setdefault(tp, max(listed[tp], highwater))
        for tp, records in batch.items():
            end = ends.get(tp, listed[tp])
            records = [r for r in records if r.offset < end]
            if records:
                yield tp, records
        for tp in list(pending):
            end = ends.get(tp)
            if (end is not None and await consumer.position(tp) >= end) or idle >= _IDLE_ROUNDS:
                pending.discard(tp)
                consumer.pause(tp)


async def start_offsets(consumer: AIOKafkaConsumer, tps: list[TopicPartition], since: float
                        ) -> tuple[dict[TopicPartition, int], str]:
    """Where to start reading for records at or after ``since``, and how it was found.

    ``offsets_for_times`` is used only when the broker's answer checks out (the
    record at the answered offset has the answered timestamp); else scan from
    the beginning.
    """
    begin = await consumer.beginning_offsets(tps)
    try:
        found = await consumer.offsets_for_times({tp: int(since * 1000) for tp in tps})
    except Exception as exc:  # UnsupportedVersionError and friends: the broker cannot say
        log.info("offsets_for_times not supported (%r); scanning", exc)
        return dict(begin), "scan"
    answered = {tp: hit for tp, hit in found.items() if hit is not None}
    if not answered:
        return dict(begin), "scan"
    consumer.assign(list(answered))
    for tp, hit in answered.items():
        consumer.seek(tp, hit.offset)
        batch = await consumer.getmany(tp, timeout_ms=2000, max_records=1)
        records = batch.get(tp, [])
        if not records or records[0].offset != hit.offset or records[0].timestamp != hit.timestamp:
            return dict(begin), "scan"
    listed = await consumer.end_offsets(tps)
    return {tp: answered[tp].offset if tp in answered else listed[tp] for tp in tps}, "offsets_for_times"


async def whole_topic(settings: Settings, topic: str) -> AsyncIterator[Any]:
    """Every keyed record of ``topic`` from its beginning to its end (nothing when it does not exist)."""
    consumer = reader(settings)
    await start_with_retry(consumer, settings)
    try:
        tps = await topic_partitions(consumer, topic)
        if tps is None:
            return
        async for _tp, records in drain(consumer, await consumer.beginning_offsets(tps)):
            for record in records:
                if record.key is not None:
                    yield record
    finally:
        await consumer.stop()


async def latest_by_key(settings: Settings, topic: str) -> dict[bytes, bytes]:
    """The last value of every key of a compacted ``topic`` (a tombstone removes its key)."""
    latest: dict[bytes, bytes] = {}
    async for record in whole_topic(settings, topic):
        if record.value is None:
            latest.pop(record.key, None)
        else:
            latest[record.key] = record.value
    return latest


async def true_ends(consumer: AIOKafkaConsumer, begin: Mapping[TopicPartition, int],
                    listed: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
    """The true end offset of every partition: ListOffsets' answer, raised to the high watermark
    a fetch of the last listed record reports (one small read per non-empty partition)."""
    end = dict(listed)
    active = [tp for tp in listed if listed[tp] > begin[tp]]
    if not active:
        return end
    consumer.assign(active)
    for tp in active:
        consumer.seek(tp, listed[tp] - 1)
    pending, idle = set(active), 0
    while pending and idle < _IDLE_ROUNDS:
        batch = await consumer.getmany(*pending, timeout_ms=500)
        idle = 0 if batch else idle + 1
        for tp in list(pending):
            highwater = consumer.highwater(tp)
            if highwater is not None:
                end[tp] = max(end[tp], highwater)
                pending.discard(tp)
                consumer.pause(tp)
    return end
