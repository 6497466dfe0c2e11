"""A read-only copy of the cache table in every worker, so intake answers hits in one hop.

The cache table is partitioned by indicator and written only by the lookup and
results stages (:mod:`pipeline.rules.cache`). Intake reads ``indicators.raw``, whose
records are keyed however the SIEM likes, so it cannot read the owning
partition. Instead every worker follows the table's changelog (all
partitions, no consumer group) into a bounded, least-recently-used copy.
Intake answers from it only when it holds a finished, unexpired entry; anything
else (unknown, in flight, expired, not yet replicated) goes on to the lookup
stage, which owns the table, so the copy being behind costs a hop, never a
wrong answer.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service

from pipeline.contracts.cache_entry import CachedResult, is_finished, owner_of
from pipeline.kafka.admin import make_consumer, start_with_retry
from pipeline.rules.cache import decode, is_fresh
from pipeline.settings import Settings

#: What an entry of the copy costs besides its key and value bytes (the dict's links, the tuple).
ENTRY_OVERHEAD = 200


class CacheCopy:
    """The finished entries: changelog bytes, built into a record on first use, oldest use evicted
    once there are more than ``capacity`` or they take more than ``max_bytes`` (counted as their
    changelog bytes: one answer of a file with many relations can be a megabyte, so a count alone
    bounds nothing)."""

    def __init__(self, capacity: int, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[bytes, tuple[int, bytes | CachedResult]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def apply(self, key: bytes, value: bytes | None) -> None:
        """One changelog record: only finished entries are kept (in flight means "ask the owner");
        a waiter record is skipped unread."""
        if owner_of(key) is not None:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= old[0]
        if not is_finished(value):
            return
        assert value is not None
        cost = len(key) + len(value) + ENTRY_OVERHEAD
        if cost > self.max_bytes:
            return
        self._entries[key] = (cost, value)
        self.size += cost
        while len(self._entries) > self.capacity or self.size > self.max_bytes:
            self.size -= self._entries.popitem(last=False)[1][0]

    def fresh(self, key: bytes, now: float) -> CachedResult | None:
        """The finished entry for ``key`` if it is fresh at ``now`` (:func:`~pipeline.rules.cache.is_fresh`).

        >>> copy = CacheCopy(2)
        >>> copy.apply(b"ip:1.1.1.1", b'{"state":"done","summary":{},"expires_at":10}')
        >>> copy.fresh(b"ip:1.1.1.1", 5).expires_at, copy.fresh(b"ip:1.1.1.1", 11)
        (10.0, None)
        """
        stored = self.finished(key)
        return stored if is_fresh(stored, now) else None

    def finished(self, key: bytes) -> CachedResult | None:
        """The finished entry for ``key``, fresh or not (a replay's ``--max-age`` may accept it)."""
        found = self._entries.get(key)
        if found is None:
            return None
        cost, stored = found
        if isinstance(stored, bytes):
            entry = decode(stored)
            if not isinstance(entry, CachedResult):
                del self._entries[key]
                self.size -= cost
                return None
            self._entries[key] = (cost, entry)
            stored = entry
        self._entries.move_to_end(key)
        return stored


class CacheReplica(Service):
    """Follows the cache changelog (``partitions`` partitions) from the beginning into a :class:`CacheCopy`."""

    def __init__(self, settings: Settings, changelog: str, partitions: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.partitions = [TopicPartition(changelog, p) for p in range(partitions)]
        self.copy = CacheCopy(settings.cache.copy_entries, settings.cache.copy_max_bytes)
        self._consumer: AIOKafkaConsumer | None = None
        self._following: asyncio.Future[None] | None = None

    async def on_start(self) -> None:
        self._consumer = make_consumer(self.settings, group_id=None, enable_auto_commit=False,
                                       auto_offset_reset="earliest")
        await start_with_retry(self._consumer, self.settings)
        self._consumer.assign(self.partitions)
        self._following = self.add_future(self._follow(self._consumer))

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while not self.should_stop:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batch.values():
                for record in records:
                    if record.key is not None:
                        self.copy.apply(record.key, record.value)

    async def on_stop(self) -> None:
        if self._following is not None:
            await asyncio.wait([self._following])
        if self._consumer is not None:
            await self._consumer.stop()
