"""Exact paging over a partitioned log: the TAXII feed's rules, without Kafka.

A collection object is addressed by where it sits: (partition, offset of its
bundle record, index inside the bundle). A page is cut from each partition's
objects in offset order and merged across partitions by date added (the
record's timestamp); the ``next`` token names, per partition, the position of
the first object not yet served. Reading resumes exactly there, so following
``next`` to the end serves every object once per bundle, whatever the page
size, the timestamps (equal, out of order) or how the broker batches records.

Where a partition ends is learnt from what was read (the reader says when it
has returned everything below the partition's high watermark), never from a
prior estimate of the end offset: an estimate that falls short hides the
records behind it (see docs/taxii.md, "the lost objects").

Each page is bounded: at most ``limit + 1`` candidates are kept per partition,
at most ``budget`` records are read, and reading stops at the deadline. A page
cut short by its budget or deadline serves what it has and says ``more``; its
``next`` resumes where reading stopped, so no object is skipped or repeated.
"""

from __future__ import annotations

import base64
import binascii
import heapq
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Protocol, Sequence

import orjson

from pipeline.errors import InputError

#: (offset of the bundle record, index of the object inside the bundle)
Position = tuple[int, int]

#: Largest page served, whatever ``limit`` asks (the API root's ``max_content_length`` bounds bytes too).
MAX_PAGE = 1000
DEFAULT_PAGE = 100
#: Bounds of a position a ``next`` token may name (Kafka offsets are int64, partitions int32).
_MAX_OFFSET = 2**63 - 1
_MAX_PARTITION = 2**31 - 1
#: A token naming more partitions than this was not issued here (a topic has far fewer).
_MAX_TOKEN_PARTITIONS = 10_000


@dataclass(frozen=True)
class Query:
    """The filters of one objects/, manifest/ or objects/{id}/ request."""

    added_after_us: int | None = None
    ids: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    limit: int = DEFAULT_PAGE
    #: partition -> position of the first object to consider (from ``next``)
    cursor: Mapping[int, Position] = field(default_factory=dict)

    def wants(self, obj: Mapping[str, Any]) -> bool:
        return (not self.ids or obj.get("id") in self.ids) and (not self.types or obj.get("type") in self.types)

    def admits(self, timestamp_ms: int) -> bool:
        """Whether a record stamped ``timestamp_ms`` was added after ``added_after``."""
        return self.added_after_us is None or timestamp_ms * 1000 > self.added_after_us


@dataclass(frozen=True)
class Record:
    """What paging needs of one Kafka record."""

    offset: int
    timestamp_ms: int
    value: bytes | None


@dataclass(frozen=True)
class Stored:
    """One object of the collection, where it sits in Kafka and when it was added."""

    timestamp_ms: int
    partition: int
    offset: int
    index: int
    obj: dict[str, Any]

    @property
    def position(self) -> Position:
        return (self.offset, self.index)

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
    #: records read to cut this page (what the budget counts)
    scanned: int = 0


class PartitionScan:
    """One partition's share of a page: its matching objects from ``start`` on, in offset order.

    Stops taking records once it holds ``limit + 1`` candidates (one more than a
    page, so the merge knows whether this partition has more to give).
    """

    def __init__(self, partition: int, start: Position, query: Query) -> None:
        self.partition = partition
        self.query = query
        #: the first object not yet looked at
        self.position = start
        self.candidates: list[Stored] = []
        #: everything below the partition's high watermark has been looked at
        self.caught_up = False

    @property
    def full(self) -> bool:
        return len(self.candidates) > self.query.limit

    @property
    def reading(self) -> bool:
        return not (self.full or self.caught_up)

    def take(self, record: Record) -> None:
        """Look at one record; records before the position (a re-fetch) are ignored."""
        offset, skip = self.position
        if record.offset < offset or not self.reading:
            return
        if record.offset > offset:  # a gap (retention, compaction, a transaction marker): nothing was there
            skip = 0
        if self.query.admits(record.timestamp_ms):
            objects = bundle_objects(record.value)
            for index in range(skip, len(objects)):
                if self.query.wants(objects[index]):
                    self.candidates.append(Stored(record.timestamp_ms, self.partition, record.offset, index,
                                                  objects[index]))
                    if self.full:
                        self.position = (record.offset, index + 1)
                        return
        self.position = (record.offset + 1, 0)


def merge_page(scans: Sequence[PartitionScan], limit: int, scanned: int = 0) -> Page:
    """Merge the partitions' candidates by date added and cut the page; pure.

    The merge takes, at each step, the earliest head among the partitions
    (ties: the lower partition); within a partition, offset order is kept even
    when timestamps are not in order (producer clocks). When every scan is full
    or caught up, this is the same sequence whatever the page size, because a
    partition never runs out of read candidates before the page is cut.
    """
    merged = heapq.merge(*(s.candidates for s in scans), key=lambda s: (s.timestamp_ms, s.partition))
    served = [stored for _, stored in zip(range(limit), merged)]
    taken: dict[int, int] = {}
    for stored in served:
        taken[stored.partition] = taken.get(stored.partition, 0) + 1
    cursor: dict[int, Position] = {}
    more = False
    for scan in scans:
        count = taken.get(scan.partition, 0)
        if count < len(scan.candidates):
            cursor[scan.partition] = scan.candidates[count].position
            more = True
        else:
            cursor[scan.partition] = scan.position
            more = more or not scan.caught_up
    return Page(served, more, encode_cursor(cursor) if more else None, scanned)


class Source(Protocol):
    """Where a page's records come from: Kafka in the feed, a list in the tests."""

    async def seek(self, offsets: Mapping[int, int]) -> None:
        """Read each partition from this offset on."""

    async def fetch(self, partitions: Sequence[int], timeout_s: float, max_records: int
                    ) -> Mapping[int, Sequence[Record]]:
        """The next records of some of ``partitions``, each partition's in offset order.

        ``max_records`` is a hint: records beyond the page's budget are left unread, and their partition
        is then not taken for caught up.
        """

    async def caught_up(self, partition: int) -> bool:
        """Whether every record below the partition's high watermark has been returned since the seek."""


async def read_page(source: Source, starts: Mapping[int, Position], query: Query, *, budget: int,
                    deadline: float, clock: Callable[[], float]) -> Page:
    """One page of ``query`` from ``starts``: at most ``budget`` records read, nothing read after ``deadline``.

    At least one fetch is made, so a page always moves forward when the source has records.
    """
    scans = [PartitionScan(p, starts[p], query) for p in sorted(starts)]
    by_partition = {scan.partition: scan for scan in scans}
    await source.seek({scan.partition: scan.position[0] for scan in scans})
    scanned = 0
    while True:
        reading = [scan.partition for scan in scans if scan.reading]
        if not reading:
            break
        batch = await source.fetch(reading, max(0.0, min(deadline - clock(), 1.0)), budget - scanned)
        for partition, records in batch.items():
            scan = by_partition[partition]
            for record in records:
                if not scan.reading or scanned >= budget:
                    break
                scan.take(record)
                scanned += 1
        if scanned >= budget:
            break  # records may be left unread: no partition is called caught up, the page says more
        for scan in scans:
            if scan.reading and await source.caught_up(scan.partition):
                scan.caught_up = True
        if clock() >= deadline:
            break
    return merge_page(scans, query.limit, scanned)


def resume_points(partitions: Sequence[int], cursor: Mapping[int, Position]) -> tuple[dict[int, Position], list[int]]:
    """Where the cursor resumes, and the partitions it does not name (new, or a first page).

    InputError when it names a partition the topic lacks: that token was not issued here.
    """
    if set(cursor) - set(partitions):
        raise InputError("the 'next' value was not issued by this server (it names a partition the topic lacks)")
    return dict(cursor), [p for p in partitions if p not in cursor]


def bundle_objects(value: bytes | None) -> list[dict[str, Any]]:
    """The objects of one bundle record; anything else on the topic holds none."""
    try:
        bundle = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return []
    objects = bundle.get("objects") if isinstance(bundle, dict) and bundle.get("type") == "bundle" else None
    return [o for o in objects if isinstance(o, dict)] if isinstance(objects, list) else []


def format_timestamp(us: int) -> str:
    """Microseconds since the epoch as a TAXII timestamp (UTC, microsecond precision)."""
    dt = datetime.fromtimestamp(us // 1_000_000, timezone.utc).replace(microsecond=us % 1_000_000)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> int:
    """A TAXII / RFC 3339 timestamp as microseconds since the epoch; InputError when it is not one.

    Kafka timestamps start at the epoch, so an earlier one is refused too.

    >>> parse_timestamp("2026-01-01T00:00:00.000001Z") - parse_timestamp("2026-01-01T00:00:00Z")
    1
    """
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        delta = dt - datetime(1970, 1, 1, tzinfo=timezone.utc)
    except (ValueError, OverflowError):
        raise InputError(f"not a timestamp: {text[:40]!r}; expected e.g. 2026-01-01T00:00:00.000Z") from None
    if delta.days < 0:
        raise InputError(f"timestamp before 1970-01-01T00:00:00Z: {text[:40]!r}")
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def encode_cursor(cursor: Mapping[int, Position]) -> str:
    """A ``next`` token: base64url JSON of partition -> [offset, index]."""
    blob = orjson.dumps({str(p): list(pos) for p, pos in sorted(cursor.items())})
    return base64.urlsafe_b64encode(blob).decode().rstrip("=")


def decode_cursor(token: str) -> dict[int, Position]:
    """The positions a ``next`` token names; InputError for anything this server would not issue."""
    refused = InputError("the 'next' value was not issued by this server")
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error):  # not ASCII, not base64, not JSON
        raise refused from None
    if not isinstance(raw, dict) or len(raw) > _MAX_TOKEN_PARTITIONS:
        raise refused
    cursor: dict[int, Position] = {}
    for key, pos in raw.items():
        if not (key.isascii() and key.isdigit() and len(key) <= 10) or not (
                isinstance(pos, list) and len(pos) == 2 and all(type(n) is int for n in pos)):
            raise refused
        partition, (offset, index) = int(key), pos
        if partition > _MAX_PARTITION or not 0 <= offset <= _MAX_OFFSET or not 0 <= index <= _MAX_OFFSET:
            raise refused
        cursor[partition] = (offset, index)
    return cursor

