"""What a replay run saw, kept so that every invocation of the run adds up to one report.

An invocation counts sightings per indicator in memory (:class:`Ledger`) and,
at each checkpoint, writes the rows the report will need to the compacted
topic ``vt.replay.sightings``: indicators still unanswered (their verdict may
arrive in a later invocation) and detected ones. An indicator answered clean
needs no row and leaves memory, so neither the run state nor the driver grows
with the number of indicators. Unique indicators are counted in the run
state's sketch (:class:`~pipeline.rules.runs.UniqueCount`).
"""

from __future__ import annotations

from typing import Iterator

import orjson

from topics import REPLAY_SIGHTINGS

from pipeline.contracts.indicator import Indicator
from pipeline.contracts.run_state import SightingRow
from pipeline.errors import RecordError
from pipeline.kafka.reading import whole_topic
from pipeline.rules.runs import RunTally, UniqueCount
from pipeline.settings import Settings


class Ledger:
    """One invocation's tally per indicator key, and which of them changed since the last checkpoint."""

    def __init__(self, run: str, invocation: int, unique: UniqueCount) -> None:
        self.run, self.invocation, self.unique = run, invocation, unique
        self.tallies: dict[str, RunTally] = {}
        self._dirty: set[str] = set()
        self._written: set[str] = set()  # rows this invocation wrote: their later sightings add to them

    def _entry(self, indicator: Indicator) -> RunTally:
        key = indicator.key
        entry = self.tallies.get(key)
        if entry is None:
            entry = self.tallies[key] = RunTally(indicator)
            self.unique.add(key)
        self._dirty.add(key)
        return entry

    def seen(self, indicator: Indicator, ts: float, source: str | None) -> RunTally:
        """One in-range sighting of ``indicator`` at ``ts`` (epoch seconds)."""
        entry = self._entry(indicator)
        entry.seen(ts, source)
        return entry

    def answered(self, indicator: Indicator, positives: int | None, total: int | None, at: float) -> None:
        """VirusTotal's verdict on ``indicator`` reached the run (a summary, or the cache)."""
        self._entry(indicator).answered(positives, total, at)

    def rows(self) -> Iterator[SightingRow]:
        """The rows to write at a checkpoint; indicators answered clean leave memory."""
        for key in self._dirty:
            entry = self.tallies[key]
            if entry.worth_keeping or key in self._written:  # a written row is kept up to date
                self._written.add(key)
                yield entry.row(self.run, self.invocation)
            else:
                del self.tallies[key]
        self._dirty.clear()


async def read_rows(settings: Settings, run: str) -> list[SightingRow]:
    """Every row of ``run`` on vt.replay.sightings (the last of each key; unreadable ones left out)."""
    prefix = orjson.dumps([run])[:-1] + b","
    latest: dict[bytes, bytes | None] = {}
    async for record in whole_topic(settings, REPLAY_SIGHTINGS):
        if record.key.startswith(prefix):
            latest[record.key] = record.value
    rows = []
    for value in latest.values():
        try:
            rows.append(SightingRow.from_bytes(value))
        except RecordError:
            continue
    return rows
