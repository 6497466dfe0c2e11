"""The verdict rule, and what an answer does to the verdict memory.

One rule names an answer's verdict (:func:`verdict_of`); the STIX output uses it
for ``malware-analysis.result`` and for whether a bundle carries an
``indicator``, and the results stage uses it to tell a verdict change. The
classes are STIX's ``malware-result-ov`` words:

- **malicious**: at least ``VTSTREAM_STIX_INDICATOR_AT`` engines flagged it as
  malicious (VirusTotal's ``positives``, v3 ``last_analysis_stats.malicious``);
- **suspicious**: flagged, but less: some engines said malicious (fewer than the
  threshold), or none did and some said suspicious (v3
  ``last_analysis_stats.suspicious``; v2 has no such count);
- **benign**: engines ran and none flagged it;
- **unknown**: VirusTotal does not know it, or no engine ran.

So a move across ``VTSTREAM_STIX_INDICATOR_AT`` is a change of class, as is any
other. :func:`remember` is the rule for one final answer against the indicator's
memory; :class:`Tallies` counts live sightings answered from the cache until
they are sent to the memory's owner. Pure: the callers do the table and topic I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

from pipeline.contracts.card import SummaryCard
from pipeline.contracts.verdict import Change, SightingTally, VerdictCheck, VerdictMemory
from pipeline.errors import RecordError


def verdict_of(card: SummaryCard, indicator_at: int) -> str:
    """The verdict class of an answer's card (see the module docstring).

    >>> [verdict_of(SummaryCard(found=True, positives=p, total=70), 5) for p in (7, 5, 2, 0)]
    ['malicious', 'malicious', 'suspicious', 'benign']
    >>> verdict_of(SummaryCard(found=True, positives=0, total=70, mapped={"suspicious": 1}), 5)
    'suspicious'
    >>> verdict_of(SummaryCard(found=False), 5), verdict_of(SummaryCard(found=True, positives=0, total=0), 5)
    ('unknown', 'unknown')
    """
    if not card.found:
        return "unknown"
    positives = card.positives or 0
    if positives >= indicator_at:
        return "malicious"
    if positives > 0 or card.suspicious:
        return "suspicious"
    return "benign" if card.total else "unknown"


@dataclass(frozen=True, slots=True)
class Standing:
    """What the memory says about the indicator's STIX ``indicator`` object.

    ``malicious_since``: when the current malicious period began (the indicator's ``created``
    and part of its id); ``withdrawn_since``: the start of a malicious period this answer ended,
    whose indicator is published again with ``revoked: true``. None: not known (no memory kept).
    """

    malicious_since: float | None = None
    withdrawn_since: float | None = None


@dataclass(frozen=True, slots=True)
class Remembered:
    """What one final answer does: the memory to store (None: leave it), the change to publish
    (None: no change) from ``change.was`` to ``current``, and the STIX standing of the indicator."""

    memory: VerdictMemory | None
    current: VerdictCheck
    change: Change | None
    standing: Standing


def remember(entry: VerdictMemory | None, check: VerdictCheck, ref: str, live: Iterable[float],
             memory_s: float, analysed_at: float | None = None) -> Remembered:
    """The rule for one final answer (``check``, from vt.responses record ``ref``) against the memory.

    ``live`` are the times of the live sightings this answer serves (the one that asked and
    those that waited); replayed sightings are not counted: they were seen before.
    A memory older than ``memory_s`` is forgotten. An answer handled again (a crash replayed
    its record) changes nothing and reports what it reported the first time; an answer older
    than the one the memory holds (same partition, lower offset) changes nothing at all.
    A new period starts at ``analysed_at`` (VirusTotal's analysis date) when the answer has one:
    two deployments that see the same analysis agree on the period, and so on its STIX
    indicator's id (see :func:`_start`).

    >>> first = remember(None, VerdictCheck("benign", 0, 70, 100.0), "r/0/1", [99.0], 86400).memory
    >>> later = remember(first, VerdictCheck("malicious", 9, 70, 200.0), "r/0/2", [150.0], 86400)
    >>> later.change.was.verdict, later.change.seen, later.standing
    ('benign', Seen(count=1, first=150.0), Standing(malicious_since=200.0, withdrawn_since=None))
    """
    if entry is not None and check.checked_at - entry.last.checked_at > memory_s:
        entry = None
    if entry is not None and entry.ref is not None and not _newer(ref, entry.ref):
        change = entry.change if entry.ref == ref else None
        return Remembered(None, entry.last, change, _standing(entry.last.verdict, entry.since, change))
    times = list(live)
    if entry is None:
        since = _start(check, analysed_at, None)
        return Remembered(VerdictMemory(check, since=since, ref=ref), check, None,
                          _standing(check.verdict, since, None))
    seen = entry.seen.plus(len(times), min(times) if times else None)
    if entry.last.verdict == check.verdict:
        memory = VerdictMemory(check, since=entry.since, ref=ref)
        return Remembered(memory, check, None, _standing(check.verdict, entry.since, None))
    change = Change(entry.last, entry.since, seen)
    since = _start(check, analysed_at, entry.since)
    memory = VerdictMemory(check, since=since, ref=ref, change=change)
    return Remembered(memory, check, change, _standing(check.verdict, since, change))


def _start(check: VerdictCheck, analysed_at: float | None, after: float | None) -> float:
    """When a period that ``check`` begins starts: the analysis date when there is one, not in the
    future, and later than the period before (``after``: a revoked indicator is never versioned
    again, so a new period must not reuse the old one's start); else the check's own time.

    >>> flagged = VerdictCheck("malicious", 9, 70, 500.0)
    >>> _start(flagged, 400.0, 300.0), _start(flagged, 300.0, 300.0), _start(flagged, None, 300.0)
    (400.0, 500.0, 500.0)
    """
    if analysed_at is None or analysed_at > check.checked_at or (after is not None and analysed_at <= after):
        return check.checked_at
    return analysed_at


def _standing(verdict: str, since: float, change: Change | None) -> Standing:
    ended = change is not None and change.was.verdict == "malicious" and verdict != "malicious"
    return Standing(since if verdict == "malicious" else None, change.was_since if ended and change else None)


def _newer(ref: str, than: str) -> bool:
    """Whether record ``ref`` (topic/partition/offset) comes after ``than`` on the same partition
    (records of other partitions, or refs that do not parse, count as newer: partitions are fixed).

    >>> _newer("vt.responses/1/10", "vt.responses/1/9"), _newer("vt.responses/1/9", "vt.responses/1/9")
    (True, False)
    """
    head, _, offset = ref.rpartition("/")
    other_head, _, other_offset = than.rpartition("/")
    if head != other_head or not offset.isdigit() or not other_offset.isdigit():
        return True
    return int(offset) > int(other_offset)


def decode_memory(raw: bytes | None) -> VerdictMemory | None:
    """Bytes from the verdict table -> memory; unreadable bytes count as none (no change is told)."""
    if not raw:
        return None
    try:
        return VerdictMemory.from_bytes(raw)
    except RecordError:
        return None


def counted(entry: VerdictMemory, tally: SightingTally) -> VerdictMemory:
    """The memory with a tally of live sightings added to those since its last check."""
    return replace(entry, seen=entry.seen.plus(tally.count, tally.first))


class Tallies:
    """Live sightings answered from the cache, counted per indicator key until they are sent.

    Bounded: past ``max_keys`` indicators, sightings of new ones are not counted (``missed``
    says how many) until the next :meth:`take`.

    >>> t = Tallies(max_keys=1)
    >>> t.saw("ip:1.1.1.1", 5.0); t.saw("ip:1.1.1.1", 3.0); t.saw("ip:2.2.2.2", 4.0)
    >>> t.take(), t.missed
    ([('ip:1.1.1.1', SightingTally(count=2, first=3.0, v=1))], 1)
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._counts: dict[str, list[float]] = {}
        self.missed = 0

    def saw(self, key: str, at: float) -> None:
        """One live sighting of ``key`` at ``at`` (epoch seconds)."""
        counts = self._counts.get(key)
        if counts is None:
            if len(self._counts) >= self.max_keys:
                self.missed += 1
                return
            self._counts[key] = [1, at]
            return
        counts[0] += 1
        if at < counts[1]:
            counts[1] = at

    def take(self) -> list[tuple[str, SightingTally]]:
        """Every tally counted so far, as records to send; the counts start again from zero."""
        taken, self._counts = self._counts, {}
        return [(key, SightingTally(int(count), first)) for key, (count, first) in taken.items()]
