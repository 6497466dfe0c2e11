"""`vtstream bench SCENARIO` at small scale: each scenario runs, prints its table and its judged line last.

No timing or throughput assertions: the figures depend on the machine. Each
scenario is its own test (it starts its own broker, emulator and workers), so
pytest-xdist spreads them like any other slow test.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest

from pipeline.devtools.rig import child_env

pytestmark = pytest.mark.e2e

BENCH = "from pipeline.devtools.bench import bench_command; bench_command()"

SCENARIOS = {
    "cache-hits": (["--events", "3000", "--unique", "60"], r"ratio: \d+\.\d\d"),
    "unique-calls": (["--events", "200", "--unique", "20", "--timeout", "90"], r"calls_per_unique: \d+\.\d\d"),
    "quota": (["--rate", "1200", "--unique", "100", "--duration", "3"], r"quota_use: \d+\.\d\d"),
    "misses": (["--unique", "20", "--latency-ms", "5", "--timeout", "90"], r"misses_per_s: \d+"),
    "memory": (["--cached", "1000", "--through", "10", "--probes", "10"], r"peak_rss_mb: \d+"),
    "latency": (["--rate", "500", "--duration", "3", "--unique", "60"], r"p99_ratio: (\d+\.\d\d|inf)"),
    "cache-copy": (["--entries", "2000", "--repeat", "1"], r"applied_per_s: \d+"),
    "replay": (["--events", "1000", "--unique", "30", "--new", "0.1"], r"replay_ratio: \d+\.\d\d"),
    "hot-path": (["--events", "1000", "--rounds", "2", "--unique", "30", "--rate", "500", "--duration", "2"],
                 r"p99_ratio: (\d+\.\d\d|inf)"),
}


#: `cache-hits` and `latency` measure with the same functions as the two phases of `hot-path`
#: (`cache_hits.backlog_through`, `latency.paced_through`): smoking `hot-path` runs both, and the
#: suite saves two broker-and-worker starts. Their own commands are in the help test below.
SMOKED = [name for name in SCENARIOS if name not in ("cache-hits", "latency")]


def run_scenario(name: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    """One scenario at small scale, in its own process (it starts its own broker and emulator).

    Past ``timeout`` the bench gets SIGINT, so it stops the broker, emulator and workers
    it started (a SIGKILL would leave them running through the rest of the suite).
    """
    env = child_env()
    args, _ = SCENARIOS[name]
    cmd = [sys.executable, "-c", BENCH, name, *args]
    with subprocess.Popen(cmd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=60)
            finally:
                proc.kill()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.parametrize("scenario", SMOKED)
def test_scenario_prints_table_and_judged_line_last(scenario: str) -> None:
    result = run_scenario(scenario)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(f"{scenario}:"), result.stdout
    assert lines[1].split() == ["metric", "value"], result.stdout
    assert len(lines) > 4, result.stdout
    assert re.fullmatch(SCENARIOS[scenario][1], lines[-1]), lines[-1]
    if scenario == "hot-path":  # both figures of one run, together; the ratio a median of its rounds'
        assert re.fullmatch(r"ratio: \d+\.\d\d", lines[-2]), lines[-2]
        per_round = next(line for line in lines if line.startswith("throughput: ratio per round"))
        assert len(re.findall(r"\d+\.\d\d", per_round)) == 2, per_round
        cpu = next(line for line in lines if line.startswith("throughput: CPU us per event per round"))
        assert len(re.findall(r"\d+\.\d \| \d+\.\d", cpu)) == 2, cpu  # baseline | worker, each round


def test_bench_help_names_every_scenario() -> None:
    result = subprocess.run([sys.executable, "-c", BENCH, "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for name in SCENARIOS:
        assert name in result.stdout
