"""Typed wire records: every record vtstream writes to its own topics and tables.

One frozen dataclass per record, each with ``to_bytes()`` / ``from_bytes()``
(orjson). This module is the only place that spells a wire field's name::

    LookupRequest   vt.lookups              intake -> lookup
    VtRequest       vt.requests, vt.polls   lookup / retry tiers -> gateway
    VtResponse      vt.responses            gateway -> results
    ParkedRecord    vt.retry.<delay>        gateway / retry tiers -> retry tiers
    CachedResult,   cache table             lookup, results -> lookup, intake's cache copy
    InFlight
    DeadLetter      vt.dead                 every stage -> an operator

Every record carries ``v`` (:data:`RECORD_VERSION`); a record without one is
version 0, the untyped dicts written before these classes existed. Readers
ignore fields they do not know and fill absent optional ones with defaults,
so during a rolling upgrade old and new workers read each other's records in
flight. A record that cannot be read raises :class:`~pipeline.errors.RecordError`
naming the record and the field at fault.

``origin`` (the sighting that caused the work: ``id``, ``source``, ``ref``,
``labels``, ...) is passed through unchanged into the events, so it stays a
mapping; :func:`origin_ref`, :func:`origin_labels` and :func:`origin_source`
read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, Mapping, TypeVar, Union, cast

import orjson

from pipeline.errors import RecordError
from pipeline.rules.files import FileRef
from pipeline.rules.indicators import Indicator

#: The version every record is written with. Version 0 is the untyped dict shape.
RECORD_VERSION = 1

Origin = dict[str, Any]
Op = Literal["lookup", "poll"]
Status = Literal["found", "not_found", "pending", "error"]
_OPS: tuple[str, ...] = ("lookup", "poll")
_STATUSES: tuple[str, ...] = ("found", "not_found", "pending", "error")
_MISSING: Any = object()


def origin_ref(origin: Mapping[str, Any]) -> str | None:
    """topic/partition/offset of the sighting: its identity across replays."""
    ref = origin.get("ref")
    return ref if isinstance(ref, str) else None


def origin_labels(origin: Mapping[str, Any]) -> list[str]:
    """The security labels the sighting's event carried."""
    labels = origin.get("labels")
    return [str(label) for label in labels] if isinstance(labels, list) else []


def origin_replay(origin: Mapping[str, Any]) -> str | None:
    """The ``vtstream replay`` run that fed the sighting; None for a live one."""
    run = origin.get("replay")
    return run if isinstance(run, str) and run else None


def origin_source(origin: Mapping[str, Any]) -> str | None:
    """The system the sighting came from (per-source quotas count by it)."""
    source = origin.get("source")
    return source if isinstance(source, str) else None


class _Reader:
    """Typed access to one decoded record; every failure names the record and the field."""

    __slots__ = ("record", "doc", "prefix")

    def __init__(self, record: str, doc: Any, prefix: str = "") -> None:
        if not isinstance(doc, dict):
            raise RecordError(record, prefix.rstrip(".") or "(record)", f"must be a JSON object, not {_kind(doc)}")
        self.record, self.doc, self.prefix = record, doc, prefix

    def fault(self, name: str, problem: str) -> RecordError:
        """The error for field ``name`` of this (possibly nested) object."""
        return RecordError(self.record, self.prefix + name, problem)

    @classmethod
    def of(cls, record: str, raw: bytes | None) -> "_Reader":
        if raw is None:
            raise RecordError(record, "(record)", "is missing (a tombstone)")
        try:
            return cls(record, orjson.loads(raw))
        except orjson.JSONDecodeError as exc:
            raise RecordError(record, "(record)", f"is not JSON ({exc})") from None

    @property
    def version(self) -> int:
        return self.integer("v", 0)

    def _get(self, name: str, default: Any) -> Any:
        value = self.doc.get(name, _MISSING)
        if value is _MISSING or (value is None and default is not _MISSING):
            if default is _MISSING:
                raise self.fault(name, "is missing")
            return default
        return value

    def _fail(self, name: str, expected: str, value: Any) -> RecordError:
        return self.fault(name, f"must be {expected}, not {_kind(value)}")

    def text(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is not default and not isinstance(value, str):
            raise self._fail(name, "a string", value)
        return value

    def choice(self, name: str, allowed: tuple[str, ...], default: Any = _MISSING) -> Any:
        value = self.text(name, default)
        if value is not default and value not in allowed:
            raise self.fault(name, f"must be one of {', '.join(allowed)}, not {value!r}")
        return value

    def integer(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is not default and (isinstance(value, bool) or not isinstance(value, int)):
            raise self._fail(name, "an integer", value)
        return value

    def number(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._fail(name, "a number", value)
        return float(value)

    def mapping(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is not default and not isinstance(value, dict):
            raise self._fail(name, "an object", value)
        return value

    def texts(self, name: str) -> tuple[str, ...]:
        value = self._get(name, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._fail(name, "a list of strings", value)
        return tuple(value)

    def mappings(self, name: str) -> tuple[dict[str, Any], ...]:
        value = self._get(name, [])
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise self._fail(name, "a list of objects", value)
        return tuple(value)

    def anything(self, name: str) -> Any:
        return self.doc.get(name)

    def nested(self, name: str) -> "_Reader":
        return _Reader(self.record, self.mapping(name), f"{self.prefix}{name}.")

    def indicator(self, name: str = "indicator") -> Indicator:
        inner = self.nested(name)
        try:
            return Indicator(inner.text("type"), inner.text("value"))
        except ValueError as exc:
            raise inner.fault("type", str(exc)) from None

    def file(self, name: str = "file") -> FileRef | None:
        if self.doc.get(name) is None:
            return None
        inner = self.nested(name)
        return FileRef(sha256=inner.text("sha256"), size=inner.integer("size"), name=inner.text("name"),
                       content_b64=inner.text("content_b64", None), path=inner.text("path", None))


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


@dataclass(frozen=True, slots=True)
class LookupRequest:
    """vt.lookups: one accepted sighting, for the stage that owns the indicator's cache entry."""

    indicator: Indicator
    action: str
    origin: Origin
    file: FileRef | None = None
    max_age_s: float | None = None  #: a replay's --max-age: a finished entry this young answers, expired or not
    v: int = RECORD_VERSION

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {"v": self.v, "indicator": self.indicator.as_dict(), "action": self.action,
                               "origin": self.origin}
        if self.file is not None:
            doc["file"] = self.file.as_dict()
        if self.max_age_s is not None:
            doc["max_age_s"] = self.max_age_s
        return orjson.dumps(doc)

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "LookupRequest":
        r = _Reader.of("vt.lookups record", raw)
        return cls(indicator=r.indicator(), action=r.text("action"), origin=r.mapping("origin"),
                   file=r.file(), max_age_s=r.number("max_age_s", None), v=r.version)


@dataclass(frozen=True, slots=True)
class VtRequest:
    """vt.requests / vt.polls: one piece of VirusTotal work (``op``) for the gateway.

    ``attempt`` counts failed tries (and polls of a queued scan); ``analysis_id``
    is set for ``op="poll"``: the scan to poll.
    """

    indicator: Indicator
    action: str
    api: str
    origin: Origin
    op: Op = "lookup"
    attempt: int = 0
    analysis_id: str | None = None
    file: FileRef | None = None
    v: int = RECORD_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The wire form as a dict (a dead letter keeps it whole)."""
        doc: dict[str, Any] = {"v": self.v, "indicator": self.indicator.as_dict(), "action": self.action,
                               "api": self.api, "origin": self.origin, "op": self.op, "attempt": self.attempt}
        if self.analysis_id is not None:
            doc["analysis_id"] = self.analysis_id
        if self.file is not None:
            doc["file"] = self.file.as_dict()
        return doc

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "VtRequest":
        return cls.read(_Reader.of("request record", raw))

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "VtRequest":
        """The request in its wire form as a dict (:meth:`to_dict`), e.g. after a rule rewrote it."""
        return cls.read(_Reader("request record", doc))

    @classmethod
    def read(cls, r: _Reader) -> "VtRequest":
        op = r.choice("op", _OPS, "lookup")
        analysis_id = r.text("analysis_id", None)
        if op == "poll" and analysis_id is None:
            raise r.fault("analysis_id", "is missing (a poll needs the scan's analysis id)")
        return cls(indicator=r.indicator(), action=r.text("action"), api=r.text("api"), origin=r.mapping("origin"),
                   op=op, attempt=r.integer("attempt", 0), analysis_id=analysis_id, file=r.file(), v=r.version)

    def retried(self) -> "VtRequest":
        """The same work, one attempt further."""
        return replace(self, attempt=self.attempt + 1)

    def poll(self, analysis_id: str) -> "VtRequest":
        """The first poll of the scan ``analysis_id`` this request submitted."""
        return replace(self, op="poll", attempt=0, analysis_id=analysis_id)

    def respond(self, status: Status, *, body: Any = None, step: str = "report", reason: str | None = None,
                notes: tuple[str, ...] = (), requests: int = 0) -> "VtResponse":
        """The answer to this request."""
        return VtResponse(indicator=self.indicator, action=self.action, api=self.api, origin=self.origin,
                          status=status, step=step, body=body, reason=reason, notes=notes, requests=requests)


@dataclass(frozen=True, slots=True)
class VtResponse:
    """vt.responses: what VirusTotal answered (``found`` / ``not_found``), or why it did not."""

    indicator: Indicator
    action: str
    api: str
    origin: Origin
    status: Status
    step: str = "report"
    body: Any = None
    reason: str | None = None
    notes: tuple[str, ...] = ()
    requests: int = 0  #: VirusTotal requests the answer cost (a replay run's budget counts them)
    v: int = RECORD_VERSION

    def to_bytes(self) -> bytes:
        return orjson.dumps({"v": self.v, "indicator": self.indicator.as_dict(), "action": self.action,
                             "api": self.api, "origin": self.origin, "status": self.status, "step": self.step,
                             "body": self.body, "reason": self.reason, "notes": list(self.notes),
                             "requests": self.requests})

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "VtResponse":
        r = _Reader.of("vt.responses record", raw)
        return cls(indicator=r.indicator(), action=r.text("action"), api=r.text("api"),
                   origin=r.mapping("origin", {}), status=r.choice("status", _STATUSES),
                   step=r.text("step", "report"), body=r.anything("body"), reason=r.text("reason", None),
                   notes=r.texts("notes"), requests=r.integer("requests", 0), v=r.version)


@dataclass(frozen=True, slots=True)
class ParkedRecord:
    """vt.retry.<delay>: a request waiting, on a tier topic, until ``not_before_ms``.

    ``parked_at_ms`` is when it was written to its tier: the tier's delay counts from it.
    """

    request: VtRequest
    not_before_ms: int
    parked_at_ms: int
    reason: str = ""
    v: int = RECORD_VERSION

    @property
    def not_before(self) -> float:
        return self.not_before_ms / 1000

    def due(self, delay_s: float) -> float:
        """When the tier hands this record on: at ``not_before``, or after the tier's delay."""
        return min(self.not_before, self.parked_at_ms / 1000 + delay_s)

    def to_bytes(self) -> bytes:
        return orjson.dumps({"v": self.v, "not_before": self.not_before_ms, "parked_at": self.parked_at_ms,
                             "reason": self.reason, "request": self.request.to_dict()})

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "ParkedRecord":
        r = _Reader.of("parked record", raw)
        inner = r.nested("request")
        if r.version == 0:  # version 0 kept attempt and analysis_id beside the request, not in it
            inner.doc = {**inner.doc, "attempt": r.integer("attempt", 0), "analysis_id": r.text("analysis_id", None)}
        return cls(request=VtRequest.read(inner), not_before_ms=r.integer("not_before"),
                   parked_at_ms=r.integer("parked_at"), reason=r.text("reason", ""), v=r.version)


@dataclass(frozen=True, slots=True)
class CachedResult:
    """Cache table: VirusTotal's answer for an indicator, as its summary card, until ``expires_at``."""

    summary: dict[str, Any]
    fetched_at: float
    expires_at: float
    v: int = RECORD_VERSION

    def to_bytes(self) -> bytes:
        return orjson.dumps({"v": self.v, "state": "done", "summary": self.summary, "fetched_at": self.fetched_at,
                             "expires_at": self.expires_at})

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "CachedResult":
        return _entry_of(cls, raw)

    @classmethod
    def read(cls, r: _Reader) -> "CachedResult":
        doc = r.doc
        summary, fetched_at, expires_at = doc.get("summary"), doc.get("fetched_at", 0.0), doc.get("expires_at", 0.0)
        version = doc.get("v", 0)
        # Intake's cache copy decodes every finished entry of the changelog: the usual shape
        # is taken in a few type checks; anything else goes through the reader, which names the fault.
        if (type(summary) is dict and type(fetched_at) is float and type(expires_at) is float
                and type(version) is int):
            return cls(summary, fetched_at, expires_at, version)
        return cls(summary=r.mapping("summary"), fetched_at=r.number("fetched_at", 0.0),
                   expires_at=r.number("expires_at", 0.0), v=r.version)


@dataclass(frozen=True, slots=True)
class InFlight:
    """Cache table: a request for the indicator is out; ``waiters`` are the sightings that joined it.

    ``requester`` is the ``ref`` of the sighting that caused the request;
    ``overflow`` counts sightings turned away because the waiter list was full.
    """

    since: float
    requester: str | None = None
    waiters: tuple[Origin, ...] = field(default=())
    overflow: int = 0
    lane: str = "live"  #: the gateway lane the request went to: "live" or "replay"
    v: int = RECORD_VERSION

    def to_bytes(self) -> bytes:
        return orjson.dumps({"v": self.v, "state": "inflight", "since": self.since, "requester": self.requester,
                             "waiters": list(self.waiters), "overflow": self.overflow, "lane": self.lane})

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "InFlight":
        return _entry_of(cls, raw)

    @classmethod
    def read(cls, r: _Reader) -> "InFlight":
        return cls(since=r.number("since", 0.0), requester=r.text("requester", None), waiters=r.mappings("waiters"),
                   overflow=r.integer("overflow", 0), lane=r.choice("lane", ("live", "replay"), "live"), v=r.version)


CacheEntry = Union[CachedResult, InFlight]


def cache_entry_from_bytes(raw: bytes | None) -> CacheEntry:
    """A cache table value, finished or in flight (its ``state`` says which)."""
    r = _Reader.of("cache entry", raw)
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


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """vt.dead: a record a stage could not process, kept whole, with where and why.

    ``original`` is ``{"text": ...}`` (UTF-8 bytes), ``{"base64": ...}`` (other
    bytes) or ``{"record": ...}`` (a record the stage built), so an operator can
    fix and replay it.
    """

    original: dict[str, Any]
    stage: str
    reason: str
    error: str | None
    attempts: int
    failed_at: str
    v: int = RECORD_VERSION

    def to_bytes(self) -> bytes:
        return orjson.dumps({"v": self.v, "original": self.original, "stage": self.stage, "reason": self.reason,
                             "error": self.error, "attempts": self.attempts, "failed_at": self.failed_at})

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "DeadLetter":
        r = _Reader.of("vt.dead record", raw)
        return cls(original=r.mapping("original"), stage=r.text("stage"), reason=r.text("reason"),
                   error=r.text("error", None), attempts=r.integer("attempts", 1), failed_at=r.text("failed_at", ""),
                   v=r.version)


WireRecord = Union[LookupRequest, VtRequest, VtResponse, ParkedRecord, CachedResult, InFlight, DeadLetter]


def wire_value(value: "bytes | WireRecord | dict[str, Any]") -> bytes:
    """The bytes to produce for ``value``: a record's own encoding; a dict (an output event) as orjson."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, dict):
        return orjson.dumps(value)
    return cast(bytes, value.to_bytes())
