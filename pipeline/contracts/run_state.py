"""A replay run's state: one record per run on the compacted ``vt.replay.runs`` topic.

``vtstream replay`` writes it as it reads (key = the run's name); a resumed
invocation starts from it, and ``vtstream status`` and the run's report read
it. All three use this class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import orjson

from pipeline.contracts.indicator import Indicator
from pipeline.contracts.reader import FieldReader
from pipeline.contracts.version import RECORD_VERSION
from pipeline.errors import RecordError

#: Run states.
READING, INTERRUPTED, BUDGET_SPENT, FINISHED = "reading", "interrupted", "budget spent", "finished"
RUN_STATES = (READING, INTERRUPTED, BUDGET_SPENT, FINISHED)


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
class RunState:
    """One run as stored on vt.replay.runs and shown by ``vtstream status``.

    ``lookup`` says how the start was found (``offsets_for_times``, ``scan`` or
    ``resumed``); ``position`` maps each partition to the next offset to read.
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
    v: int = RECORD_VERSION

    def to_bytes(self) -> bytes:
        return orjson.dumps({"v": self.v, "run": self.run, "topic": self.topic, "since": self.since,
                             "until": self.until, "state": self.state, "lookup": self.lookup,
                             "position": dict(self.position), "records": self.records, "unique": self.unique,
                             "cache_hits": self.cache_hits, "vt_requests": self.vt_requests,
                             "skipped": self.skipped, "dead": self.dead,
                             "detected": [row.to_dict() for row in self.detected], "updated_at": self.updated_at})

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "RunState":
        r = FieldReader.of("vt.replay.runs record", raw)
        position = r.mapping("position", {})
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in position.values()):
            raise RecordError(r.record, "position", "must map partitions to offsets")
        r.mappings("detected")  # a list of objects, or the fault named
        rows = tuple(DetectedRow.read(FieldReader(r.record, doc, f"detected[{i}]."))
                     for i, doc in enumerate(r.doc.get("detected") or ()))
        return cls(run=r.text("run"), topic=r.text("topic"), since=r.number("since"), until=r.number("until"),
                   state=r.choice("state", RUN_STATES, READING), lookup=r.text("lookup", ""), position=position,
                   records=r.integer("records", 0), unique=r.integer("unique", 0),
                   cache_hits=r.integer("cache_hits", 0), vt_requests=r.integer("vt_requests", 0),
                   skipped=r.integer("skipped", 0), dead=r.integer("dead", 0), detected=rows,
                   updated_at=r.number("updated_at", 0.0), v=r.version)
