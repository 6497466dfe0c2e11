"""Stage: vt.sightings -> the verdict memory's count of live sightings since the last check.

A ``verdict_change`` event says how often vtstream saw the indicator since the
previous check. Most of those sightings never reach the results stage: intake
answers them from its copy of the cache in one hop, or the lookup stage from
the cache table. Both count them in memory (:class:`~pipeline.rules.verdicts.Tallies`,
one dictionary update per sighting) and :class:`Flusher` sends the counts every
:data:`FLUSH_EVERY_S` seconds (and when the worker stops) as one
:class:`~pipeline.contracts.verdict.SightingTally` per indicator on vt.sightings,
keyed by indicator. That topic is co-partitioned with the verdict table, so this
stage adds each tally to the memory on the worker that owns it.

The counts are statistics, not a ledger: a worker killed between two flushes
loses the few seconds of counts it held (never a summary, never an answer).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from mode import Service

from topics import SIGHTINGS

from pipeline.contracts.verdict import SightingTally
from pipeline.kafka.runtime import Context, Outbox, Received, decoding, run_batches
from pipeline.rules.verdicts import counted, decode_memory

log = logging.getLogger("vtstream.stages.sightings")

#: How often counted sightings are sent to the verdict memory's owner.
FLUSH_EVERY_S = 5.0


@decoding(SightingTally.from_bytes, stage="sightings", what="vt.sightings record")
async def handle(ctx: Context, out: Outbox, record: Received, tally: SightingTally) -> None:
    """Add one vt.sightings tally to the indicator's verdict memory (none remembered: nothing to add to)."""
    entry = decode_memory(ctx.verdicts.get(record.key))
    if entry is not None:
        ctx.verdicts[record.key] = counted(entry, tally).to_bytes()


class Flusher(Service):
    """Sends the worker's counted sightings to vt.sightings every few seconds and at stop."""

    def __init__(self, ctx: Context, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ctx = ctx

    @Service.task
    async def _flushing(self) -> None:
        while not self.should_stop:
            await self.sleep(FLUSH_EVERY_S)
            await self.flush()

    async def on_stop(self) -> None:
        await self.flush()

    async def flush(self) -> None:
        """Send what was counted; a send that fails loses those counts (logged), nothing else."""
        tallies, missed = self.ctx.sightings.take(), self.ctx.sightings.missed
        if missed:
            log.warning("sightings of %d indicators were not counted: more than %d indicators in %.0f s",
                        missed, self.ctx.sightings.max_keys, FLUSH_EVERY_S)
            self.ctx.sightings.missed = 0
        if not tallies:
            return
        out = Outbox.of(self.ctx, "sightings")
        try:
            for key, tally in tallies:
                await out.send(SIGHTINGS, key, tally)
            await out.flush()
        except Exception as exc:  # counts only: never stop the worker for them
            log.warning("could not send the sighting counts of %d indicators: %r", len(tallies), exc)


def install(ctx: Context) -> None:
    """Register the sightings agent and the flusher (nothing when verdict changes are off)."""
    if not ctx.settings.outputs.verdict_changes:
        return

    @ctx.app.agent(ctx.topics["sightings"], name="sightings")
    async def sightings_agent(stream: Any) -> None:
        await run_batches(ctx, stream, "sightings", partial(handle, ctx))

    @ctx.app.task
    async def start_flusher() -> None:
        await ctx.app.add_runtime_dependency(Flusher(ctx))
