"""The verdict memory: the last verdict vtstream knew per indicator, and the sightings since.

Three shapes cross a table, a topic or a stage here:

- :class:`VerdictCheck`: one verdict VirusTotal gave at one check (class, positives,
  total, when); a ``verdict_change`` event carries two of them.
- :class:`VerdictMemory`: the verdict table's value per indicator key, written by
  the results stage (and its sightings counts by the sightings stage). It outlives
  the cache entry (``VTSTREAM_VERDICT_MEMORY``), so a lookup after the cache expired
  still knows what the indicator was. Compact: a few numbers per indicator::

    {"v": 1, "last": ["benign", 0, 70, 1767225600.0], "since": 1767225600.0,
     "seen": [3, 1767229200.5], "ref": "vt.responses/2/4711",
     "change": {"was": ["malicious", 9, 70, 1767139200.0], "was_since": 1766966400.0, "seen": [5, 1767140000.0]}}

  ``last`` is the last check and ``since`` when its verdict class began; ``seen`` the
  live sightings counted since ``last`` (count, first seen); ``ref`` the vt.responses
  record that made ``last``, and ``change`` what that record changed (absent when it
  changed nothing), so a record handled again after a crash publishes the same event.
- :class:`SightingTally`: vt.sightings, live sightings answered from the cache (intake's
  one hop, the lookup stage), counted per indicator and sent every few seconds to the
  worker that owns the indicator's verdict memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.contracts.reader import FieldReader, kind_of
from pipeline.contracts.version import RECORD_VERSION
from pipeline.errors import RecordError

#: The verdict classes, the ones STIX's malware-result vocabulary names (pipeline.rules.verdicts decides).
VERDICTS: tuple[str, ...] = ("malicious", "suspicious", "benign", "unknown")


@dataclass(frozen=True, slots=True)
class VerdictCheck:
    """One verdict at one check: its class, VirusTotal's counts, and when vtstream got it (epoch seconds)."""

    verdict: str
    positives: int | None
    total: int | None
    checked_at: float

    def packed(self) -> list[Any]:
        """The compact form kept in the verdict table."""
        return [self.verdict, self.positives, self.total, self.checked_at]

    @classmethod
    def unpacked(cls, value: Any, record: str, name: str) -> "VerdictCheck":
        ok = isinstance(value, list) and len(value) == 4 and value[0] in VERDICTS
        counts = value[1:3] if ok else ()
        if not ok or not all(c is None or (isinstance(c, int) and not isinstance(c, bool)) for c in counts) \
                or isinstance(value[3], bool) or not isinstance(value[3], (int, float)):
            raise RecordError(record, name, f"must be [verdict, positives, total, checked_at], not {kind_of(value)}")
        return cls(value[0], value[1], value[2], float(value[3]))


@dataclass(frozen=True, slots=True)
class Seen:
    """Live sightings of an indicator counted over some span: how many, and the first one's time."""

    count: int = 0
    first: float | None = None

    def plus(self, count: int, first: float | None) -> "Seen":
        """These sightings and ``count`` more, the first of which was at ``first``.

        >>> Seen(2, 10.0).plus(3, 5.0), Seen().plus(0, None)
        (Seen(count=5, first=5.0), Seen(count=0, first=None))
        """
        firsts = [t for t in (self.first, first) if t is not None]
        return Seen(self.count + count, min(firsts) if firsts else None)

    def packed(self) -> list[Any]:
        return [self.count, self.first]

    @classmethod
    def unpacked(cls, value: Any, record: str, name: str) -> "Seen":
        if value is None:
            return cls()
        if (not isinstance(value, list) or len(value) != 2 or isinstance(value[0], bool)
                or not isinstance(value[0], int) or value[0] < 0
                or not (value[1] is None or (isinstance(value[1], (int, float)) and not isinstance(value[1], bool)))):
            raise RecordError(record, name, f"must be [count, first seen], not {kind_of(value)}")
        return cls(value[0], None if value[1] is None else float(value[1]))


@dataclass(frozen=True, slots=True)
class Change:
    """What one answer changed: the verdict before it, when that verdict's class began, and the
    sightings counted since that earlier check (what the ``verdict_change`` event reports)."""

    was: VerdictCheck
    was_since: float
    seen: Seen


@dataclass(frozen=True, slots=True)
class VerdictMemory:
    """The verdict table's value for one indicator (see the module docstring)."""

    last: VerdictCheck
    since: float
    seen: Seen = Seen()
    ref: str | None = None
    change: Change | None = None
    v: int = RECORD_VERSION

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {"v": self.v, "last": self.last.packed(), "since": self.since}
        if self.seen.count:
            doc["seen"] = self.seen.packed()
        if self.ref is not None:
            doc["ref"] = self.ref
        if self.change is not None:
            doc["change"] = {"was": self.change.was.packed(), "was_since": self.change.was_since,
                             "seen": self.change.seen.packed()}
        return orjson.dumps(doc)

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "VerdictMemory":
        r = FieldReader.of("verdict memory", raw)
        change = None
        if r.doc.get("change") is not None:
            inner = r.nested("change")
            change = Change(VerdictCheck.unpacked(inner.anything("was"), r.record, "change.was"),
                            inner.number("was_since"), Seen.unpacked(inner.anything("seen"), r.record, "change.seen"))
        return cls(last=VerdictCheck.unpacked(r.anything("last"), r.record, "last"), since=r.number("since"),
                   seen=Seen.unpacked(r.anything("seen"), r.record, "seen"), ref=r.text("ref", None), change=change,
                   v=r.version)


@dataclass(frozen=True, slots=True)
class SightingTally:
    """vt.sightings (keyed by indicator): ``count`` live sightings answered from the cache, the first
    of them at ``first`` (epoch seconds, as intake read it)."""

    count: int
    first: float
    v: int = RECORD_VERSION

    def to_bytes(self) -> bytes:
        return orjson.dumps({"v": self.v, "count": self.count, "first": self.first})

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "SightingTally":
        r = FieldReader.of("sighting tally", raw)
        count = r.integer("count")
        if count < 1:
            raise r.fault("count", f"must be at least 1, not {count}")
        return cls(count=count, first=r.number("first"), v=r.version)
