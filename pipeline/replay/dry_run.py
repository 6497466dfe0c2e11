"""``vtstream replay --dry-run``: what a run over its (remaining) range would do and cost; nothing is called.

It reads the range as the run would, parses every record as intake does, and
prices each unique indicator the cache does not answer at its worst case
(:func:`~pipeline.rules.runs.worst_case`), the same figure a run reserves
against ``--budget`` before it feeds the indicator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from topics import changelog_name, replay_group

from pipeline.contracts.cache_entry import CachedResult
from pipeline.kafka.admin import start_with_retry
from pipeline.kafka.reading import drain, partitions, reader, whole_topic
from pipeline.replay.driver import ReplayOptions, in_range, resume_or_start, upload_bytes
from pipeline.rules import cache
from pipeline.rules.runs import worst_case
from pipeline.settings import Settings
from pipeline.stages.intake import Accepted, Rejected, parse


@dataclass
class DryRun:
    """What a run over the range would do, read without calling anything."""

    records: int = 0
    valid: int = 0
    unique: int = 0
    answered: int = 0
    to_request: int = 0
    requests: int = 0  #: at most: the worst case of every indicator to look up
    scans: int = 0  #: of those to look up, how many may be submitted for scanning (URLs, uploads)
    lookup: str = ""
    #: Where reading started, per partition (the time index's answer, or 0 after a scan's start).
    starts: dict[str, int] = field(default_factory=dict)


async def dry_run(settings: Settings, options: ReplayOptions, now: float) -> DryRun:
    """Read the run's (remaining) range and count what it would cost; no call, no write."""
    consumer = reader(settings, replay_group(settings.app_id, options.run))
    await start_with_retry(consumer, settings)
    counts = DryRun()
    valid: set[str] = set()
    costs: dict[str, int] = {}  # accepted indicator key -> its worst case
    scans: set[str] = set()  # accepted indicator keys that may be submitted for scanning
    try:
        tps = await partitions(consumer, options.topic)
        starts, counts.lookup = await resume_or_start(consumer, tps, options.since)
        counts.starts = {str(tp.partition): offset for tp, offset in starts.items()}
        async for tp, records in drain(consumer, starts):
            for record in records:
                if not in_range(record.timestamp, options.since, options.until):
                    continue
                counts.records += 1
                outcome = parse(record.value, f"{tp.topic}/{tp.partition}/{record.offset}", settings)
                if isinstance(outcome, Rejected):
                    continue
                counts.valid += 1
                key = outcome.indicator.key
                valid.add(key)
                if isinstance(outcome, Accepted):
                    upload = upload_bytes(outcome, settings)
                    cost = worst_case(outcome.action, outcome.indicator.type, settings.vt, settings.retry, upload)
                    costs[key] = max(cost, costs.get(key, 0))
                    if outcome.action == "submit_url" or upload is not None:
                        scans.add(key)
    finally:
        await consumer.stop()
    answered = await _answered(settings, set(costs), now, options.max_age_s)
    counts.unique = len(valid)
    counts.answered = len(answered)
    counts.to_request = len(costs) - counts.answered
    counts.requests = sum(cost for key, cost in costs.items() if key not in answered)
    counts.scans = len(scans - answered)
    return counts


async def _answered(settings: Settings, keys: set[str], now: float, max_age_s: float | None) -> set[str]:
    """Which of ``keys`` the cache answers now: the last entry of each on the cache changelog."""
    last: dict[str, bytes | None] = {}
    async for record in whole_topic(settings, changelog_name(settings.app_id)):
        key = record.key.decode(errors="replace")
        if key in keys:
            last[key] = record.value
    return {key for key, raw in last.items()
            if isinstance(entry := cache.decode(raw), CachedResult) and cache.answers(entry, now, max_age_s)}
