"""When a worker's local table store disagrees with its changelog (pure).

The changelog is the truth; a local RocksDB store is a cache of it that
remembers the offset of the last changelog record it applied. A store whose
offset is at or past the changelog's end offset was written against data the
cluster no longer has: the broker was replaced, the topic recreated, or the
worker pointed at another cluster. faust raises ``ConsistencyError`` for it
(and, on an empty changelog, silently keeps the stale store);
:mod:`pipeline.kafka.recovery` discards such a partition and rebuilds it.
"""

from __future__ import annotations

from typing import Hashable, Mapping, TypeVar

P = TypeVar("P", bound=Hashable)


def ahead_of_changelog(persisted: Mapping[P, int | None], end: Mapping[P, int | None]) -> dict[P, tuple[int, int]]:
    """Partitions whose persisted offset is not below the changelog's end offset: {partition: (persisted, end)}.

    ``persisted``: offset of the last record the store applied (None: nothing
    stored). ``end``: the changelog's end offset, the offset the next record
    would get (None: unknown, never judged).

    >>> ahead_of_changelog({"p0": 41, "p1": 9, "p2": None}, {"p0": 42, "p1": 0, "p2": 7})
    {'p1': (9, 0)}
    """
    found: dict[P, tuple[int, int]] = {}
    for partition, offset in persisted.items():
        last = end.get(partition)
        if offset is not None and offset >= 0 and last is not None and offset >= last:
            found[partition] = (offset, last)
    return found
