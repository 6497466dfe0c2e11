"""Table recovery that rebuilds a local store which disagrees with its changelog.

faust 0.15.3 (``faust/tables/recovery.py``, ``Recovery._restart_recovery``)
compares each changelog partition's persisted RocksDB offset with the
partition's high water and raises ``ConsistencyError`` when the store is
ahead, which kills the worker; when the changelog is empty it skips the check
and keeps the stale store. Both happen whenever the cluster forgot what the
store remembers: a replaced (or restarted embedded) broker, recreated topics,
another cluster behind the same address.

The store is a cache of the changelog, so :class:`HealingRecovery` does what
Kafka Streams does with a corrupted task: before faust reads the offsets it
starts from, it discards each such partition's local store, logs one warning
that says why, and lets faust rebuild the partition from the changelog.
"""

from __future__ import annotations

import logging
import shutil
from typing import Counter, Set

from faust.stores import rocksdb
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP, CollectionT
from faust.types.transports import ConsumerT

from pipeline.rules.changelog import ahead_of_changelog

log = logging.getLogger("vtstream.kafka.recovery")


class HealingRecovery(Recovery):
    """faust's recovery, with stores that are ahead of their changelog rebuilt instead of fatal."""

    async def _build_offsets(self, consumer: ConsumerT, tps: Set[TP], destination: Counter[TP],
                             title: str) -> None:
        if tps:
            end = await consumer.highwaters(*tps)
            stale = ahead_of_changelog({tp: destination.get(tp) for tp in tps}, end)
            if stale:
                for tp in stale:
                    discard_partition(self.tp_to_table[tp], tp)
                    destination[tp] = None  # type: ignore[assignment]  # faust: "start at the earliest"
                log.warning(
                    "local table state disagrees with the changelog (%s): the stored offset is at or past the "
                    "changelog's end, so the broker was replaced or restarted, the topic recreated, or this is "
                    "another cluster; discarded the %s store of those partitions and rebuilding them from the "
                    "changelog", ", ".join(f"{tp.topic}[{tp.partition}] stored {offset} >= end {last}"
                                           for tp, (offset, last) in sorted(stale.items())), title)
        await super()._build_offsets(consumer, tps, destination, title)


def discard_partition(table: CollectionT, tp: TP) -> None:
    """Close and delete one partition of a table's RocksDB store; faust reopens it empty on next use."""
    store = getattr(table, "data", None)  # the store behind a faust Table
    if not isinstance(store, rocksdb.Store):
        return  # memory stores start empty and persist no offset
    db = store._dbs.pop(tp.partition, None)
    if db is not None:
        db.close()
    for key in [k for k, p in store._key_index.items() if p == tp.partition]:
        del store._key_index[key]
    shutil.rmtree(store.partition_path(tp.partition), ignore_errors=True)


class HealingTableManager(TableManager):
    """faust's table manager with :class:`HealingRecovery`; ``App(TableManager=...)`` takes it."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = HealingRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
