"""Scenario quota: the key's rate used fully, and never exceeded.

The emulator enforces ``--rate`` requests/minute strictly (a sliding 60 s
window over accepted requests; 429 above it), the workers are configured with
the same rate. More unique indicators than the window can serve are produced
at once, so the gateway always has work. The measured window opens when the
first call is accepted (plus ``--warmup`` seconds) and lasts ``--duration``
seconds; quota_use = calls accepted in it / calls the key allows in it
(rate x duration / 60).

With ``--latency-ms`` every emulator answer comes that late (answers served
concurrently), as VirusTotal's do: a gateway that waits for each answer
before the next call cannot use a paid key's rate, one with calls in flight
can. Its defaults are then 3,000 indicators and the minute after the first 10 s.
"""

from __future__ import annotations

import asyncio
import time

import click

from topics import RAW

from pipeline.devtools.bench.harness import BenchReport, Rig, Tap, produce, progress, raw_record, rig_options, wait_for_group


@click.command("quota")
@click.option("--rate", default=240, show_default=True, help="Requests/minute: the emulator's limit and the workers'.")
@click.option("--unique", type=int, help="Unique indicators produced (the backlog). [default: 2000; "
              "3000 with --latency-ms]")
@click.option("--duration", type=float, help="Measured seconds. [default: 180; 60 with --latency-ms]")
@click.option("--latency-ms", default=0.0, show_default=True, help="Added by the emulator to every answer.")
@click.option("--warmup", type=float, help="Seconds after the first accepted call before the window opens. "
              "[default: 0; 10 with --latency-ms]")
@click.option("--workers", default=2, show_default=True, help="Workers in the group.")
@rig_options
def quota(rate: int, unique: int | None, duration: float | None, latency_ms: float, warmup: float | None,
          workers: int, bootstrap: str | None, vt_url: str | None, keep: bool) -> None:
    """Quota use under a strict rate limit; last line `quota_use: X.XX`.

    \b
    Example:
      vtstream bench quota                            # 240/min, 2,000 indicators, 2 workers, 180 s
      vtstream bench quota --rate 1200 --duration 20 --unique 600
      vtstream bench quota --latency-ms 300 --rate 1200   # 300 ms answers: calls must be in flight
    """
    slow = latency_ms > 0
    unique = unique if unique is not None else (3_000 if slow else 2_000)
    duration = duration if duration is not None else (60.0 if slow else 180.0)
    warmup = warmup if warmup is not None else (10.0 if slow else 0.0)
    allowed = rate * duration / 60.0
    if unique < allowed:
        click.echo(f"note: {unique} indicators cannot keep {rate}/min busy for {duration:.0f}s", err=True)
    report = BenchReport(f"quota: {rate}/min strict, {latency_ms:g} ms per answer, {unique:,} unique indicators, "
                    f"{workers} workers, {duration:.0f}s measured after {warmup:g}s")
    with Rig(bootstrap, vt_url, rate_per_minute=rate, keep=keep) as rig:
        rig.emulator("/_emulator/config", {"latency_ms": latency_ms})
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
            while rig.stats()["accepted"] == 0:
                rig.check_workers()
                if time.perf_counter() > deadline:
                    raise click.ClickException("no VirusTotal call within 120 s of producing")
                await tap.read(unique, 0.1, quiet=True)
            warm_until = time.perf_counter() + warmup
            while (left := warm_until - time.perf_counter()) > 0:
                await tap.read(unique, min(1.0, left), quiet=True)
                rig.check_workers()
            first = rig.stats()
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
    report.add("most requests answered at once", stats["max_in_flight"])
    report.add("object / relationship / submission / analysis calls (whole run)",
               " / ".join(str(stats[f"{k}_requests"]) for k in ("object", "relationship", "submission", "analysis")))
    report.emit("quota_use", f"{accepted / allowed:.2f}")
