"""Delayed retry: parked work waits on vt.retry.<delay> topics, not in memory.

Pending scans and retryable failures are *parked*: written to the tier whose
delay fits as a :class:`~pipeline.contracts.wire.ParkedRecord`, the request (with its
``attempt`` and ``analysis_id``) wrapped with ``not_before`` (epoch ms),
``parked_at`` and ``reason``. A tier has one
partition and one fixed delay, so append order is due order: its agent only
ever waits for the head record, and nothing behind the head can be due first.

The agent holds the head until ``min(not_before, parked_at + delay)``, sleeping
at most ``VTSTREAM_RETRY_SLICE`` at a time, and re-parks it instead of waiting
through a rebalance or a shutdown (faust waits for held records before it
hands partitions over or stops). A record whose ``not_before`` lies beyond its tier's delay (a quota
that resets at midnight) hops through the tier again. Due records go to
vt.polls, which the gateway serves after fresh lookups.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from functools import partial
from typing import Any

from topics import POLLS, retry_topic

from pipeline.contracts.wire import ParkedRecord, VtRequest
from pipeline.kafka.runtime import Context, Outbox, Received, decode_or_dead_letter, run_each
from pipeline.settings import parse_duration


def tier_delays(tiers: tuple[str, ...]) -> list[tuple[str, float]]:
    """(name, seconds) per tier, in increasing order."""
    return [(name, parse_duration(name)) for name in tiers]


def tier_for(wait_s: float, tiers: tuple[str, ...]) -> str:
    """The tier to park a wait of ``wait_s`` seconds on: the longest delay not above it.

    >>> tier_for(45, ("30s", "2m")), tier_for(5, ("30s", "2m")), tier_for(7200, ("30s", "1h"))
    ('30s', '30s', '1h')
    """
    chosen = tiers[0]
    for name, delay in tier_delays(tiers):
        if delay <= wait_s:
            chosen = name
    return chosen


def backoff(attempt: int, tiers: tuple[str, ...]) -> float:
    """Seconds to wait before attempt ``attempt`` (1-based): one tier further each time."""
    delays = tier_delays(tiers)
    return delays[min(max(attempt, 1), len(delays)) - 1][1]


def parked(request: VtRequest, *, wait_s: float, reason: str, now: float,
           tiers: tuple[str, ...]) -> tuple[str, ParkedRecord]:
    """(topic, record) that parks ``request`` for ``wait_s`` seconds."""
    record = ParkedRecord(request=request, not_before_ms=int((now + wait_s) * 1000), parked_at_ms=int(now * 1000),
                          reason=reason)
    return retry_topic(tier_for(wait_s, tiers)), record


async def hold(ctx: Context, tier: str, delay_s: float, out: Outbox, received: Received) -> None:
    """Wait for one head record to come due, then forward or re-park it."""
    key = received.key
    record = await decode_or_dead_letter(ctx, out, received, ParkedRecord.from_bytes,
                                         stage=f"retry.{tier}", what="parked record")
    if record is None:
        return
    due = record.due(delay_s)
    while (now := ctx.clock()) < due:
        if ctx.must_yield():  # hand the partition over now; the record waits on the tier again
            await out.send(retry_topic(tier), key, record)
            return
        await asyncio.sleep(min(due - now, ctx.settings.retry.slice_s))
    if now < record.not_before:  # the tier's delay is over, the record's own wait is not: park it again
        topic = retry_topic(tier_for(record.not_before - now, ctx.settings.retry.tiers))
        await out.send(topic, key, replace(record, parked_at_ms=int(now * 1000)))
        return
    await out.send(POLLS, key, record.request)


def install(ctx: Context) -> None:
    """One agent per tier topic."""
    for name, delay in tier_delays(ctx.settings.retry.tiers):
        _install_tier(ctx, name, delay)


def _install_tier(ctx: Context, name: str, delay: float) -> None:
    @ctx.app.agent(ctx.topics[f"retry.{name}"], name=f"retry_{name}")
    async def tier_agent(stream: Any) -> None:
        await run_each(ctx, stream, f"retry.{name}", partial(hold, ctx, name, delay))
