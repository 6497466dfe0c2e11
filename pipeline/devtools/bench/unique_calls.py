"""Scenario unique-calls: one VirusTotal call per unique indicator, duplicates in flight included.

Two workers in one group (the gateway on one of them), emulator unlimited.
The inputs repeat each unique indicator ``events / unique`` times, shuffled,
and are produced all at once once the group is stable, so most duplicates
reach the lookup stage while their indicator's first call is still in flight
(the gateway calls one indicator at a time). Figure: object lookups accepted
by the emulator / unique indicators. Every input must get exactly one summary;
the table reports how many came out and how many distinct inputs they answer.
"""

from __future__ import annotations

import asyncio
import random
import time

import click
import orjson

from topics import RAW

from pipeline.devtools.bench.harness import BenchReport, Rig, Tap, produce, raw_record, rig_options, wait_for_group


@click.command("unique-calls")
@click.option("--events", default=50_000, show_default=True, help="Events in total.")
@click.option("--unique", default=5_000, show_default=True, help="Unique indicators (all types).")
@click.option("--workers", default=2, show_default=True, help="Workers in the group.")
@click.option("--seed", default=6, show_default=True, help="Shuffle seed.")
@click.option("--url-max-age", default="3650d", show_default=True,
              help="VTSTREAM_URL_MAX_AGE. A stale URL report is rescanned by design (a submission, "
                   "analysis polls and a second lookup): not a duplicate call, so off by default; "
                   "30d includes them.")
@click.option("--timeout", default=900.0, show_default=True, help="Give up after this many seconds.")
@rig_options
def unique_calls(events: int, unique: int, workers: int, seed: int, url_max_age: str, timeout: float,
                 bootstrap: str | None, vt_url: str | None, keep: bool) -> None:
    """Calls per unique indicator with duplicates arriving in flight; last line `calls_per_unique: X.XX`.

    \b
    Example:
      vtstream bench unique-calls                     # 50,000 events over 5,000 indicators, 2 workers
      vtstream bench unique-calls --events 2000 --unique 200
    """
    if events < unique:
        raise click.UsageError("--events must be at least --unique")
    report = BenchReport(f"unique-calls: {events:,} events over {unique:,} unique indicators, {workers} workers")
    order = [i % unique for i in range(events)]
    random.Random(seed).shuffle(order)
    with Rig(bootstrap, vt_url, rate_per_minute=None, keep=keep) as rig:
        for _ in range(workers):
            rig.start_worker(VTSTREAM_URL_MAX_AGE=url_max_age)
        answered: set[str] = set()
        flags = {"cached": 0, "coalesced": 0, "fresh": 0, "not checked": 0}

        def on_summary(value: bytes, _now: float, _timestamp_ms: int) -> None:
            event = orjson.loads(value)
            answered.add(str((event.get("origin") or {}).get("id")))
            summary = event.get("summary") or {}
            flag = ("not checked" if not summary.get("checked")
                    else "cached" if summary.get("cached") else "coalesced" if summary.get("coalesced")
                    else "fresh")
            flags[flag] += 1

        async def run() -> float:
            joined = await wait_for_group(rig.kafka, workers)
            report.add("group formed after (s)", joined)
            tap = await Tap(rig.kafka, on_summary=on_summary).start()
            try:
                started = time.perf_counter()
                await produce(rig.kafka, RAW, (raw_record(n, rig.salt, str(i)) for i, n in enumerate(order)),
                              total=events, desc="input")
                await tap.read(events, timeout, rig.check_workers)
                elapsed = time.perf_counter() - started
                await asyncio.sleep(2.0)   # late duplicates (a replay) would show up here
                await tap.read(events + 1, 0.5, quiet=True)
            finally:
                await tap.stop()
            report.add("summaries out (must equal events in)", tap.summaries)
            report.add("distinct inputs answered", len(answered))
            report.add("other events out", {k: v for k, v in sorted(tap.kinds.items()) if k != "summary"})
            return elapsed

        elapsed = asyncio.run(run())
        stats = rig.stats()
        if len(answered) < events:  # raised inside the rig, so it keeps the work folder and worker logs
            raise click.ClickException(
                f"{events - len(answered):,} of {events:,} inputs got no summary in {timeout:g} s")
    objects = stats["by_kind"]["object"]["accepted"]
    report.add("seconds, first produce -> last summary", elapsed)
    report.add("final summaries: fresh / coalesced / cached / not checked",
               " / ".join(str(flags[k]) for k in ("fresh", "coalesced", "cached", "not checked")))
    report.add("emulator object lookups accepted", objects)
    report.add("emulator relationship / submission / analysis calls accepted",
               " / ".join(str(stats["by_kind"][k]["accepted"]) for k in ("relationship", "submission", "analysis")))
    report.add("emulator distinct indicators looked up", stats["unique_lookups"])
    report.add("emulator most lookups of one indicator", stats["max_lookups_per_indicator"])
    report.add("emulator rejected (quota)", stats["rejected_quota"])
    report.emit("calls_per_unique", f"{objects / unique:.2f}")
