"""Stage 2, lookup: vt.lookups -> cache hit summary, or vt.requests (vt.replay for a replay run).

Runs on the partition that owns the indicator's cache entry, so the check
"fresh result? already in flight?" is a local table read. A stream that repeats
one indicator thousands of times costs one VirusTotal call per TTL: the first
sighting goes to vt.requests, later ones while it is in flight wait for its
answer (their summaries come from the results stage), and later ones after it
get the cached summary.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any, Awaitable

from topics import ENRICHED, REPLAY, REQUESTS

from pipeline.contracts.cache_entry import CachedResult, InFlight, Waiter
from pipeline.contracts.card import SummaryCard
from pipeline.contracts.events import SummaryEvent
from pipeline.contracts.wire import LookupRequest, VtRequest
from pipeline.kafka.runtime import Context, Outbox, Received, decoding, run_batches
from pipeline.rules import cache

OVERFLOW_REASON = "lookup in flight; too many duplicates waiting to list this one"


@decoding(LookupRequest.from_bytes, stage="lookup", what="vt.lookups record")
async def handle(ctx: Context, out: Outbox, record: Received, sighting: LookupRequest) -> None:
    """Process one vt.lookups record."""
    key, now = record.key, record.now
    api = ctx.settings.vt.api_version
    decision = cache.decide(cache.decode(ctx.cache.get(key)), sighting.origin, now, ctx.settings.cache,
                            sighting.max_age_s, ctx.requested)
    if decision.action in ("hit", "overflow") and sighting.origin.replay is None:
        # answered here, not by a VirusTotal answer: counted for the next verdict_change
        ctx.sightings.saw(key.decode(), sighting.origin.received_at or now)
    if decision.action == "hit" and isinstance(decision.entry, CachedResult):
        await out.send(ENRICHED, key, SummaryEvent.of(decision.entry.hit_card(), indicator=sighting.indicator,
                                                      action=sighting.action, api=api, origin=sighting.origin))
        return
    stored = cache.new_waiter_key(key, decision)
    if stored is not None and decision.waiter is not None:  # the new waiter alone, not the list again
        ctx.cache[stored] = Waiter(decision.waiter[1]).to_bytes()
    ctx.cache[key] = decision.entry.to_bytes()
    if decision.action == "request":
        lane = REPLAY if sighting.origin.replay is not None else REQUESTS  # the replay lane
        acked = await out.send(lane, key, VtRequest(indicator=sighting.indicator, action=sighting.action, api=api,
                                                    origin=sighting.origin, file=sighting.file,
                                                    allowance=sighting.allowance))
        if acked is not None and isinstance(decision.entry, InFlight):  # an InFlight entry, for a request
            _remember_when_acked(ctx.requested, decision.entry.generation, acked)
    elif decision.action == "overflow":
        await out.send(ENRICHED, key, SummaryEvent.of(SummaryCard.not_checked(OVERFLOW_REASON, pending=True),
                                                      indicator=sighting.indicator, action=sighting.action,
                                                      api=api, origin=sighting.origin))


def _remember_when_acked(sent: cache.SentRequests, generation: str, acked: Awaitable[Any]) -> None:
    """Only a request the broker acknowledged is known to be on Kafka: it is remembered then, not
    when it is handed to the producer (a batch cut short by a rebalance may never be produced)."""
    def done(future: "asyncio.Future[Any]") -> None:
        if not future.cancelled() and future.exception() is None:
            sent.add(generation)

    asyncio.ensure_future(acked).add_done_callback(done)


def install(ctx: Context) -> None:
    """Register the lookup agent on ctx.app."""

    @ctx.app.agent(ctx.topics["lookups"], name="lookup")
    async def lookup_agent(stream: Any) -> None:
        await run_batches(ctx, stream, "lookup", partial(handle, ctx))
