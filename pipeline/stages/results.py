"""Stage 4, results: vt.responses -> cache update + mapped events on indicators.enriched.

vt.responses is co-partitioned with vt.lookups, so the cache entry this stage
completes is the one the lookup stage marked in flight, on the same worker.
For each answer it publishes the mapped attribute / relation / report events
once, then one ``summary`` per sighting that was waiting: the sighting that
caused the request and every duplicate that arrived while it was in flight.
An indicator VirusTotal does not know still yields summaries (found = false),
and an error yields "not checked" summaries, so silence never means clean.
A ``pending`` answer (a scan submitted, a quota spent) yields interim "not
checked" summaries and keeps the cache entry in flight, waiters and all,
until the final answer arrives.

A final answer is also held against the indicator's verdict memory (a second
co-partitioned table, :mod:`pipeline.rules.verdicts`): when its verdict class
differs from the last one known, a ``verdict_change`` event goes out, and the
STIX bundle versions or revokes the indicator's STIX ``indicator``.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from topics import ENRICHED

from pipeline.contracts.cache_entry import Waiter
from pipeline.contracts.card import SummaryCard
from pipeline.contracts.events import SummaryEvent, VerdictChange, parse_iso
from pipeline.contracts.indicator import Indicator
from pipeline.contracts.origin import Origin
from pipeline.contracts.verdict import VerdictCheck
from pipeline.contracts.wire import VtResponse
from pipeline.errors import RecordError
from pipeline.kafka.admin import make_producer, start_with_retry
from pipeline.kafka.direct import BATCH_BYTES, BatchOutbox
from pipeline.kafka.runtime import Context, Outbox, Received, decoding, limits, run_batches
from pipeline.mapping import AddOptions, Mapped
from pipeline.outputs.publish import publish_bundle
from pipeline.rules import cache, fitting
from pipeline.rules.verdicts import Remembered, decode_memory, remember, verdict_of

#: Waiters read, or answered, between two turns of the event loop.
TURN_EVERY_WAITERS = 256


def options(ctx: Context) -> AddOptions:
    s = ctx.settings
    return AddOptions(tags=s.outputs.add_tags, confidence=s.outputs.add_confidence, rating=s.outputs.add_rating,
                      relation_cap=s.outputs.relation_cap)


@decoding(VtResponse.from_bytes, stage="results", what="vt.responses record")
async def handle(ctx: Context, out: Outbox, record: Received, answer: VtResponse) -> None:
    """Process one vt.responses record."""
    key, now = record.key, record.now
    status, api, action, origin = answer.status, answer.api, answer.action, answer.origin
    # events show the URL as the SIEM sent it
    indicator = {"type": answer.indicator.type, "value": origin.seen_value(answer.indicator.value)}
    publish = "events" in ctx.settings.outputs.publish
    if status in ("error", "pending"):
        card = SummaryCard.not_checked(answer.reason or f"not checked: {status}", pending=status == "pending")
        if answer.body is not None:  # a submitted scan: the scan step's events now
            mapped = ctx.mappings.apply(api, action, answer.step or "scan", answer.body,
                                        indicator=indicator, options=options(ctx), found=True, replay=origin.replay)
            card = mapped.summary.pending_on(card)
            card = await _publish_events(ctx, out, key, mapped, card) if publish else card
    else:
        mapped = ctx.mappings.apply(api, action, answer.step or "report", answer.body, indicator=indicator,
                                    options=options(ctx), found=status == "found", replay=origin.replay)
        card = mapped.summary.checked_now(answer.notes)
        card = await _publish_events(ctx, out, key, mapped, card) if publish else card
    limit = ctx.settings.kafka.max_record_bytes
    card = fitting.fit_card(card, fitting.budget(limit, key) // 2, limit)  # the other half: the sighting
    # Read the entry only now and change it before the next await: the lookup agent runs
    # at every await above and may have added a waiter, which an older copy would drop.
    entry = cache.decode(ctx.cache.get(key))
    stored = cache.waiter_keys(key, entry)
    if status == "error":
        if entry is not None:
            del ctx.cache[key]
    elif status != "pending":
        ctx.cache[key] = cache.completed(card, status == "found", now, ctx.settings.cache).to_bytes()
    # From here on no sighting joins these waiters: their records can be read across awaits.
    waiting = [*cache.waiters(entry), *await _take_waiters(ctx, stored, keep=status == "pending")]
    final = status in ("found", "not_found")
    remembered = _remember(ctx, record, card, [origin, *waiting]) if final else None
    if remembered is not None and remembered.change is not None:
        change = remembered.change
        await out.send(ENRICHED, key, VerdictChange(
            Indicator(answer.indicator.type, indicator["value"]), action, api, previous=change.was,
            current=remembered.current, sightings=change.seen.count, first_seen=change.seen.first, origin=origin,
            sent_as=answer.indicator.value if answer.indicator.type == "url" else None))
    if final and "stix" in ctx.settings.outputs.publish:
        left_out = await publish_bundle(ctx.settings, out, key, answer.indicator.as_dict(), mapped, origin, waiting,
                                        now, remembered.standing if remembered is not None else None)
        card = card.with_fields(notes=(*card.notes, *left_out))
    fresh = card.with_fields(cached=False)
    await out.send(ENRICHED, key, SummaryEvent.of(fresh, indicator=answer.indicator, action=action, api=api,
                                                  origin=origin))
    joined = fresh.with_fields(coalesced=True)
    for count, sighting in enumerate(waiting, 1):
        await out.send(ENRICHED, key, SummaryEvent.of(joined, indicator=answer.indicator, action=action, api=api,
                                                      origin=sighting))
        if count % TURN_EVERY_WAITERS == 0:  # 10,000 waiters must not hold the loop for a second
            await asyncio.sleep(0)


async def _publish_events(ctx: Context, out: Outbox, key: bytes, mapped: Mapped, card: SummaryCard) -> SummaryCard:
    """Send the mapped events, each trimmed to fit a record; the card notes what was cut or left out."""
    limit = ctx.settings.kafka.max_record_bytes
    fitted = fitting.fit_events(mapped.events, fitting.budget(limit, key))
    for event in fitted.events:
        await out.send(ENRICHED, key, event)
    notes = fitted.notes(limit)
    return card.with_fields(notes=(*card.notes, *notes)) if notes else card


async def _take_waiters(ctx: Context, keys: list[bytes], *, keep: bool) -> list[Origin]:
    """The sightings stored under ``keys``, removed from the table unless ``keep`` (a pending answer:
    they wait on for the final one). A record that cannot be read is skipped."""
    found: list[Origin] = []
    for count, stored in enumerate(keys, 1):
        raw = ctx.cache.get(stored)
        if raw is not None:
            try:
                found.append(Waiter.from_bytes(raw).origin)
            except RecordError:
                pass
            if not keep:
                del ctx.cache[stored]
        if count % TURN_EVERY_WAITERS == 0:
            await asyncio.sleep(0)
    return found


def _remember(ctx: Context, record: Received, card: SummaryCard, sightings: list[Origin]) -> Remembered | None:
    """Hold a final answer against the verdict memory and store what it leaves (no await: the
    sightings agent writes the same table between awaits)."""
    settings = ctx.settings.outputs
    if not settings.verdict_changes:
        return None
    check = VerdictCheck(verdict_of(card, settings.stix_indicator_at), card.positives, card.total, record.now)
    live = [o.received_at if o.received_at is not None else record.now for o in sightings if o.replay is None]
    remembered = remember(decode_memory(ctx.verdicts.get(record.key)), check, record.ref, live,
                          settings.verdict_memory_s, _analysed_at(card))
    if remembered.memory is not None:
        ctx.verdicts[record.key] = remembered.memory.to_bytes()
    return remembered


def _analysed_at(card: SummaryCard) -> float | None:
    """VirusTotal's analysis date on the card, when it has a readable one."""
    try:
        return parse_iso(card.scan_date) if card.scan_date else None
    except ValueError:
        return None


def install(ctx: Context) -> None:
    """Register the results agent on ctx.app.

    The agent stays on faust: it owns the cache table with the lookup agent. Its ~38
    outputs per answer go out in record batches built per partition on a plain aiokafka
    producer (:class:`BatchOutbox`), not one faust ``send`` each; the batch is still acked
    only after all of them are acknowledged.
    """

    @ctx.app.agent(ctx.topics["responses"], name="results")
    async def results_agent(stream: Any) -> None:
        producer = make_producer(ctx.settings, linger_ms=1, max_batch_size=BATCH_BYTES)
        await start_with_retry(producer, ctx.settings)
        try:
            await run_batches(ctx, stream, "results", partial(handle, ctx),
                              BatchOutbox(producer, ctx.metrics.watcher("results", ctx.clock),
                                          **limits(ctx.settings, "results")))
        finally:
            await producer.stop()
