"""Scenario replay: cached history replayed against the live cache-hit path, in the same run.

One worker, its cache warmed with ``--unique`` indicators. Then, on the same
broker and worker:

- live: ``--events`` sightings of those indicators produced to
  indicators.raw while the worker is paused, then the worker resumed
  (:func:`~pipeline.devtools.bench.cache_hits.backlog_through`); rate = events
  / (resume -> last summary).
- replay: the same sightings, archived on a topic of their own, replayed by
  ``vtstream replay`` (its own process, as an operator runs it); rate =
  records / (the driver starts reading -> the last replayed summary). Every
  record is a cache hit, answered by the driver in one hop; VirusTotal is not
  called.
- mixed: as replay, with ``--new`` of the indicators new (never looked up),
  their sightings spread through the archive: misses go through the lookup
  stage and the gateway's replay lane at the key's pace (``--rate`` calls a
  minute); the table shows the cached records' rate beside them.

Last line: ``replay_ratio`` = replay records/s over live cache-hit events/s.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import click

from pipeline.contracts.events import iso_utc
from pipeline.devtools.bench.cache_hits import backlog_through
from pipeline.devtools.bench.harness import (PARTITIONS, BenchReport, Rig, Tap, create_topic, new_salt, produce,
                                             raw_record, rig_options, warm_cache)
from pipeline.devtools.bench.profiling import Profiler, shares

ARCHIVE, MIXED = "bench.replay.archive", "bench.replay.mixed"
_CACHED = b'"cached":true'


class Replay:
    """``vtstream replay`` over ``topic`` in a child process, with the workers' settings."""

    def __init__(self, rig: Rig, topic: str, run: str, since: float, until: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "replay", "--topic", topic, "--run", run, "--from", iso_utc(since),
             "--to", iso_utc(until)], env={**rig.worker_env(), "VTSTREAM_LOG_LEVEL": "WARNING"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(self, timeout: float) -> str:
        """Wait for the command to end; its report (stdout). A failure fails the scenario."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        if self.proc.returncode != 0:
            raise click.ClickException(f"vtstream replay exited {self.proc.returncode}:\n{err[-3000:]}")
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def replayed(rig: Rig, tap: Tap, topic: str, records: list[bytes], since: float, timeout: float,
                   profile: Path | None = None) -> float:
    """Archive ``records`` on ``topic`` and replay them; records/s from the first replayed summary to the
    last (``tap`` keeps both times)."""
    await create_topic(rig.kafka, topic, PARTITIONS)
    await produce(rig.kafka, topic, records, total=len(records), desc=f"archive {topic}")
    want = tap.summaries + len(records)
    tap.first_summary = None
    run = Replay(rig, topic, f"bench-{new_salt()}", since, time.time() + 3600)
    try:
        with Profiler(run.proc.pid, profile):
            await tap.read(want, timeout, rig.check_workers, desc="replayed")
        await asyncio.to_thread(run.finish, timeout)
    finally:
        run.stop()
    if tap.summaries < want or tap.first_summary is None or tap.last_summary is None:
        raise click.ClickException(f"{tap.summaries - want + len(records)}/{len(records)} replayed summaries")
    return len(records) / (tap.last_summary - tap.first_summary)


@click.command("replay")
@click.option("--events", default=200_000, show_default=True, help="Sightings replayed (and sent live).")
@click.option("--unique", default=2_000, show_default=True, help="Indicators they are of (all types), cached first.")
@click.option("--new", "new_share", default=0.1, show_default=True,
              help="Share of the indicators that are new in the mixed run (0: no mixed run).")
@click.option("--rate", default=6000, show_default=True, help="VirusTotal calls a minute the worker may make.")
@click.option("--timeout", default=900.0, show_default=True, help="Give up on a phase after this many seconds.")
@click.option("--profile", type=click.Path(dir_okay=False, path_type=Path),
              help="Sample the replay driver with py-spy during the all-cached replay (FILE), the mixed one "
                   "(FILE.mixed) and the worker during the live phase (FILE.live); raw stacks.")
@rig_options
def replay(events: int, unique: int, new_share: float, rate: int, timeout: float, profile: Path | None,
           bootstrap: str | None, vt_url: str | None, keep: bool) -> None:
    """Cached history replayed vs live cache hits, same run; last line `replay_ratio: X.XX`.

    \b
    Example:
      vtstream bench replay                     # 200,000 sightings over 2,000 cached indicators
      vtstream bench replay --events 20000 --profile /tmp/replay.txt
    """
    report = BenchReport(f"replay: {events:,} sightings over {unique:,} cached indicators, 1 worker, "
                         f"against live cache hits")
    with Rig(bootstrap, vt_url, rate_per_minute=None, keep=keep) as rig:
        worker = rig.start_worker(VTSTREAM_VT_RATE_PER_MINUTE=str(rate),
                                  VTSTREAM_KAFKA_SESSION_TIMEOUT=str(6 + events // 20_000))
        salt, fresh = rig.salt, new_salt()
        started = time.time() - 60

        async def run() -> dict[str, float]:
            tap = await Tap(rig.kafka).start()
            try:
                await warm_cache(rig, tap, unique, timeout)
                records = [raw_record(i % unique, salt, str(i)) for i in range(events)]
                live_profile = profile.with_suffix(profile.suffix + ".live") if profile else None
                _paused, live = await backlog_through(rig, worker, tap, records, timeout, live_profile)
                report.add("live: worker CPU us per event", live.cpu())
                calls = rig.stats()["accepted"]
                replay_rate = await replayed(rig, tap, ARCHIVE, records, started, timeout, profile)
                figures = {"live": live.rate, "replay": replay_rate, "replay calls": rig.stats()["accepted"] - calls}
                if new_share > 0:
                    mixed_profile = profile.with_suffix(profile.suffix + ".mixed") if profile else None
                    figures.update(await _mixed(rig, tap, unique, events, new_share, salt, fresh, started, timeout,
                                                mixed_profile))
                return figures
            finally:
                await tap.stop()

        figures = asyncio.run(run())
    report.add("live cache-hit events/s (resume -> last summary)", round(figures["live"]))
    report.add("replay records/s, all cached (first -> last replayed summary)", round(figures["replay"]))
    report.add("VirusTotal calls during the all-cached replay", int(figures["replay calls"]))
    if new_share > 0:
        report.add(f"mixed: new indicators ({new_share:.0%}), their sightings",
                   f"{int(figures['new']):,}, {int(figures['new sightings']):,}")
        report.add("mixed: cached records/s (first -> last cached summary)", round(figures["cached rate"]))
        report.add("mixed: all records/s (first -> last summary)", round(figures["all rate"]))
        report.add("mixed: seconds to the last cached / the last summary",
                   f"{figures['cached s']:.1f} / {figures['all s']:.1f}")
        report.add(f"mixed: VirusTotal calls (at {rate:,}/min)", int(figures["mixed calls"]))
    if profile is not None and profile.exists():
        for name, share in shares(profile):
            report.add(f"profile (replay driver): {name}", f"{share:.1%}")
    report.emit("replay_ratio", f"{figures['replay'] / figures['live']:.2f}")


async def _mixed(rig: Rig, tap: Tap, unique: int, events: int, new_share: float, salt: str, fresh: str,
                 since: float, timeout: float, profile: Path | None) -> dict[str, float]:
    """The replay with ``new_share`` of the indicators new: cached records' rate beside the paced misses'."""
    new = max(1, int(unique * new_share))
    records = [raw_record(i % unique, fresh if i % unique < new else salt, f"m{i}") for i in range(events)]
    cached: list[float] = []
    tap.on_summary = lambda value, now, _ts: cached.append(now) if _CACHED in value else None
    calls = rig.stats()["accepted"]
    all_rate = await replayed(rig, tap, MIXED, records, since, timeout, profile)
    assert tap.first_summary is not None and tap.last_summary is not None
    first = tap.first_summary
    sightings = sum(1 for i in range(events) if i % unique < new)
    return {"new": new, "new sightings": sightings,
            "cached rate": len(cached) / max(1e-9, cached[-1] - first) if cached else 0.0,
            "all rate": all_rate, "cached s": (cached[-1] - first) if cached else 0.0,
            "all s": tap.last_summary - first, "mixed calls": rig.stats()["accepted"] - calls}

