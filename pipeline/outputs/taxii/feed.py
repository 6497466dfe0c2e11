"""The TAXII collection's contents, read from indicators.stix page by page.

Kafka is the store: an object's ``date_added`` is the timestamp of the record
(bundle) that carried it, ``added_after`` seeks each partition with
``offsets_for_times``, and a page's ``next`` token is, per partition, the
offset and the index inside the bundle of the first object not yet served. A
page reads at most ``limit + 1`` matching objects per partition and merges them
by date added, so memory is bounded by the page, never by the topic.
"""

from __future__ import annotations

import base64
import binascii
import heapq
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, AsyncIterator

import orjson
from aiokafka import TopicPartition

from pipeline.errors import InputError
from pipeline.outputs.topic_reader import TopicReader
from pipeline.settings import Settings

#: Largest page served, whatever ``limit`` asks (the API root's ``max_content_length`` bounds bytes too).
MAX_PAGE = 1000
DEFAULT_PAGE = 100


@dataclass(frozen=True)
class Query:
    """The filters of one objects/ or manifest/ request."""

    added_after_us: int | None = None
    ids: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    limit: int = DEFAULT_PAGE
    #: partition -> (offset, index inside the bundle) of the first object to serve
    cursor: dict[int, tuple[int, int]] = field(default_factory=dict)

    def wants(self, obj: dict[str, Any]) -> bool:
        return (not self.ids or obj.get("id") in self.ids) and (not self.types or obj.get("type") in self.types)


@dataclass(frozen=True)
class Stored:
    """One object of the collection, where it sits in Kafka and when it was added."""

    timestamp_ms: int
    partition: int
    offset: int
    index: int
    obj: dict[str, Any]

    @property
    def date_added(self) -> str:
        return format_timestamp(self.timestamp_ms * 1000)

    @property
    def version(self) -> str:
        return str(self.obj.get("modified") or self.obj.get("created") or self.date_added)


@dataclass(frozen=True)
class Page:
    objects: list[Stored]
    more: bool
    next: str | None


def format_timestamp(us: int) -> str:
    """Microseconds since the epoch as a TAXII timestamp (UTC, microsecond precision)."""
    dt = datetime.fromtimestamp(us // 1_000_000, timezone.utc).replace(microsecond=us % 1_000_000)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> int:
    """A TAXII / RFC 3339 timestamp as microseconds since the epoch; InputError when it is not one.

    >>> parse_timestamp("2026-01-01T00:00:00.000001Z") - parse_timestamp("2026-01-01T00:00:00Z")
    1
    """
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InputError(f"not a timestamp: {text[:40]!r}; expected e.g. 2026-01-01T00:00:00.000Z") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    delta = dt - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def encode_cursor(cursor: dict[int, tuple[int, int]]) -> str:
    blob = orjson.dumps({str(p): list(pos) for p, pos in sorted(cursor.items())})
    return base64.urlsafe_b64encode(blob).decode().rstrip("=")


def decode_cursor(token: str) -> dict[int, tuple[int, int]]:
    """The positions a ``next`` token names; InputError for a token this server did not issue."""
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return {int(p): (int(pos[0]), int(pos[1])) for p, pos in raw.items()}
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError, AttributeError, IndexError):
        raise InputError("the 'next' value was not issued by this server") from None


def merge_page(per_partition: dict[int, list[Stored]], resume: dict[int, tuple[int, int]], limit: int) -> Page:
    """Merge each partition's candidates by date added and cut the page; pure.

    ``per_partition`` holds each partition's candidates in offset order, up to
    ``limit + 1``; ``resume`` is where each partition's reading stopped (kept
    when all of its candidates fit the page). A partition whose candidates did
    not all fit resumes at its first object left out. Objects of one partition
    are served in offset order even if their timestamps are not (producer clocks).
    """
    merged = list(heapq.merge(*per_partition.values(), key=lambda s: (s.timestamp_ms, s.partition)))
    served, left = merged[:limit], merged[limit:]
    cursor = dict(resume)
    for stored in left:
        cursor[stored.partition] = min(cursor.get(stored.partition, (stored.offset, stored.index)),
                                       (stored.offset, stored.index))
    return Page(served, bool(left), encode_cursor(cursor) if left else None)


class Feed:
    """Reads the collection's topic for the TAXII server: one reader, one request at a time."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self._reader = TopicReader(settings, topic)

    async def start(self) -> None:
        await self._reader.start()

    async def stop(self) -> None:
        await self._reader.stop()

    async def page(self, query: Query) -> Page:
        """One page of objects matching ``query``, oldest first."""
        async with self._reader.lock:
            per_partition: dict[int, list[Stored]] = {}
            resume: dict[int, tuple[int, int]] = {}
            for tp in await self._reader.partitions():
                start = query.cursor.get(tp.partition) or (await self._first_offset(tp, query), 0)
                items: list[Stored] = []
                resume[tp.partition] = start
                async for stored, after in self._read(tp, start, query):
                    items.append(stored)
                    resume[tp.partition] = after
                    if len(items) > query.limit:
                        break
                per_partition[tp.partition] = items
            return merge_page(per_partition, resume, query.limit)

    async def _first_offset(self, tp: TopicPartition, query: Query) -> int:
        if query.added_after_us is None:
            return await self._reader.beginning(tp)
        return await self._reader.offset_at(tp, query.added_after_us // 1000 + 1)

    async def _read(self, tp: TopicPartition, start: tuple[int, int], query: Query
                    ) -> AsyncIterator[tuple[Stored, tuple[int, int]]]:
        """Matching objects from ``start`` to the partition's current end, each with the position after it."""
        async for record in self._reader.records(tp, start[0], await self._reader.end(tp)):
            if query.added_after_us is not None and record.timestamp * 1000 <= query.added_after_us:
                continue
            first = start[1] if record.offset == start[0] else 0
            for index, obj in enumerate(_objects(record.value)):
                if index >= first and query.wants(obj):
                    yield (Stored(record.timestamp, tp.partition, record.offset, index, obj),
                           (record.offset, index + 1))


def _objects(value: bytes | None) -> list[dict[str, Any]]:
    """The objects of one bundle record; anything else on the topic holds none."""
    try:
        bundle = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return []
    objects = bundle.get("objects") if isinstance(bundle, dict) and bundle.get("type") == "bundle" else None
    return [o for o in objects if isinstance(o, dict)] if isinstance(objects, list) else []
