"""Stage 2, lookup: vt.lookups -> cache hit summary, or vt.requests (vt.replay for a replay run).

Runs on the partition that owns the indicator's cache entry, so the check
"fresh result? already in flight?" is a local table read. A stream that repeats
one indicator thousands of times costs one VirusTotal call per TTL: the first
sighting goes to vt.requests, later ones while it is in flight wait for its
answer (their summaries come from the results stage), and later ones after it
get the cached summary.
"""

from __future__ import annotations

from typing import Any

import orjson

from topics import DEAD, ENRICHED, REPLAY, REQUESTS

from pipeline.rules import cache, privacy
from pipeline.events import dead_letter, make_event
from pipeline.kafka.runtime import Context, Outbox, run_batches


def summary_event(record: dict[str, Any], payload: dict[str, Any], api: str,
                  origin: dict[str, Any] | None = None) -> dict[str, Any]:
    """A summary event for one sighting (``origin``, default the record's own), with the
    indicator as that sighting's SIEM sent it and, for a URL, what was sent instead."""
    seen, shown, sent = privacy.for_summary(record["indicator"], origin if origin is not None else record.get("origin"))
    return make_event("summary", {**payload, **sent}, indicator=seen, action=record["action"], api=api,
                      origin=shown)


async def handle(ctx: Context, out: Outbox, key: bytes, value: bytes, now: float) -> None:
    """Process one vt.lookups record."""
    try:
        record = orjson.loads(value)
        origin = record["origin"]
        record["indicator"]["type"], record["action"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        await out.send(DEAD, key, dead_letter(value, stage="lookup", reason="malformed vt.lookups record",
                                              error=repr(exc), privacy=ctx.settings.url_privacy))
        return
    api = ctx.settings.vt_api_version
    verdict = cache.decide(cache.decode(ctx.cache.get(key)), origin, now, ctx.settings, record.get("max_age_s"))
    if verdict.action == "hit":
        await out.send(ENRICHED, key, summary_event(record, cache.cached_summary(verdict.entry), api))
        return
    ctx.cache[key] = cache.encode(verdict.entry)
    if verdict.action == "request":
        request = {"key": key.decode(), "indicator": record["indicator"], "action": record["action"],
                   "api": api, "origin": origin, "requested_at": now, "op": "lookup", "attempt": 0}
        if "file" in record:
            request["file"] = record["file"]
        await out.send(REPLAY if origin.get("replay") else REQUESTS, key, request)  # the replay lane
    elif verdict.action == "overflow":
        payload = {"checked": False, "found": None, "pending": True,
                   "reason": "lookup in flight; too many duplicates waiting to list this one"}
        await out.send(ENRICHED, key, summary_event(record, payload, api))


def install(ctx: Context) -> None:
    """Register the lookup agent on ctx.app."""

    @ctx.app.agent(ctx.topics["lookups"], name="lookup")
    async def lookup_agent(stream: Any) -> None:
        await run_batches(ctx, stream, "lookup", handle)
