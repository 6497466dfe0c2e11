"""``vtstream bench SCENARIO``: the issue #6 benchmarks, each in one invocation.

Every scenario starts what it needs (embedded broker, VirusTotal emulator,
worker processes) unless pointed at existing ones (``--bootstrap``,
``--vt-url``), prints a table on stdout and, last, the line it is judged on.
Progress goes to stderr. Scale options default to the issue's numbers.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

import click

from pipeline.devtools.bench.cache_copy import cache_copy
from pipeline.devtools.bench.hostile import hostile
from pipeline.devtools.bench.cache_hits import cache_hits
from pipeline.devtools.bench.hot_path import hot_path
from pipeline.devtools.bench.latency import latency
from pipeline.devtools.bench.memory import memory
from pipeline.devtools.bench.misses import misses
from pipeline.devtools.bench.quota import quota
from pipeline.devtools.bench.replay import replay
from pipeline.devtools.bench.unique_calls import unique_calls


@click.group(name="bench", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def bench_command() -> None:
    """Benchmarks: cache-hits, unique-calls, quota, misses, memory, latency, cache-copy, replay, hot-path.

    \b
    Examples (each prints a table and, last, the judged line):
      vtstream bench cache-hits      -> ratio: X.XX          (target >= 0.50)
      vtstream bench unique-calls    -> calls_per_unique: X.XX (target 1.00)
      vtstream bench quota           -> quota_use: X.XX      (target >= 0.95, no 429)
      vtstream bench misses --latency-ms 50 -> misses_per_s: N (target >= 300)
      vtstream bench memory          -> peak_rss_mb: N       (target < 500)
      vtstream bench latency         -> p99_ratio: X.XX      (target <= 2.0, pipeline / raw passthrough)
      vtstream bench cache-copy      -> applied_per_s: N     (no broker: the cache copy alone)
      vtstream bench replay          -> replay_ratio: X.XX   (target >= 0.8, cached replay / live hits)
      vtstream bench hot-path        -> ratio: X.XX, p99_ratio: X.XX (cache hits: throughput and latency)
    """
    # SIGTERM unwinds like Ctrl-C, so every broker, emulator and worker started is stopped.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    sys.exit(128 + signum)


for _scenario in (cache_hits, unique_calls, quota, misses, memory, latency, cache_copy, hostile, replay, hot_path):
    bench_command.add_command(_scenario)
