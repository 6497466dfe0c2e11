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
"""

from __future__ import annotations

from typing import Any

import orjson

from topics import DEAD, ENRICHED

from pipeline.rules import cache, privacy
from pipeline.events import dead_letter, replay_marked
from pipeline.stages.lookup import summary_event
from pipeline.mapping import AddOptions
from pipeline.kafka.runtime import Context, Outbox, run_batches
from pipeline.outputs.publish import publish_bundle


def options(ctx: Context) -> AddOptions:
    s = ctx.settings
    return AddOptions(tags=s.add_tags, confidence=s.add_confidence, rating=s.add_rating,
                      relation_cap=s.relation_cap)


async def handle(ctx: Context, out: Outbox, key: bytes, value: bytes, now: float) -> None:
    """Process one vt.responses record."""
    try:
        record = orjson.loads(value)
        status, api, action, indicator = record["status"], record["api"], record["action"], record["indicator"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        await out.send(DEAD, key, dead_letter(value, stage="results", reason="malformed vt.responses record",
                                              error=repr(exc), privacy=ctx.settings.url_privacy))
        return
    indicator = privacy.seen_indicator(indicator, record.get("origin"))  # events: the URL as the SIEM sent it
    if status in ("error", "pending"):
        summary: dict[str, Any] = {"checked": False, "found": None,
                                   "reason": record.get("reason") or f"not checked: {status}"}
        if status == "pending":
            summary["pending"] = True
        if record.get("body") is not None:  # a submitted scan: the scan step's events now
            mapped = ctx.mappings.apply(api, action, record.get("step") or "scan", record["body"],
                                        indicator=indicator, options=options(ctx), found=True)
            for event in mapped.events if "events" in ctx.settings.outputs else ():
                await out.send(ENRICHED, key, _marked(event, record))
            summary = {**mapped.summary, **summary}
    else:
        mapped = ctx.mappings.apply(api, action, record.get("step") or "report", record.get("body"),
                                    indicator=indicator, options=options(ctx), found=status == "found")
        for event in mapped.events if "events" in ctx.settings.outputs else ():
            await out.send(ENRICHED, key, _marked(event, record))
        summary = {**mapped.summary, "checked": True}
        if record.get("notes"):
            summary["notes"] = record["notes"]
    # Read the entry only now and change it before the next await: the lookup agent runs
    # at every await above and may have added a waiter, which an older copy would drop.
    entry = cache.decode(ctx.cache.get(key))
    if status == "error":
        if entry is not None:
            del ctx.cache[key]
    elif status != "pending":
        ctx.cache[key] = cache.encode(cache.completed(summary, status == "found", now, ctx.settings))
    waiting = list(cache.waiters(entry))
    if status not in ("error", "pending") and "stix" in ctx.settings.outputs:
        await publish_bundle(ctx.settings, out, key, record, mapped, [record.get("origin"), *waiting], now)
    await out.send(ENRICHED, key, summary_event(record, {**summary, "cached": False}, api,
                                                record.get("origin") or {}))
    for origin in waiting:
        await out.send(ENRICHED, key, summary_event(record, {**summary, "cached": False, "coalesced": True},
                                                    api, origin))


def _marked(event: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """A mapped event as caused by the request's sighting: marked when a replay run asked."""
    run = (record.get("origin") or {}).get("replay")
    return replay_marked(event, run) if run else event


def install(ctx: Context) -> None:
    """Register the results agent on ctx.app."""

    @ctx.app.agent(ctx.topics["responses"], name="results")
    async def results_agent(stream: Any) -> None:
        await run_batches(ctx, stream, "results", handle)
