"""Which finished records may be acknowledged while others are still in flight.

Records of one partition finish in any order when several are worked on at
once, but a consumer commits one offset per partition: everything below it
counts as done. So a finished record is released for acknowledgement only
when every older record of its partition has finished too; the commit then
never passes unfinished work, and a crash replays it instead of losing it.

>>> flight = AckOrder()
>>> for offset in (5, 6, 7):
...     flight.start(("vt.requests", 0), offset, f"record {offset}")
>>> flight.finish(("vt.requests", 0), 6)
[]
>>> flight.committable(("vt.requests", 0))
5
>>> flight.finish(("vt.requests", 0), 5)
['record 5', 'record 6']
>>> flight.committable(("vt.requests", 0)), len(flight)
(7, 1)

A record delivered again after it was released (its commit was lost: the
broker restarted, the group rebalanced) is known, and its work is not redone:

>>> flight.released(("vt.requests", 0), 6), flight.released(("vt.requests", 0), 7)
(True, False)
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Hashable, TypeVar

T = TypeVar("T")


class AckOrder(Generic[T]):
    """Records in flight per partition, released in offset order once finished."""

    def __init__(self) -> None:
        # per partition: offset -> [item, finished], in the order the records arrived (offset order)
        self._partitions: dict[Hashable, OrderedDict[int, list[object]]] = {}
        self._next: dict[Hashable, int] = {}

    def start(self, partition: Hashable, offset: int, item: T) -> None:
        """A record was handed out for work (records of a partition arrive in offset order)."""
        self._partitions.setdefault(partition, OrderedDict())[offset] = [item, False]

    def finish(self, partition: Hashable, offset: int) -> list[T]:
        """Mark a record finished; the records now safe to acknowledge, oldest first."""
        records = self._partitions[partition]
        records[offset][1] = True
        released: list[T] = []
        while records:
            oldest, (item, finished) = next(iter(records.items()))
            if not finished:
                break
            records.popitem(last=False)
            released.append(item)  # type: ignore[arg-type]
            self._next[partition] = oldest + 1
        return released

    def released(self, partition: Hashable, offset: int) -> bool:
        """True when the record at ``offset`` was released before: what it caused is on Kafka already."""
        return offset < self._next.get(partition, 0) and offset not in self._partitions.get(partition, ())

    def committable(self, partition: Hashable) -> int | None:
        """The offset a commit may name: the oldest record still in flight, else one past the last
        released (None before any record of the partition was released or started)."""
        records = self._partitions.get(partition)
        if records:
            return next(iter(records))
        return self._next.get(partition)

    def __len__(self) -> int:
        return sum(len(records) for records in self._partitions.values())
