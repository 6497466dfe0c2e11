"""Scenario cache-hits: repeated indicators at Kafka speed, against a raw aiokafka loop.

What is measured, in one run on one broker:

- baseline: a plain aiokafka consumer reads the same records from a scratch
  topic, orjson-parses each, produces one small summary-shaped JSON record per
  input to another topic (acks=all; :mod:`pipeline.devtools.bench.passthrough`) and awaits the acks of each fetched batch before
  fetching the next (the pipeline's "forward first, then ack"). Rate = records
  / (first fetch -> last ack).
- pipeline: one worker, cache warmed with every unique indicator. The worker
  is paused (SIGSTOP) while the measured records are produced to
  indicators.raw, so they wait as a backlog, then resumed (SIGCONT). Rate =
  records / (resume -> the last of their summaries read from
  indicators.enriched). Intake answers each from its copy of the cache in one
  hop: one consume and one produce per event, as in the baseline, with the
  decoding, the privacy gate and a full summary event in between.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import click
from aiokafka import TopicPartition

from topics import RAW

from pipeline.devtools.bench.harness import (PARTITIONS, BenchReport, Rig, Tap, create_topic, produce, progress,
                                             raw_record, rig_options, warm_cache)
from pipeline.devtools.bench.passthrough import clients, forward_batch
from pipeline.devtools.bench.profiling import Profiler, shares
from pipeline.devtools.rig import WorkerProcess
from pipeline.settings import Settings

BASE_IN, BASE_OUT = "bench.baseline.in", "bench.baseline.out"


@dataclass(frozen=True)
class Pass:
    """One pass over a backlog: events/s, and the CPU its consumer spent per event (us; None where
    it cannot be read). The rate moves with the machine's neighbours; the CPU per event hardly does."""

    rate: float
    cpu_us: float | None

    def cpu(self) -> str:
        return "-" if self.cpu_us is None else f"{self.cpu_us:.1f}"


async def raw_baseline(kafka: Settings, records: list[bytes],
                       positions: dict[TopicPartition, int] | None = None) -> Pass:
    """The raw aiokafka loop over ``records``, produced to a scratch topic first; events/s.

    Given ``positions`` (where the last round stopped: updated here), a round reads on from them
    on the same topic, as the worker reads on in one growing indicators.raw; without, from the start.
    """
    for name in (BASE_IN, BASE_OUT):
        await create_topic(kafka, name)
    await produce(kafka, BASE_IN, records, total=len(records), desc="baseline input")
    return await baseline(kafka, len(records), positions)


async def baseline(kafka: Settings, n: int, positions: dict[TopicPartition, int] | None = None) -> Pass:
    """The raw aiokafka consume -> orjson -> produce loop over ``n`` records (from ``positions``); its
    CPU: this process's (the tap, idle meanwhile, included)."""
    # A backlog: no fetch waits to shorten; 1 MB per partition is aiokafka's default, as measured.
    consumer, producer = clients(kafka, fetch_max_wait_ms=500, max_partition_fetch_bytes=1024 * 1024)
    await consumer.start()
    await producer.start()
    try:
        tps = [TopicPartition(BASE_IN, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        for tp, offset in (positions or {}).items():
            consumer.seek(tp, offset)
        done = 0
        started, cpu = time.perf_counter(), time.process_time()
        with progress(n, "baseline") as bar:
            while done < n:
                forwarded = await forward_batch(consumer, producer, BASE_OUT)
                done += forwarded
                bar.update(forwarded)
        measured = Pass(n / (time.perf_counter() - started), (time.process_time() - cpu) / n * 1e6)
        if positions is not None:
            positions.update({tp: await consumer.position(tp) for tp in tps})
        return measured
    finally:
        await producer.stop()
        await consumer.stop()


async def backlog_through(rig: Rig, worker: WorkerProcess, tap: Tap, records: list[bytes], timeout: float,
                          profile: Path | None = None) -> tuple[float, Pass]:
    """Live cache hits at Kafka speed: ``records`` produced to indicators.raw while the worker is paused
    (SIGSTOP), then the worker resumed; (seconds the input took, the pass from resume to the last summary)."""
    want = tap.summaries + len(records)
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        paused = await produce(rig.kafka, RAW, records, total=len(records), desc="pipeline input")
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    resumed, cpu = time.perf_counter(), worker.cpu_seconds()
    with Profiler(worker.pid, profile):
        await tap.read(want, timeout, rig.check_workers, desc="pipeline")
    used = worker.cpu_seconds()
    if tap.summaries < want:
        raise click.ClickException(f"{tap.summaries - want + len(records)}/{len(records)} summaries in {timeout:.0f}s")
    assert tap.last_summary is not None
    cpu_us = (used - cpu) / len(records) * 1e6 if used is not None and cpu is not None else None
    return paused, Pass(len(records) / (tap.last_summary - resumed), cpu_us)


@click.command("cache-hits")
@click.option("--events", default=200_000, show_default=True, help="Measured (repeated) events.")
@click.option("--unique", default=1_000, show_default=True, help="Unique indicators (all types), warmed first.")
@click.option("--store", default="memory://", show_default=True, help="Worker table store (VTSTREAM_STORE).")
@click.option("--profile", type=click.Path(dir_okay=False, path_type=Path),
              help="Sample the worker with py-spy during the measured phase; raw stacks to this file.")
@click.option("--timeout", default=600.0, show_default=True, help="Give up after this many seconds.")
@rig_options
def cache_hits(events: int, unique: int, store: str, profile: Path | None, timeout: float,
               bootstrap: str | None, vt_url: str | None, keep: bool) -> None:
    """Cache hits through one worker vs a raw aiokafka loop; last line `ratio: X.XX`.

    \b
    Example:
      vtstream bench cache-hits                       # 200,000 events over 1,000 indicators
      vtstream bench cache-hits --events 20000 --profile /tmp/hits.txt
    """
    report = BenchReport(f"cache-hits: {events:,} events over {unique:,} unique indicators, 1 worker, {store}")
    with Rig(bootstrap, vt_url, rate_per_minute=None, keep=keep) as rig:
        # The worker must stay in its group while paused for the pre-produce (~50,000 records/s).
        session = 6 + events // 20_000
        worker = rig.start_worker(VTSTREAM_STORE=store, VTSTREAM_KAFKA_SESSION_TIMEOUT=str(session))

        async def run() -> tuple[Pass, Pass]:
            tap = await Tap(rig.kafka).start()
            try:
                await warm_cache(rig, tap, unique, timeout)
                records = [raw_record(i % unique, rig.salt, str(i)) for i in range(events)]
                base = await raw_baseline(rig.kafka, records)
                hits = 0

                def on_summary(value: bytes, _now: float, _timestamp_ms: int) -> None:
                    nonlocal hits
                    hits += b'"cached":true' in value

                tap.on_summary = on_summary
                before = dict(tap.kinds)
                paused, pipe = await backlog_through(rig, worker, tap, records, timeout, profile)
                report.add("pipeline input produced while paused (s)", paused)
                report.add("summaries that were cache hits", hits)
                others = {k: v - before.get(k, 0) for k, v in tap.kinds.items() if k != "summary"}
                report.add("events of other kinds during measurement", sum(others.values()))
                return base, pipe
            finally:
                await tap.stop()

        base, pipe = asyncio.run(run())
    report.add("baseline events/s (raw aiokafka consume->orjson->produce)", round(base.rate))
    report.add("pipeline events/s (resume -> last summary)", round(pipe.rate))
    report.add("CPU us per event, baseline process / worker", f"{base.cpu()} / {pipe.cpu()}")
    if profile is not None and profile.exists():
        for name, share in shares(profile):
            report.add(f"profile: {name}", f"{share:.1%}")
    report.emit("ratio", f"{pipe.rate / base.rate:.2f}")
