"""Typed wire records: every record vtstream writes to its own topics.

One frozen dataclass per record, each with ``to_bytes()`` / ``from_bytes()``
(orjson). This module is the only place that spells a wire field's name::

    LookupRequest   vt.lookups              intake -> lookup
    VtRequest       vt.requests, vt.polls   lookup / retry tiers -> gateway
    VtResponse      vt.responses            gateway -> results
    ParkedRecord    vt.retry.<delay>        gateway / retry tiers -> retry tiers
    DeadLetter      vt.dead                 every stage -> an operator

The cache table's entries are in :mod:`pipeline.contracts.cache_entry`.

Every record carries ``v`` (:data:`RECORD_VERSION`); a record without one is
version 0, the untyped dicts written before these classes existed. Readers
ignore fields they do not know and fill absent optional ones with defaults,
so during a rolling upgrade old and new workers read each other's records in
flight. A record that cannot be read raises :class:`~pipeline.errors.RecordError`
naming the record and the field at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, Union

import orjson

from pipeline.contracts.indicator import FileRef, Indicator
from pipeline.contracts.origin import Origin, read_origin
from pipeline.contracts.quick import quick_init
from pipeline.contracts.reader import FieldReader
from pipeline.contracts.version import RECORD_VERSION

Op = Literal["lookup", "poll"]
Status = Literal["found", "not_found", "pending", "error"]
_OPS: tuple[str, ...] = ("lookup", "poll")
_STATUSES: tuple[str, ...] = ("found", "not_found", "pending", "error")


@quick_init
@dataclass(frozen=True, slots=True)
class LookupRequest:
    """vt.lookups: one accepted sighting, for the stage that owns the indicator's cache entry (also
    intake's outcome for it, built on every record: hence :func:`~pipeline.contracts.quick.quick_init`)."""

    indicator: Indicator
    action: str
    origin: Origin
    file: FileRef | None = None
    max_age_s: float | None = None  #: a replay's --max-age: a finished entry this young answers, expired or not
    #: A replay's ceiling: VirusTotal requests the work this sighting causes may make (None: no limit).
    allowance: int | None = None
    v: int = RECORD_VERSION

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {"v": self.v, "indicator": self.indicator.as_dict(), "action": self.action,
                               "origin": self.origin.to_dict()}
        if self.file is not None:
            doc["file"] = self.file.as_dict()
        if self.max_age_s is not None:
            doc["max_age_s"] = self.max_age_s
        if self.allowance is not None:
            doc["allowance"] = self.allowance
        return orjson.dumps(doc)

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "LookupRequest":
        r = FieldReader.of("vt.lookups record", raw)
        return cls(indicator=r.indicator(), action=r.text("action"), origin=read_origin(r),
                   file=r.file(), max_age_s=r.number("max_age_s", None), allowance=_allowance(r), v=r.version)


@dataclass(frozen=True, slots=True)
class VtRequest:
    """vt.requests / vt.polls: one piece of VirusTotal work (``op``) for the gateway.

    ``attempt`` counts failed tries (and polls of a queued scan); ``analysis_id``
    is set for ``op="poll"``: the scan to poll. The work's request count travels
    with it: ``spent`` is what it already cost and no answer has reported yet (a
    queued poll, a retried failure), ``allowance`` what it may still spend (a
    replay's reservation; None: no limit).
    """

    indicator: Indicator
    action: str
    api: str
    origin: Origin
    op: Op = "lookup"
    attempt: int = 0
    analysis_id: str | None = None
    file: FileRef | None = None
    spent: int = 0
    allowance: int | None = None
    v: int = RECORD_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The wire form as a dict (a dead letter keeps it whole)."""
        doc: dict[str, Any] = {"v": self.v, "indicator": self.indicator.as_dict(), "action": self.action,
                               "api": self.api, "origin": self.origin.to_dict(), "op": self.op, "attempt": self.attempt}
        if self.analysis_id is not None:
            doc["analysis_id"] = self.analysis_id
        if self.file is not None:
            doc["file"] = self.file.as_dict()
        if self.spent:
            doc["spent"] = self.spent
        if self.allowance is not None:
            doc["allowance"] = self.allowance
        return doc

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "VtRequest":
        return cls.read(FieldReader.of("request record", raw))

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "VtRequest":
        """The request in its wire form as a dict (:meth:`to_dict`), e.g. after a rule rewrote it."""
        return cls.read(FieldReader("request record", doc))

    @classmethod
    def read(cls, r: FieldReader) -> "VtRequest":
        op = r.choice("op", _OPS, "lookup")
        analysis_id = r.text("analysis_id", None)
        if op == "poll" and analysis_id is None:
            raise r.fault("analysis_id", "is missing (a poll needs the scan's analysis id)")
        spent = r.integer("spent", 0)
        if spent < 0:
            raise r.fault("spent", "must not be negative")
        return cls(indicator=r.indicator(), action=r.text("action"), api=r.text("api"), origin=read_origin(r),
                   op=op, attempt=r.integer("attempt", 0), analysis_id=analysis_id, file=r.file(), spent=spent,
                   allowance=_allowance(r), v=r.version)

    def retried(self) -> "VtRequest":
        """The same work, one attempt further."""
        return replace(self, attempt=self.attempt + 1)

    def poll(self, analysis_id: str) -> "VtRequest":
        """The first poll of the scan ``analysis_id`` this request submitted."""
        return replace(self, op="poll", attempt=0, analysis_id=analysis_id)

    def carrying(self, spent: int, made: int) -> "VtRequest":
        """This work parked after ``made`` more requests: ``spent`` of them still unreported, the
        allowance less all ``made``."""
        left = None if self.allowance is None else max(0, self.allowance - made)
        return replace(self, spent=spent, allowance=left)

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
                             "api": self.api, "origin": self.origin.to_dict(), "status": self.status, "step": self.step,
                             "body": self.body, "reason": self.reason, "notes": list(self.notes),
                             "requests": self.requests})

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "VtResponse":
        r = FieldReader.of("vt.responses record", raw)
        return cls(indicator=r.indicator(), action=r.text("action"), api=r.text("api"),
                   origin=read_origin(r, required=False), status=r.choice("status", _STATUSES),
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
        r = FieldReader.of("parked record", raw)
        inner = r.nested("request")
        if r.version == 0:  # version 0 kept attempt and analysis_id beside the request, not in it
            inner.doc = {**inner.doc, "attempt": r.integer("attempt", 0), "analysis_id": r.text("analysis_id", None)}
        return cls(request=VtRequest.read(inner), not_before_ms=r.integer("not_before"),
                   parked_at_ms=r.integer("parked_at"), reason=r.text("reason", ""), v=r.version)


#: Version 2 of a dead letter: the original is cut at 64 KiB, and its length, SHA-256 and
#: ``ref`` say which record it was; a minimal letter (building the full one failed) also
#: carries the error's type. Versions 0 and 1 are read with those fields empty.
DEAD_LETTER_VERSION = 2


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """vt.dead: a record a stage could not process, where and why, and what of it is kept.

    ``original`` is ``{"text": ...}`` (UTF-8 bytes), ``{"base64": ...}`` (other
    bytes), ``{"record": ...}`` (a record the stage built) or ``{}`` (nothing kept),
    so an operator can fix and replay it; ``truncated`` says it is only the start
    (``original_length`` bytes in all, ``original_sha256`` of the whole). ``ref``
    is the input record's topic/partition/offset when the stage knew it.
    """

    original: dict[str, Any]
    stage: str
    reason: str
    error: str | None
    attempts: int
    failed_at: str
    original_length: int | None = None
    original_sha256: str | None = None
    truncated: bool = False
    ref: str | None = None
    error_type: str | None = None
    v: int = DEAD_LETTER_VERSION

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {"v": self.v, "original": self.original, "stage": self.stage, "reason": self.reason,
                               "error": self.error, "attempts": self.attempts, "failed_at": self.failed_at,
                               "original_length": self.original_length, "original_sha256": self.original_sha256,
                               "truncated": self.truncated}
        if self.ref is not None:
            doc["ref"] = self.ref
        if self.error_type is not None:
            doc["error_type"] = self.error_type
        return orjson.dumps(doc)

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "DeadLetter":
        r = FieldReader.of("vt.dead record", raw)
        return cls(original=r.mapping("original"), stage=r.text("stage"), reason=r.text("reason"),
                   error=r.text("error", None), attempts=r.integer("attempts", 1), failed_at=r.text("failed_at", ""),
                   original_length=r.integer("original_length", None), original_sha256=r.text("original_sha256", None),
                   truncated=r.boolean("truncated", False), ref=r.text("ref", None),
                   error_type=r.text("error_type", None), v=r.version)


class Encoded(Protocol):
    """Anything vtstream produces as a record: it encodes itself."""

    def to_bytes(self) -> bytes: ...


#: What a stage hands its outbox: bytes, a record that encodes itself, or an event dict (orjson).
Outgoing = Union[bytes, Encoded, dict[str, Any]]


def _allowance(r: FieldReader) -> int | None:
    allowance = r.integer("allowance", None)
    if allowance is not None and allowance < 0:
        raise r.fault("allowance", "must not be negative")
    return allowance


def wire_value(value: Outgoing) -> bytes:
    """The bytes to produce for ``value``: a record's own encoding; a dict (an output event) as orjson."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, dict):
        return orjson.dumps(value)
    return value.to_bytes()
