"""Scenario quota: the key's rate used fully, and never exceeded.

The emulator enforces ``--rate`` requests/minute strictly (a sliding 60 s
window over accepted requests; 429 above it), the workers are configured with
the same rate. More unique indicators than the window can serve are produced
at once, so the gateway always has work. The measured window opens when the
first call is accepted and lasts ``--duration`` seconds; quota_use = calls
accepted in it / calls the key allows in it (rate x duration / 60).
"""

from __future__ import annotations

import asyncio
import time

import click

from topics import RAW

from pipeline.devtools.bench.harness import Report, Rig, Tap, produce, progress, raw_record, rig_options, wait_for_group


@click.command("quota")
@click.option("--rate", default=240, show_default=True, help="Requests/minute: the emulator's limit and the workers'.")
@click.option("--unique", default=2_000, show_default=True, help="Unique indicators produced (the backlog).")
@click.option("--duration", default=180.0, show_default=True, help="Measured seconds.")
@click.option("--workers", default=2, show_default=True, help="Workers in the group.")
@rig_options
def quota(rate: int, unique: int, duration: float, workers: int, bootstrap: str | None, vt_url: str | None,
          keep: bool) -> None:
    """Quota use under a strict rate limit; last line `quota_use: X.XX`.

    \b
    Example:
      vtstream bench quota                            # 240/min, 2,000 indicators, 2 workers, 180 s
      vtstream bench quota --rate 1200 --duration 20 --unique 600
    """
    allowed = rate * duration / 60.0
    if unique < allowed:
        click.echo(f"note: {unique} indicators cannot keep {rate}/min busy for {duration:.0f}s", err=True)
    report = Report(f"quota: {rate}/min strict, {unique:,} unique indicators, {workers} workers, "
                    f"{duration:.0f}s measured")
    with Rig(bootstrap, vt_url, rate_per_minute=rate, keep=keep) as rig:
        for _ in range(workers):
            rig.start_worker(VTSTREAM_VT_RATE_PER_MINUTE=str(rate))

        async def run() -> tuple[int, dict[str, object]]:
            report.add("group formed after (s)", await wait_for_group(rig.kafka, workers))
            tap = await Tap(rig.kafka).start()
            try:
                return await measure(tap)
            finally:
                await tap.stop()

        async def measure(tap: Tap) -> tuple[int, dict[str, object]]:
            await produce(rig.kafka, RAW, (raw_record(i, rig.salt) for i in range(unique)),
                          total=unique, desc="input")
            deadline = time.perf_counter() + 120
            while (first := rig.stats())["accepted"] == 0:
                rig.check_workers()
                if time.perf_counter() > deadline:
                    raise click.ClickException("no VirusTotal call within 120 s of producing")
                await tap.read(unique, 0.1, quiet=True)
            opened = time.perf_counter()
            with progress(int(duration), "measuring", unit="s") as bar:
                while (elapsed := time.perf_counter() - opened) < duration:
                    await tap.read(unique, min(1.0, duration - elapsed), quiet=True)
                    bar.n = int(time.perf_counter() - opened)
                    bar.refresh()
                    rig.check_workers()
            last = rig.stats()
            report.add("summaries out by the end of the window", tap.summaries)
            return int(last["accepted"]) - int(first["accepted"]), last

        accepted, stats = asyncio.run(run())
    report.add("calls allowed in the window", round(allowed))
    report.add("calls accepted in the window", accepted)
    report.add("429s (rejected_quota, whole run)", stats["rejected_quota"])
    report.add("max accepted in any 60 s (limit)", f"{stats['max_accepted_in_any_60s']} ({rate})")
    report.add("object / relationship / submission / analysis calls (whole run)",
               " / ".join(str(stats[f"{k}_requests"]) for k in ("object", "relationship", "submission", "analysis")))
    report.emit("quota_use", f"{accepted / allowed:.2f}")
