"""Scenario memory: a worker restarted cold on a full cache, its peak RSS and restore time.

What runs through the pipeline, and what is seeded (a million enrichments
through the embedded broker's in-memory log and the emulator would take
hours on a small box):

1. through the pipeline: ``--through`` new indicators (every type in turn)
   are enriched by a first worker, so the cache changelog holds real finished
   entries written by the results stage; that worker is then stopped.
2. seeded: ``--cached`` more finished entries are written straight to the
   cache changelog, each keyed as intake keys the indicator and placed on
   the partition faust's partitioner picks, each a copy of a real entry of
   the same type from step 1 with fresh ``fetched_at`` / ``expires_at``;
   and as many verdict memories to the verdict table's changelog (copies of
   those step 1 wrote, with a fresh check time), unless ``--no-verdicts``
   (the worker then runs with ``VTSTREAM_VERDICT_CHANGES=false``: the figure
   without the verdict memory, to compare).
3. cold restart: a second worker starts on an empty data folder, so its
   tables are restored from their changelogs. Probes are then sent: ``--probes``
   seeded indicators spread over the whole range (must come back as cache
   hits) and ``--probes`` new ones (must be enriched: VirusTotal calls).

The worker's RSS (/proc VmRSS, VmHWM at the end) is sampled every 0.5 s from
its start; restore time = worker start -> every probe answered.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import click
import orjson
from aiokafka import TopicPartition

from topics import RAW, VERDICT_TABLE, changelog_name

from pipeline.devtools.bench.harness import (APP_ID, PARTITIONS, TYPES, BenchReport, Rig, RssSampler, Tap, new_salt,
                                            progress, produce, raw_record, rig_options, wait_for_group)
from pipeline.kafka.admin import make_consumer, make_producer
from pipeline.kafka.direct import BatchOutbox
from pipeline.settings import Settings
from pipeline.stages.intake import Accepted, parse


#: A cache entry in its changelog JSON form (pipeline.contracts.cache_entry.CachedResult on the wire).
Entry = dict[str, Any]


def cache_key(i: int, salt: str, settings: Settings) -> bytes:
    """The cache key intake computes for ``raw_record(i, salt)``."""
    outcome = parse(raw_record(i, salt), "bench/0/0", settings)
    assert isinstance(outcome, Accepted), outcome
    return outcome.indicator.key.encode()


async def latest_entries(kafka: Settings, changelog: str) -> dict[bytes, Entry]:
    """Every entry of a table's changelog, latest per key (tombstones left out)."""
    consumer = make_consumer(kafka, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(changelog, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        latest: dict[bytes, bytes | None] = {}
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=200, max_records=5000)).values():
                for record in records:
                    if record.key is not None:
                        latest[record.key] = record.value
    finally:
        await consumer.stop()
    return {k: orjson.loads(v) for k, v in latest.items() if v}


def by_type(entries: dict[bytes, Entry], through: int, salt: str, settings: Settings) -> dict[str, list[Entry]]:
    """The entries of the indicators enriched through the pipeline, per indicator type (seed templates)."""
    templates: dict[str, list[Entry]] = {kind: [] for kind in TYPES}
    for i in range(through):
        entry = entries.get(cache_key(i, salt, settings))
        if entry is not None:
            templates[TYPES[i % len(TYPES)]].append(entry)
    missing = [kind for kind, found in templates.items() if not found]
    if missing:
        raise click.ClickException(f"no entry of type(s) {missing} in the changelog")
    return templates


def fresh_verdict(entry: Entry, now: float) -> Entry:
    """A verdict memory (its wire form) checked at ``now``."""
    last = entry.get("last") or ["unknown", None, None, now]
    return {**entry, "last": [*last[:3], now], "since": now}


async def seed(kafka: Settings, count: int, salt: str, templates: dict[str, list[Entry]],
               verdicts: dict[str, list[Entry]] | None, settings: Settings) -> float:
    """Write ``count`` finished cache entries (and verdict memories) to the changelogs; seconds taken."""
    cache_log, verdict_log = changelog_name(APP_ID), changelog_name(APP_ID, VERDICT_TABLE)
    producer = make_producer(kafka, linger_ms=5, max_batch_size=1024 * 1024)
    await producer.start()
    out = BatchOutbox(producer, watch=lambda topic, value: None)
    started = time.perf_counter()
    now = time.time()
    try:
        with progress(count, "seed changelog") as bar:
            for i in range(count):
                kind = TYPES[i % len(TYPES)]
                examples = templates[kind]
                entry = {**examples[i % len(examples)], "fetched_at": now,
                         "expires_at": now + settings.cache.ttl_s}
                key = cache_key(i, salt, settings)
                await out.send(cache_log, key, orjson.dumps(entry))
                if verdicts is not None:
                    await out.send(verdict_log, key, orjson.dumps(fresh_verdict(verdicts[kind][i % len(verdicts[kind])],
                                                                                now)))
                if i % 20_000 == 19_999:
                    await out.flush()
                    bar.update(20_000)
            await out.flush()
    finally:
        await producer.stop()
    return time.perf_counter() - started


@click.command("memory")
@click.option("--cached", default=1_000_000, show_default=True,
              help="Finished entries seeded into the cache changelog before the cold restart.")
@click.option("--through", default=600, show_default=True,
              help="New indicators enriched through the pipeline first (the seeded entries copy theirs).")
@click.option("--probes", default=300, show_default=True,
              help="After the restart: this many seeded indicators (hits) and as many new ones (misses).")
@click.option("--store", default="rocksdb://", show_default=True, help="Worker table store (VTSTREAM_STORE).")
@click.option("--verdicts/--no-verdicts", default=True, show_default=True,
              help="Seed a verdict memory per cached entry too (the default worker keeps one); --no-verdicts: "
                   "a worker with VTSTREAM_VERDICT_CHANGES=false, to compare.")
@click.option("--timeout", default=1800.0, show_default=True, help="Give up on a phase after this many seconds.")
@rig_options
def memory(cached: int, through: int, probes: int, store: str, verdicts: bool, timeout: float,
           bootstrap: str | None, vt_url: str | None, keep: bool) -> None:
    """Peak RSS of a worker restored cold from N cached entries (and N verdict memories); last line
    `peak_rss_mb: N`.

    \b
    Example:
      vtstream bench memory --cached 1000000          # seeds 1M entries, restarts a worker on them
      vtstream bench memory --cached 1000000 --no-verdicts   # the same without the verdict memory
      vtstream bench memory --cached 20000 --through 120 --probes 60
    """
    report = BenchReport(f"memory: a worker restored cold from {cached:,} seeded + {through:,} enriched cache "
                         f"entries{' and verdict memories' if verdicts else ' (no verdict memory)'}, {store}")
    through_salt, seed_salt, new_salt_ = new_salt(), new_salt(), new_salt()
    worker_env = {"VTSTREAM_STORE": store, "VTSTREAM_VERDICT_CHANGES": "true" if verdicts else "false"}
    with Rig(bootstrap, vt_url, rate_per_minute=None, keep=keep) as rig:
        settings = rig.settings()
        changelog = changelog_name(APP_ID)
        first = rig.start_worker(**worker_env)

        async def enrich_first() -> tuple[dict[str, list[Entry]], dict[str, list[Entry]] | None]:
            await wait_for_group(rig.kafka, 1)
            tap = await Tap(rig.kafka).start()
            try:
                await produce(rig.kafka, RAW, (raw_record(i, through_salt) for i in range(through)),
                              total=through, desc="through the pipeline")
                await tap.read(through, timeout, rig.check_workers, desc="summaries")
                if tap.summaries < through:
                    raise click.ClickException(f"{tap.summaries:,}/{through:,} summaries in {timeout:.0f}s")
            finally:
                await tap.stop()
            finished = {k: e for k, e in (await latest_entries(rig.kafka, changelog)).items()
                        if e.get("state") == "done"}
            templates = by_type(finished, through, through_salt, settings)
            report.add("entries enriched through the pipeline (finished, in the changelog)",
                       sum(len(found) for found in templates.values()))
            report.add("mean seeded entry size (bytes)", _mean_size(templates))
            if not verdicts:
                return templates, None
            memories = by_type(await latest_entries(rig.kafka, changelog_name(APP_ID, VERDICT_TABLE)), through,
                               through_salt, settings)
            report.add("mean seeded verdict memory size (bytes)", _mean_size(memories))
            return templates, memories

        templates, memories = asyncio.run(enrich_first())
        first.stop()
        report.add("entries seeded into the changelog", cached)
        report.add("verdict memories seeded into their changelog", cached if verdicts else 0)
        report.add("seeding took (s)", asyncio.run(seed(rig.kafka, cached, seed_salt, templates, memories, settings)))
        started = time.perf_counter()
        worker = rig.start_worker(**worker_env)
        rss = RssSampler(worker.pid)
        spread = max(1, cached // max(1, probes))
        hits = [raw_record(i, seed_salt, f"hit-{i}") for i in range(0, cached, spread)][:probes]

        def check_restored() -> None:  # the first worker was stopped on purpose
            if not worker.alive():
                raise click.ClickException(f"the restored worker exited ({worker.proc.returncode}):\n{worker.tail()}")

        async def restart() -> tuple[float, float, dict[str, int]]:
            await wait_for_group(rig.kafka, 1, timeout=timeout)
            joined = time.perf_counter() - started
            flags = {"cached": 0, "fresh": 0, "not checked": 0}

            def on_summary(value: bytes, _now: float, _timestamp_ms: int) -> None:
                summary = orjson.loads(value).get("summary") or {}
                flags["not checked" if not summary.get("checked") else
                      "cached" if summary.get("cached") else "fresh"] += 1

            tap = await Tap(rig.kafka, on_summary=on_summary).start()
            try:
                news = [raw_record(i, new_salt_, f"new-{i}") for i in range(probes)]
                await produce(rig.kafka, RAW, hits + news, total=len(hits) + probes, desc="probes")
                await tap.read(len(hits) + probes, timeout, check_restored, desc="probe summaries")
                if tap.summaries < len(hits) + probes:
                    raise click.ClickException(f"{tap.summaries}/{len(hits) + probes} probe summaries")
            finally:
                await tap.stop()
            return joined, time.perf_counter() - started, flags

        with rss:
            joined, answered, flags = asyncio.run(restart())
        stats = rig.stats()
        rss.sample()
    report.add("cold restart: worker start -> group stable for 2 s (s)", round(joined, 1))
    report.add("restore time: worker start -> every probe answered (s)", round(answered, 1))
    report.add("probes: seeded indicators sent / summaries from the cache", f"{len(hits)} / {flags['cached']}")
    report.add("probes: new indicators sent / enriched summaries (VirusTotal called)", f"{probes} / {flags['fresh']}")
    report.add("probes: not checked", flags["not checked"])
    report.add("emulator object lookups (through + new probes)", stats["object_requests"])
    report.add("RSS of the restored worker at the end (MB)", rss.last_kb // 1024)
    if flags["cached"] < 0.9 * len(hits) or flags["fresh"] < probes:
        raise click.ClickException(f"the restored worker answered {flags['cached']}/{len(hits)} hits from its "
                                   f"cache and enriched {flags['fresh']}/{probes} new indicators")
    report.emit("peak_rss_mb", str(rss.peak_kb // 1024))


def _mean_size(entries: dict[str, list[Entry]]) -> int:
    sizes = [len(orjson.dumps(e)) for found in entries.values() for e in found]
    return round(sum(sizes) / len(sizes))
