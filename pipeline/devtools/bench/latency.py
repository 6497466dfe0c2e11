"""Scenario latency: produce -> enriched summary time for cache hits under a steady load, against a baseline.

First the baseline: a raw aiokafka passthrough process
(:mod:`pipeline.devtools.bench.passthrough`: consume, parse, produce) gets the
same paced load, and its outputs are read back the same way, so both p99s
come from this box, this broker and this load. Then the pipeline: one
worker, cache warmed with every unique indicator. A paced producer then
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
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import orjson

from topics import RAW

from pipeline.devtools.bench import passthrough
from pipeline.devtools.bench.harness import (PARTITIONS, BenchReport, Rig, Tap, create_topic, progress, raw_record,
                                             rig_options, warm_cache)
from pipeline.devtools.bench.profiling import Profiler, shares
from pipeline.devtools.rig import WorkerProcess
from pipeline.kafka.admin import make_producer
from pipeline.settings import Settings

_MARK = "t:"


async def paced(kafka: Settings, rate: int, duration: float, make: "MakeRecord",
                topic: str = RAW) -> tuple[int, float]:
    """Send ``make(i)`` records to ``topic`` at ``rate``/s for ``duration`` s; (sent, seconds it took)."""
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
                    pending.append(await producer.send(topic, make(sent)))
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


@dataclass
class Latencies:
    """Per measured summary: input sent -> read back, and input sent -> output record's timestamp."""

    read_back: list[float] = field(default_factory=list)
    created: list[float] = field(default_factory=list)

    def on_summary(self, value: bytes, _now: float, timestamp_ms: int) -> None:
        origin_id = str((orjson.loads(value).get("origin") or {}).get("id", ""))
        if origin_id.startswith(_MARK):
            sent = float(origin_id[len(_MARK):])
            self.read_back.append(time.time() - sent)
            self.created.append(timestamp_ms / 1000 - sent)

    def p(self, q: float) -> float:
        """The q-quantile of read-back latency in ms (inf unless every input came back)."""
        return percentile(sorted(self.read_back), q) * 1000


class Passthrough:
    """The baseline process, started and stopped around its measured phase."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.devtools.bench.passthrough", str(PARTITIONS)],
                                     stdout=subprocess.PIPE, text=True, env=env)

    async def ready(self) -> None:
        assert self.proc.stdout is not None
        line = await asyncio.to_thread(self.proc.stdout.readline)
        if line.strip() != passthrough.READY:
            raise click.ClickException(f"the passthrough baseline did not start (exit {self.proc.poll()})")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def run_baseline(rig: Rig, rate: int, duration: float, unique: int, drain: float) -> tuple[Latencies, int]:
    """The passthrough under the same paced load; its latencies and the inputs sent."""
    for name in (passthrough.SOURCE, passthrough.SINK):
        await create_topic(rig.kafka, name)
    base = Latencies()
    process = Passthrough(rig.worker_env())
    try:
        await process.ready()
        tap = await Tap(rig.kafka, topic=passthrough.SINK, on_summary=base.on_summary).start()
        try:
            sent, _ = (await asyncio.gather(
                paced(rig.kafka, rate, duration, MakeRecord(unique, rig.salt), topic=passthrough.SOURCE),
                tap.read(int(rate * duration), duration + drain, desc="baseline outputs")))[0]
        finally:
            await tap.stop()
    finally:
        process.stop()
    return base, sent


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
    """p99 of cache hits through one worker / p99 of a raw aiokafka passthrough, same load; last line
    `p99_ratio: X.XX`.

    \b
    Example:
      vtstream bench latency                          # 10,000 events/s for 20 s, each
      vtstream bench latency --rate 2000 --duration 5
    """
    report = BenchReport(f"latency: cache hits at {rate:,}/s for {duration:.0f}s, 1 worker, {store}, "
                    f"against a raw aiokafka passthrough")
    with Rig(bootstrap, vt_url, rate_per_minute=None, keep=keep) as rig:
        worker = rig.start_worker(VTSTREAM_STORE=store)

        async def run() -> Paced:
            base, base_sent = await run_baseline(rig, rate, duration, unique, drain)
            tap = await Tap(rig.kafka).start()
            try:
                await warm_cache(rig, tap, unique, 600)
                return await paced_through(rig, worker, tap, rate, duration, unique, drain, profile,
                                           Paced(base=base, base_sent=base_sent))
            finally:
                await tap.stop()

        measured = asyncio.run(run())
    measured.add_rows(report)
    if profile is not None and profile.exists():
        for name, share in shares(profile):
            report.add(f"profile: {name}", f"{share:.1%}")
    report.emit("p99_ratio", measured.p99_ratio())


@dataclass
class Paced:
    """The paced load through the baseline and the pipeline: latencies and how the input went."""

    base: Latencies
    base_sent: int
    pipe: Latencies = field(default_factory=Latencies)
    sent: int = 0
    took: float = 0.0
    tail: float = 0.0

    def add_rows(self, report: BenchReport) -> None:
        pipe, base = self.pipe, self.base
        report.add("input events sent (pipeline / baseline)", f"{self.sent:,} / {self.base_sent:,}")
        report.add("achieved pipeline input rate (events/s)", round(self.sent / self.took))
        report.add("summaries received (pipeline / baseline)", f"{len(pipe.read_back):,} / {len(base.read_back):,}")
        report.add("pipeline: last summary after the input ended (s)", round(self.tail, 1))
        for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0)):
            report.add(f"{name} latency, pipeline / baseline (ms)", f"{pipe.p(q):.1f} / {base.p(q):.1f}")
        for name, q in (("p50", 0.50), ("p99", 0.99)):
            report.add(f"{name} input sent -> output record created, pipeline / baseline (ms)",
                       f"{percentile(sorted(pipe.created), q) * 1000:.1f} / "
                       f"{percentile(sorted(base.created), q) * 1000:.1f}")
        if len(pipe.read_back) < self.sent:
            report.add("pipeline inputs without a summary (timed out)", self.sent - len(pipe.read_back))

    def p99_ratio(self) -> str:
        complete = len(self.pipe.read_back) == self.sent and len(self.base.read_back) == self.base_sent
        return f"{self.pipe.p(0.99) / self.base.p(0.99):.2f}" if complete else "inf"


async def paced_through(rig: Rig, worker: WorkerProcess, tap: Tap, rate: int, duration: float, unique: int,
                        drain: float, profile: Path | None, measured: Paced) -> Paced:
    """Cache hits at ``rate``/s for ``duration`` s through the worker (cache warm), read back by ``tap``."""
    tap.on_summary = measured.pipe.on_summary
    want = tap.summaries + int(rate * duration)
    started = time.perf_counter()
    with Profiler(worker.pid, profile):
        measured.sent, measured.took = (await asyncio.gather(
            paced(rig.kafka, rate, duration, MakeRecord(unique, rig.salt)),
            tap.read(want, duration + drain, rig.check_workers, desc="summaries")))[0]
    measured.tail = (tap.last_summary or started) - (started + measured.took)
    tap.on_summary = None
    return measured
