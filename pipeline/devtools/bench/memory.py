"""Scenario memory: a worker's peak RSS as unique indicators pile up in the cache.

One worker with the RocksDB store, emulator unlimited. ``--unique`` new
indicators are produced at once; every one costs a VirusTotal call and a
mapping that publishes dozens of events, so the run is bounded by the
gateway and results stages, not by Kafka. The worker's RSS (/proc VmRSS,
VmHWM at the end) is sampled every 0.5 s and reported at each checkpoint,
so the trend with the cache's size is visible at any scale.
"""

from __future__ import annotations

import asyncio
import time

import click

from topics import RAW

from pipeline.devtools.bench.harness import Report, Rig, RssSampler, Tap, produce, raw_record, rig_options, wait_for_group

CHECKPOINTS = (1_000, 10_000, 50_000, 100_000, 250_000, 500_000, 1_000_000)


@click.command("memory")
@click.option("--unique", default=1_000_000, show_default=True,
              help="Unique indicators through the cache (each costs one emulator call).")
@click.option("--store", default="rocksdb://", show_default=True, help="Worker table store (VTSTREAM_STORE).")
@click.option("--timeout", default=4 * 3600.0, show_default=True, help="Give up after this many seconds.")
@rig_options
def memory(unique: int, store: str, timeout: float, bootstrap: str | None, vt_url: str | None,
           keep: bool) -> None:
    """Peak RSS of a worker after N unique indicators; last line `peak_rss_mb: N`.

    \b
    Example:
      vtstream bench memory --unique 100000           # the full 1,000,000 takes hours (see bench-results.md)
    """
    report = Report(f"memory: {unique:,} unique indicators through one worker, {store}")
    marks = sorted({c for c in CHECKPOINTS if c < unique} | {unique})
    with Rig(bootstrap, vt_url, rate_per_minute=None, keep=keep) as rig:
        worker = rig.start_worker(VTSTREAM_STORE=store)
        rss = RssSampler(worker.pid)

        async def run() -> None:
            await wait_for_group(rig.kafka, 1)
            tap = await Tap(rig.kafka).start()
            try:
                with rss:
                    report.add("RSS of the idle worker (MB)", rss.sample() // 1024)
                    started = time.perf_counter()
                    await produce(rig.kafka, RAW, (raw_record(i, rig.salt) for i in range(unique)),
                                  total=unique, desc="input")
                    for mark in marks:
                        await tap.read(mark, timeout - (time.perf_counter() - started), rig.check_workers,
                                       desc=f"summaries to {mark:,}")
                        if tap.summaries < mark:
                            raise click.ClickException(f"{tap.summaries:,}/{unique:,} summaries in {timeout:.0f}s")
                        elapsed = time.perf_counter() - started
                        report.add(f"at {mark:>9,}: RSS / peak so far (MB), s, indicators/s",
                                   f"{rss.last_kb // 1024} / {rss.peak_kb // 1024}, {elapsed:.0f}, "
                                   f"{mark / elapsed:.0f}")
                report.add("output events per indicator", round(sum(tap.kinds.values()) / unique, 1))
            finally:
                await tap.stop()

        asyncio.run(run())
        stats = rig.stats()
        rss.sample()   # VmHWM once more, before the worker stops
    report.add("emulator object lookups", stats["object_requests"])
    report.emit("peak_rss_mb", str(rss.peak_kb // 1024))
