"""A replay run's state and what it saw, on two compacted topics.

``vt.replay.runs`` holds one :class:`RunState` per run (key = the run's name):
``vtstream replay`` writes it as it reads, a resumed invocation starts from
it, and ``vtstream status`` and the run's report read it. Its size does not
grow with the run: unique indicators are counted in a HyperLogLog sketch, and
what the run saw of each indicator lives on ``vt.replay.sightings``, one
:class:`SightingRow` per run, indicator and invocation, which the report adds
up (:func:`pipeline.rules.runs.report_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import base64

import orjson

from pipeline.contracts.indicator import Indicator
from pipeline.contracts.reader import FieldReader
from pipeline.contracts.version import RECORD_VERSION

#: Run states. ``waiting``: every record of the range is fed, answers to some are still to come.
READING, INTERRUPTED, BUDGET_SPENT, WAITING, FINISHED = "reading", "interrupted", "budget spent", "waiting", "finished"
RUN_STATES = (READING, INTERRUPTED, BUDGET_SPENT, WAITING, FINISHED)
#: Most sources a sighting row lists (each at most 1,024 characters, as intake keeps them); the rest are dropped.
MAX_SOURCES = 16


@dataclass(frozen=True, slots=True)
class DetectedRow:
    """One detected indicator in a run's report: how often and when the range saw it, and its verdict."""

    indicator: Indicator
    sightings: int
    first_seen: str
    last_seen: str
    sources: tuple[str, ...] = ()
    positives: int | None = None
    total: int | None = None

    @property
    def key(self) -> str:
        return self.indicator.key

    def to_dict(self) -> dict[str, Any]:
        return {"indicator": self.indicator.as_dict(), "sightings": self.sightings, "first_seen": self.first_seen,
                "last_seen": self.last_seen, "sources": list(self.sources), "positives": self.positives,
                "total": self.total}

    @classmethod
    def read(cls, r: FieldReader) -> "DetectedRow":
        return cls(indicator=r.indicator(), sightings=r.integer("sightings", 0), first_seen=r.text("first_seen", ""),
                   last_seen=r.text("last_seen", ""), sources=r.texts("sources"),
                   positives=r.integer("positives", None), total=r.integer("total", None))


@dataclass(frozen=True, slots=True)
class SightingRow:
    """vt.replay.sightings: what one invocation of a run saw of one indicator, and its verdict once known.

    Written for indicators still unanswered or detected (``positives`` >= 1); an
    invocation that learns the verdict of an indicator an earlier one fed writes
    a row with no sightings and the verdict. ``answered_at`` orders verdicts: the
    newest wins.
    """

    run: str
    invocation: int
    indicator: Indicator
    sightings: int = 0
    first_seen: float | None = None
    last_seen: float | None = None
    sources: tuple[str, ...] = ()
    positives: int | None = None
    total: int | None = None
    answered_at: float | None = None
    v: int = RECORD_VERSION

    @property
    def key(self) -> bytes:
        """The compaction key: one row per run, indicator and invocation."""
        return orjson.dumps([self.run, self.indicator.key, self.invocation])

    def to_bytes(self) -> bytes:
        return orjson.dumps({"v": self.v, "run": self.run, "invocation": self.invocation,
                             "indicator": self.indicator.as_dict(), "sightings": self.sightings,
                             "first_seen": self.first_seen, "last_seen": self.last_seen,
                             "sources": list(self.sources[:MAX_SOURCES]), "positives": self.positives,
                             "total": self.total, "answered_at": self.answered_at})

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "SightingRow":
        r = FieldReader.of("vt.replay.sightings record", raw)
        return cls(run=r.text("run"), invocation=r.integer("invocation"), indicator=r.indicator(),
                   sightings=r.integer("sightings", 0), first_seen=r.number("first_seen", None),
                   last_seen=r.number("last_seen", None), sources=r.texts("sources")[:MAX_SOURCES],
                   positives=r.integer("positives", None), total=r.integer("total", None),
                   answered_at=r.number("answered_at", None), v=r.version)


@dataclass(frozen=True, slots=True)
class RunState:
    """One run as stored on vt.replay.runs and shown by ``vtstream status``.

    ``lookup`` says how the start was found (``offsets_for_times``, ``scan`` or
    ``resumed``); ``position`` maps each partition to the next offset to read.
    The counts add up over every invocation of the run; ``unique`` is the
    estimate of ``unique_sketch`` (a HyperLogLog of the indicator keys: exact for
    small runs, within about 1 % for millions). ``answers_from`` says where the
    next invocation reads answers on (``topic/partition`` -> offset) and
    ``unanswered`` how many fed records still wait for theirs, so answers that
    arrive between invocations reach the report. ``detected`` is only read: rows
    a version before ``vt.replay.sightings`` kept here.
    """

    run: str
    topic: str
    since: float
    until: float
    state: str = READING
    lookup: str = ""
    position: Mapping[str, int] = field(default_factory=dict)
    records: int = 0
    unique: int = 0
    cache_hits: int = 0
    vt_requests: int = 0
    skipped: int = 0
    dead: int = 0
    detected: tuple[DetectedRow, ...] = ()
    updated_at: float = 0.0
    unique_sketch: bytes = b""
    invocations: int = 0
    answers_from: Mapping[str, int] = field(default_factory=dict)
    unanswered: int = 0
    v: int = RECORD_VERSION

    def to_bytes(self) -> bytes:
        doc = {"v": self.v, "run": self.run, "topic": self.topic, "since": self.since, "until": self.until,
               "state": self.state, "lookup": self.lookup, "position": dict(self.position), "records": self.records,
               "unique": self.unique, "cache_hits": self.cache_hits, "vt_requests": self.vt_requests,
               "skipped": self.skipped, "dead": self.dead, "updated_at": self.updated_at,
               "unique_sketch": base64.b64encode(self.unique_sketch).decode(), "invocations": self.invocations,
               "answers_from": dict(self.answers_from), "unanswered": self.unanswered}
        if self.detected:
            doc["detected"] = [row.to_dict() for row in self.detected]
        return orjson.dumps(doc)

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "RunState":
        r = FieldReader.of("vt.replay.runs record", raw)
        position, answers_from = _offsets(r, "position"), _offsets(r, "answers_from")
        r.mappings("detected")  # a list of objects, or the fault named
        rows = tuple(DetectedRow.read(FieldReader(r.record, doc, f"detected[{i}]."))
                     for i, doc in enumerate(r.doc.get("detected") or ()))
        try:
            sketch = base64.b64decode(r.text("unique_sketch", ""), validate=True)
        except ValueError:
            raise r.fault("unique_sketch", "must be base64") from None
        return cls(run=r.text("run"), topic=r.text("topic"), since=r.number("since"), until=r.number("until"),
                   state=r.choice("state", RUN_STATES, READING), lookup=r.text("lookup", ""), position=position,
                   records=r.integer("records", 0), unique=r.integer("unique", 0),
                   cache_hits=r.integer("cache_hits", 0), vt_requests=r.integer("vt_requests", 0),
                   skipped=r.integer("skipped", 0), dead=r.integer("dead", 0), detected=rows,
                   updated_at=r.number("updated_at", 0.0), unique_sketch=sketch,
                   invocations=r.integer("invocations", 0), answers_from=answers_from,
                   unanswered=r.integer("unanswered", 0), v=r.version)


def _offsets(r: FieldReader, name: str) -> dict[str, int]:
    offsets: dict[str, int] = r.mapping(name, {})
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in offsets.values()):
        raise r.fault(name, "must map partitions to offsets")
    return offsets
