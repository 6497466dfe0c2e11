"""The cache table's entries: a finished answer, or a request in flight, and its waiters.

Stored as orjson bytes in a faust table whose changelog is co-partitioned with
vt.lookups and vt.responses; the rules on them are in :mod:`pipeline.rules.cache`.

The sightings that wait for a request in flight are :class:`Waiter` records, each
under its own key (:func:`waiter_key`: the indicator's key, the request's
generation, an index), on the indicator's partition. A new sighting writes its
own record and the small :class:`InFlight` entry, not every waiter again: when
the list lived in the entry, each duplicate rewrote it whole (about 200 bytes a
waiter, 2 MB at 10,000, the bytes written growing with the square of the
duplicates, and the entry outgrowing a Kafka record).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union

import orjson

from pipeline.contracts.card import SummaryCard
from pipeline.contracts.origin import Origin, read_origin
from pipeline.contracts.reader import FieldReader
from pipeline.contracts.version import RECORD_VERSION
from pipeline.errors import RecordError


@dataclass(frozen=True, slots=True)
class CachedResult:
    """Cache table: VirusTotal's answer for an indicator, as its summary card, until ``expires_at``."""

    summary: SummaryCard
    fetched_at: float
    expires_at: float
    v: int = RECORD_VERSION
    _hit: SummaryCard | None = field(default=None, init=False, repr=False, compare=False)

    def hit_card(self) -> SummaryCard:
        """The card a cache hit answers with: the same (frozen) card for every hit of this entry, built
        once (copying the card was a tenth of a cache hit's cost, ``vtstream bench hot-path``)."""
        if self._hit is None:
            object.__setattr__(self, "_hit", self.summary.from_cache(self.fetched_at))
        assert self._hit is not None
        return self._hit

    def to_bytes(self) -> bytes:
        return orjson.dumps({"v": self.v, "state": "done", "summary": self.summary.to_dict(), "fetched_at": self.fetched_at,
                             "expires_at": self.expires_at})

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "CachedResult":
        return _entry_of(cls, raw)

    @classmethod
    def read(cls, r: FieldReader) -> "CachedResult":
        doc = r.doc
        summary, fetched_at, expires_at = doc.get("summary"), doc.get("fetched_at", 0.0), doc.get("expires_at", 0.0)
        version = doc.get("v", 0)
        # Intake's cache copy decodes every finished entry of the changelog: the usual shape
        # is taken in a few type checks; anything else goes through the reader, which names the fault.
        if (type(summary) is dict and type(fetched_at) is float and type(expires_at) is float
                and type(version) is int):
            return cls(SummaryCard.from_dict(summary, "cache entry's summary"), fetched_at, expires_at, version)
        return cls(summary=SummaryCard.from_dict(r.mapping("summary"), "cache entry's summary"), fetched_at=r.number("fetched_at", 0.0),
                   expires_at=r.number("expires_at", 0.0), v=r.version)


@dataclass(frozen=True, slots=True)
class InFlight:
    """Cache table: a request for the indicator is out; ``waiting`` sightings joined it.

    ``requester`` is the ``ref`` of the sighting that caused the request;
    ``waiting`` counts the :class:`Waiter` records stored under
    ``waiter_key(key, generation, 0..waiting-1)``; ``recent`` holds the refs of the
    last of them, so a sighting replayed after a crash is not listed twice;
    ``waiters`` are those an older version listed in the entry itself; ``overflow``
    counts sightings turned away because the waiter list was full.
    """

    since: float
    requester: str | None = None
    waiters: tuple[Origin, ...] = field(default=())
    overflow: int = 0
    lane: str = "live"  #: the gateway lane the request went to: "live" or "replay"
    waiting: int = 0
    recent: tuple[str, ...] = ()
    v: int = RECORD_VERSION

    @property
    def generation(self) -> str:
        """Names this request among the indicator's requests: waiter keys of an earlier one
        (an error, an expired entry) are never read as this one's."""
        return hashlib.blake2b(f"{self.since!r}/{self.requester}".encode(), digest_size=6).hexdigest()

    @property
    def joined(self) -> int:
        """Sightings waiting, wherever they are kept."""
        return self.waiting + len(self.waiters)

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {"v": self.v, "state": "inflight", "since": self.since, "requester": self.requester,
                               "waiters": [waiter.to_dict() for waiter in self.waiters], "overflow": self.overflow,
                               "lane": self.lane}
        if self.waiting:
            doc["waiting"], doc["recent"] = self.waiting, list(self.recent)
        return orjson.dumps(doc)

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "InFlight":
        return _entry_of(cls, raw)

    @classmethod
    def read(cls, r: FieldReader) -> "InFlight":
        return cls(since=r.number("since", 0.0), requester=r.text("requester", None), waiters=_waiters(r),
                   overflow=r.integer("overflow", 0), lane=r.choice("lane", ("live", "replay"), "live"),
                   waiting=r.integer("waiting", 0), recent=r.texts("recent"), v=r.version)


#: Separates an indicator's key from the rest of its waiters' keys (indicator keys hold no NUL).
WAITER_MARK = b"\x00waiter\x00"


def waiter_key(key: bytes, generation: str, index: int) -> bytes:
    """The table key of the ``index``-th sighting waiting for the request ``generation`` of ``key``.

    >>> waiter_key(b"ip:8.8.8.8", "0a1b2c3d4e5f", 7)
    b'ip:8.8.8.8\\x00waiter\\x000a1b2c3d4e5f.7'
    """
    return b"%s%s%s.%d" % (key, WAITER_MARK, generation.encode(), index)


def owner_of(key: bytes) -> bytes | None:
    """The indicator key a waiter key belongs to (its partition's), or None for an indicator key."""
    owner, mark, _ = key.partition(WAITER_MARK)
    return owner if mark else None


@dataclass(frozen=True, slots=True)
class Waiter:
    """Cache table, under :func:`waiter_key`: one sighting waiting for the answer to a request in flight."""

    origin: Origin
    v: int = RECORD_VERSION

    def to_bytes(self) -> bytes:
        return orjson.dumps({"v": self.v, "state": "waiter", "origin": self.origin.to_dict()})

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "Waiter":
        r = FieldReader.of("waiter record", raw)
        return cls(origin=read_origin(r), v=r.version)


def _waiters(r: FieldReader) -> tuple[Origin, ...]:
    r.mappings("waiters")  # a list of objects, or the fault named
    return tuple(Origin.read(FieldReader(r.record, doc, f"{r.prefix}waiters[{i}]."))
                 for i, doc in enumerate(r.doc.get("waiters") or ()))


CacheEntry = Union[CachedResult, InFlight]


def cache_entry_from_bytes(raw: bytes | None) -> CacheEntry:
    """A cache table value, finished or in flight (its ``state`` says which)."""
    r = FieldReader.of("cache entry", raw)
    state = r.doc.get("state")
    if state == "done":
        return CachedResult.read(r)
    if state == "inflight":
        return InFlight.read(r)
    raise r.fault("state", f"must be done or inflight, not {state!r}")


_Entry = TypeVar("_Entry", CachedResult, InFlight)


def _entry_of(kind: type[_Entry], raw: bytes | None) -> _Entry:
    """A cache table value that must be of ``kind`` (one state, not the other)."""
    entry = cache_entry_from_bytes(raw)
    if not isinstance(entry, kind):
        raise RecordError("cache entry", "state", f"must be {'done' if kind is CachedResult else 'inflight'}")
    return entry


def is_finished(raw: bytes | None) -> bool:
    """Whether a cache table value holds a finished entry (decoded, not built).

    Intake's cache copy asks this of every changelog record and builds the
    entry only when a sighting asks for it: most entries are never read there.
    """
    if not raw:
        return False
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and doc.get("state") == "done"


