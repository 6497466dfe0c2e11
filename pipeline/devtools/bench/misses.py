"""Scenario misses: new indicators enriched per second, one worker, then two.

Every input is an indicator the cache has never seen, so each one costs a
VirusTotal call (the emulator, unlimited, every answer delayed by
``--latency-ms``), a mapping that publishes dozens of events, a cache update
and a summary: the whole miss path. Phase one runs one worker; phase two adds
a second worker to the same group and sends as many new indicators again.
In each phase all inputs are produced at once once the group is stable;
rate = inputs / (first produce -> last of their summaries read back).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import click

from topics import RAW

from pipeline.devtools.bench.harness import (BenchReport, Rig, Tap, new_salt, produce, raw_record, rig_options,
                                            wait_for_group)
from pipeline.devtools.bench.profiling import Profiler, shares


@click.command("misses")
@click.option("--unique", default=3_000, show_default=True, help="New indicators per phase (all types).")
@click.option("--latency-ms", default=50.0, show_default=True, help="Emulator delay before every answer.")
@click.option("--timeout", default=900.0, show_default=True, help="Give up on a phase after this many seconds.")
@click.option("--profile", type=click.Path(dir_okay=False, path_type=Path),
              help="Sample the first worker with py-spy during the one-worker phase; raw stacks to this file.")
@rig_options
def misses(unique: int, latency_ms: float, timeout: float, profile: Path | None, bootstrap: str | None,
           vt_url: str | None, keep: bool) -> None:
    """New indicators/s through one worker, then two; last line `misses_per_s: N` (one worker).

    \b
    Example:
      vtstream bench misses --latency-ms 50           # 3,000 new indicators per phase
      vtstream bench misses --latency-ms 0 --unique 600
    """
    report = BenchReport(f"misses: {unique:,} new indicators per phase, emulator unlimited, "
                    f"{latency_ms:g} ms per answer, v3")
    rates: dict[int, float] = {}
    with Rig(bootstrap, vt_url, rate_per_minute=None, keep=keep) as rig:
        rig.emulator("/_emulator/config", {"latency_ms": latency_ms})
        for workers in (1, 2):
            worker = rig.start_worker()
            salt = new_salt()  # indicators no earlier phase has cached

            async def phase(workers: int = workers, salt: str = salt, pid: int = worker.pid) -> tuple[float, Tap]:
                await wait_for_group(rig.kafka, workers)
                tap = await Tap(rig.kafka).start()
                try:
                    started = time.perf_counter()
                    with Profiler(pid, profile if workers == 1 else None):
                        await produce(rig.kafka, RAW, (raw_record(i, salt) for i in range(unique)),
                                      total=unique, desc=f"input ({workers} worker(s))")
                        await tap.read(unique, timeout, rig.check_workers, desc="summaries")
                    if tap.summaries < unique:
                        raise click.ClickException(f"{workers} worker(s): {tap.summaries:,}/{unique:,} "
                                                   f"summaries in {timeout:.0f}s")
                    assert tap.last_summary is not None
                    return tap.last_summary - started, tap
                finally:
                    await tap.stop()

            elapsed, tap = asyncio.run(phase())
            rates[workers] = unique / elapsed
            report.add(f"{workers} worker(s): seconds, first produce -> last summary", elapsed)
            report.add(f"{workers} worker(s): new indicators/s", round(rates[workers]))
            report.add(f"{workers} worker(s): events out per indicator", round(sum(tap.kinds.values()) / unique, 1))
        stats = rig.stats()
    report.add("two workers / one worker", f"{rates[2] / rates[1]:.2f}")
    report.add("emulator calls accepted, by kind", {kind: counts["accepted"] for kind, counts in stats["by_kind"].items()})
    report.add("emulator rejected (quota)", stats["rejected_quota"])
    report.add("emulator: most calls open at once", stats["max_in_flight"])
    if profile is not None and profile.exists():
        for name, share in shares(profile):
            report.add(f"profile (one worker): {name}", f"{share:.1%}")
    report.emit("misses_per_s", str(round(rates[1])))
