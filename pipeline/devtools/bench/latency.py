"""Scenario latency: produce -> enriched summary time for cache hits under a steady load.

One worker, cache warmed with every unique indicator. A paced producer then
sends cache hits at ``--rate`` events/s for ``--duration`` seconds (each
record's ``id`` carries its send time, which its summary echoes in
``origin.id``) while the same process reads indicators.enriched; latency =
time the summary is read - time its input was handed to the producer. Both
ends share one process, clock and event loop, so the figure includes the
bench's own scheduling. The table also shows the time from the input's send to
the summary record's timestamp (set by the worker as it creates the record),
which leaves out the output's way to the reader.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import click
import orjson

from topics import RAW

from pipeline.kafka.admin import make_producer
from pipeline.settings import Settings
from pipeline.devtools.bench.harness import Report, Rig, Tap, produce, progress, raw_record, rig_options
from pipeline.devtools.bench.profiling import Profiler, shares

_MARK = "t:"


async def paced(kafka: Settings, rate: int, duration: float, make: "MakeRecord") -> tuple[int, float]:
    """Send ``make(i)`` records at ``rate``/s for ``duration`` s; (sent, seconds it took)."""
    producer = make_producer(kafka, linger_ms=1)
    await producer.start()
    total = int(rate * duration)
    sent = 0
    pending = []
    try:
        started = time.perf_counter()
        with progress(total, "paced input") as bar:
            while sent < total:
                due = min(total, int((time.perf_counter() - started) * rate) + 1)
                while sent < due:
                    pending.append(await producer.send(RAW, make(sent)))
                    sent += 1
                bar.update(due - bar.n)
                if len(pending) > 20_000:
                    await asyncio.gather(*pending)
                    pending = []
                await asyncio.sleep(0.002)
        took = time.perf_counter() - started
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent, took


class MakeRecord:
    """The i-th measured record: a cache hit whose id carries its send time."""

    def __init__(self, unique: int, salt: str) -> None:
        self.unique, self.salt = unique, salt

    def __call__(self, i: int) -> bytes:
        return raw_record(i % self.unique, self.salt, f"{_MARK}{time.time():.6f}")


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


@click.command("latency")
@click.option("--rate", default=10_000, show_default=True, help="Input events/s (cache hits).")
@click.option("--duration", default=20.0, show_default=True, help="Seconds of paced input.")
@click.option("--unique", default=1_000, show_default=True, help="Unique indicators, warmed first.")
@click.option("--store", default="memory://", show_default=True, help="Worker table store (VTSTREAM_STORE).")
@click.option("--drain", default=600.0, show_default=True,
              help="Seconds to wait, after the paced input ends, for the last summaries.")
@click.option("--profile", type=click.Path(dir_okay=False, path_type=Path),
              help="Sample the worker with py-spy during the paced phase; raw stacks to this file.")
@rig_options
def latency(rate: int, duration: float, unique: int, store: str, drain: float, profile: Path | None,
            bootstrap: str | None, vt_url: str | None, keep: bool) -> None:
    """p50/p99 produce -> summary latency of cache hits under load; last line `p99_ms: N`.

    \b
    Example:
      vtstream bench latency                          # 10,000 events/s for 20 s
      vtstream bench latency --rate 2000 --duration 5
    """
    report = Report(f"latency: cache hits at {rate:,}/s for {duration:.0f}s, 1 worker, {store}")
    latencies: list[float] = []
    in_pipeline: list[float] = []

    def on_summary(value: bytes, _now: float, timestamp_ms: int) -> None:
        origin_id = str((orjson.loads(value).get("origin") or {}).get("id", ""))
        if origin_id.startswith(_MARK):
            sent = float(origin_id[len(_MARK):])
            latencies.append(time.time() - sent)
            in_pipeline.append(timestamp_ms / 1000 - sent)

    with Rig(bootstrap, vt_url, rate_per_minute=None, keep=keep) as rig:
        worker = rig.start_worker(VTSTREAM_STORE=store)

        async def run() -> tuple[int, float, float]:
            tap = await Tap(rig.kafka).start()
            try:
                await produce(rig.kafka, RAW, (raw_record(i, rig.salt, f"warm-{i}") for i in range(unique)),
                              total=unique, desc="warm-up")
                await tap.read(unique, 600, rig.check_workers, desc="warm-up summaries")
                if tap.summaries < unique:
                    raise click.ClickException(f"warm-up: {tap.summaries}/{unique} summaries")
                tap.on_summary = on_summary
                started = time.perf_counter()
                with Profiler(worker.pid, profile):
                    sent, took = (await asyncio.gather(
                        paced(rig.kafka, rate, duration, MakeRecord(unique, rig.salt)),
                        tap.read(unique + int(rate * duration), duration + drain, rig.check_workers,
                                 desc="summaries")))[0]
                tail = (tap.last_summary or started) - (started + took)
                return sent, took, tail
            finally:
                await tap.stop()

        sent, took, tail = asyncio.run(run())
    values = sorted(latencies)
    report.add("input events sent", sent)
    report.add("achieved input rate (events/s)", round(sent / took))
    report.add("summaries received", len(values))
    report.add("last summary after the input ended (s)", round(tail, 1))
    for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
        report.add(f"{name} latency (ms)", round(percentile(values, q) * 1000, 1))
    report.add("max latency (ms)", round(values[-1] * 1000, 1) if values else "n/a")
    emitted = sorted(in_pipeline)
    for name, q in (("p50", 0.50), ("p99", 0.99)):
        report.add(f"{name} input sent -> summary record created by the worker (ms)",
                   round(percentile(emitted, q) * 1000, 1))
    if len(values) < sent:
        report.add("inputs without a summary (timed out)", sent - len(values))
    if profile is not None and profile.exists():
        for name, share in shares(profile):
            report.add(f"profile: {name}", f"{share:.1%}")
    p99 = percentile(values, 0.99) * 1000 if len(values) == sent else float("inf")
    report.emit("p99_ms", "inf" if p99 == float("inf") else f"{p99:.0f}")
