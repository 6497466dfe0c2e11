"""``vtstream bench cache-copy``: how fast a worker's cache copy follows the cache changelog.

A micro-benchmark, no broker: every worker feeds every changelog record of the
cache table to :meth:`~pipeline.kafka.replica.CacheCopy.apply` (each indicator
goes in flight, then done), and intake reads entries with ``fresh``. Prints
changelog records applied per second and reads per second (each entry read
twice: the first read builds the entry), best of ``--repeat`` runs.
"""

from __future__ import annotations

import time

import click

from pipeline.contracts.cache_entry import CachedResult, InFlight
from pipeline.contracts.card import SummaryCard
from pipeline.devtools.bench.harness import BenchReport
from pipeline.kafka.replica import CacheCopy

#: A summary card of the usual size (an IP with a few detections).
SUMMARY = {"found": True, "positives": 3, "total": 70, "asn": "15169", "as_owner": "GOOGLE", "country": "US",
           "reputation": 12, "tags": ["dns"], "permalink": "https://www.virustotal.com/gui/ip-address/8.8.8.8",
           "detections": [{"engine": f"E{i}", "result": "malicious"} for i in range(3)], "checked": True}


@click.command(name="cache-copy")
@click.option("--entries", default=200_000, show_default=True, help="Indicators in the changelog.")
@click.option("--repeat", default=5, show_default=True, help="Runs; the best is reported.")
def cache_copy(entries: int, repeat: int) -> None:
    """Changelog records per second into a worker's cache copy, and reads per second from it."""
    keys = [f"ip:10.{i >> 16}.{(i >> 8) & 255}.{i & 255}".encode() for i in range(entries)]
    changelog = [(key, record.to_bytes()) for i, key in enumerate(keys)
                 for record in (InFlight(since=1000.0, requester=f"indicators.raw/0/{i}"),
                                CachedResult(SummaryCard.from_dict(SUMMARY), fetched_at=1000.0 + i, expires_at=90000.0 + i))]
    best_apply = best_read = float("inf")
    for _ in range(repeat):
        copy = CacheCopy(entries)
        started = time.perf_counter()
        for key, value in changelog:
            copy.apply(key, value)
        best_apply = min(best_apply, time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(2):
            for key in keys:
                copy.fresh(key, 5000.0)
        best_read = min(best_read, time.perf_counter() - started)
    report = BenchReport(f"cache-copy: {len(changelog):,} changelog records into one worker's cache copy, best of {repeat}")
    report.add("apply, ns per changelog record", round(best_apply * 1e9 / len(changelog)))
    report.add("fresh, reads/s (each entry read twice)", round(2 * entries / best_read))
    report.emit("applied_per_s", str(round(len(changelog) / best_apply)))
