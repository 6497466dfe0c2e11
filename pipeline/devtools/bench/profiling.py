"""Optional py-spy sampling of a worker during a scenario's measured phase.

py-spy is not a dependency of vtstream: ``pip install py-spy`` to use
``--profile FILE``. The output is py-spy's ``raw`` format (collapsed stacks:
one line per stack, frames separated by ``;``, then the sample count), which
:func:`top_frames` summarises and flamegraph tools read directly.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Callable, Iterator

import click


def _py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


class Profiler:
    """``with Profiler(pid, path):`` samples ``pid`` with py-spy while the block runs; no-op without a path."""

    def __init__(self, pid: int, path: Path | None, rate: int = 200) -> None:
        self.pid, self.path, self.rate = pid, path, rate
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "Profiler":
        if self.path is None:
            return self
        exe = _py_spy()
        if exe is None:
            raise click.ClickException("--profile needs py-spy, which is not installed: pip install py-spy")
        self._proc = subprocess.Popen([exe, "record", "--pid", str(self.pid), "--rate", str(self.rate),
                                       "--format", "raw", "--output", str(self.path), "--nonblocking"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)   # py-spy writes its output on SIGINT
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


#: (label, test on one frame "function (file:line)"), tried leaf first: a sample counts for the
#: deepest frame that matches, so a handler calling the producer counts as producer time.
CATEGORIES: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("logging calls (mostly disabled debug)", lambda f: "logging/" in f),
    ("producer (aiokafka + faust wrapper)",
     lambda f: "aiokafka/producer" in f or ("drivers/aiokafka.py" in f and "Producer" in f)),
    ("consumer/fetcher (aiokafka + faust driver)",
     lambda f: "aiokafka/consumer" in f or ("drivers/aiokafka.py" in f and "Consumer" in f)),
    ("kafka client/protocol (aiokafka)", lambda f: "aiokafka/" in f or "kafka/" in f),
    ("our batch loop (runtime.py)", lambda f: "pipeline/kafka/runtime.py" in f),
    ("our handlers (stages, events, policy, cache, orjson)",
     lambda f: "pipeline/" in f and not any(x in f for x in ("cli.py", "app.py", "__main__"))),
    ("faust/mode stream machinery", lambda f: "faust/" in f or "mode/" in f),
    ("asyncio event loop", lambda f: "asyncio/" in f or "selectors" in f),
)


def _samples(path: Path) -> Iterator[tuple[list[str], int]]:
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if stack and count_text.isdigit():
            yield stack.split(";"), int(count_text)


def shares(path: Path) -> list[tuple[str, float]]:
    """Share of samples per :data:`CATEGORIES` entry (plus "other"), largest first."""
    counts: Counter[str] = Counter()
    for frames, count in _samples(path):
        label = next((name for frame in reversed(frames) for name, test in CATEGORIES if test(frame)), "other")
        counts[label] += count
    total = sum(counts.values()) or 1
    return [(name, n / total) for name, n in counts.most_common()]


def top_frames(path: Path, n: int = 15) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(self time, inclusive time) of the ``n`` heaviest frames, as fractions of all samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for frames, count in _samples(path):
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return [], []
    return ([(f, c / total) for f, c in own.most_common(n)],
            [(f, c / total) for f, c in inclusive.most_common(n)])
