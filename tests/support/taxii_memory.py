"""A topic in memory for the TAXII paging tests: what a broker's fetches look like, without a broker.

Fetches hand out a random number of records from a random non-empty subset
of the partitions asked for (as fetch responses from several leaders would;
now and then more than ``max_records``, which is only a hint),
skip offset gaps and trailing markers the way a consumer's position does, and
may advance a fake clock so that deadlines cut pages short.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

from pipeline.outputs.taxii.paging import (Page, Position, Query, Record, Stored, decode_cursor, read_page,
                                           resume_points)


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Topic:
    """Each partition's records in offset order (offsets may have gaps) and its high watermark."""

    records: dict[int, list[Record]]
    highwater: dict[int, int]

    def first_position(self, partition: int, query: Query, rnd: random.Random | None = None) -> Position:
        """Where a first page starts: the log start, or the earliest record stamped after ``added_after``
        (``offsets_for_times``); with ``rnd`` possibly earlier, as an index kept per batch answers."""
        records = self.records[partition]
        if query.added_after_us is None:
            return (0, 0)
        exact = next((r.offset for r in records if query.admits(r.timestamp_ms)), self.highwater[partition])
        if rnd is None:
            return (exact, 0)
        return (rnd.choice([0, exact] + [r.offset for r in records if r.offset <= exact]), 0)


@dataclass
class MemorySource:
    """A :class:`pipeline.outputs.taxii.paging.Source` over a :class:`Topic`."""

    topic: Topic
    rnd: random.Random
    clock: FakeClock = field(default_factory=FakeClock)
    #: seconds one fetch may take (drawn from these)
    fetch_seconds: Sequence[float] = (0.0,)
    position: dict[int, int] = field(default_factory=dict)

    async def seek(self, offsets: Mapping[int, int]) -> None:
        self.position = dict(offsets)

    def _rest(self, partition: int) -> list[Record]:
        return [r for r in self.topic.records[partition] if r.offset >= self.position[partition]]

    async def fetch(self, partitions: Sequence[int], timeout_s: float, max_records: int
                    ) -> Mapping[int, Sequence[Record]]:
        self.clock.now += self.rnd.choice(self.fetch_seconds)
        ready = [p for p in partitions if self._rest(p)]
        for p in set(partitions) - set(ready):  # only markers or nothing left: the position moves to the end
            self.position[p] = max(self.position[p], self.topic.highwater[p])
        if not ready:
            return {}
        out: dict[int, list[Record]] = {}
        for p in self.rnd.sample(ready, self.rnd.randint(1, len(ready))):
            if max_records <= 0:
                break
            rest = self._rest(p)
            taken = rest[:min(self.rnd.randint(1, 6), max_records + self.rnd.choice((0, 0, 2)))]  # a hint
            max_records -= len(taken)
            self.position[p] = taken[-1].offset + 1 if len(taken) < len(rest) else self.topic.highwater[p]
            out[p] = taken
        return out

    async def caught_up(self, partition: int) -> bool:
        return self.position[partition] >= self.topic.highwater[partition]


@dataclass
class MemoryFeed:
    """The server's page source over a :class:`Topic`, as :class:`pipeline.outputs.taxii.feed.Feed` does it."""

    topic: Topic
    budget: int = 10_000
    rnd: random.Random = field(default_factory=lambda: random.Random(7))

    async def page(self, query: Query, deadline: float) -> Page:
        return await follow_one(MemorySource(self.topic, self.rnd), self.topic, query, self.budget, deadline)


async def follow_one(source: MemorySource, topic: Topic, query: Query, budget: int, deadline: float,
                     rnd: random.Random | None = None) -> Page:
    """One page from the query's cursor; partitions it does not name start at their first position."""
    starts, missing = resume_points(sorted(topic.records), query.cursor)
    starts.update({partition: topic.first_position(partition, query, rnd) for partition in missing})
    return await read_page(source, starts, query, budget=budget, deadline=deadline, clock=source.clock)


async def follow(source: MemorySource, topic: Topic, query: Query, budget: int, deadline_s: float,
                 max_pages: int) -> list[Stored]:
    """Every object of ``query``, following ``next`` until ``more`` is false, checking each page's bounds."""
    served: list[Stored] = []
    token: str | None = None
    for _ in range(max_pages):
        page_query = replace(query, cursor=decode_cursor(token) if token else {})
        page = await follow_one(source, topic, page_query, budget, source.clock() + deadline_s, source.rnd)
        assert len(page.objects) <= query.limit and page.scanned <= budget
        served += page.objects
        if not page.more:
            assert page.next is None
            return served
        assert page.next
        token = page.next
    raise AssertionError(f"still 'more' after {max_pages} pages")
