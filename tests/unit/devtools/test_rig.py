"""The rig's reading of a process's CPU time (the benches' CPU per event)."""

from __future__ import annotations

import os
import sys
import time

import pytest

from pipeline.devtools.rig import cpu_seconds

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_cpu_seconds_counts_what_the_process_spent() -> None:
    before, clock = cpu_seconds(os.getpid()), time.process_time()
    end = time.process_time() + 0.3
    while time.process_time() < end:  # burn 0.3 s of CPU
        pass
    after, spent = cpu_seconds(os.getpid()), time.process_time() - clock
    assert before is not None and after is not None
    assert abs((after - before) - spent) < 0.05  # /proc counts in clock ticks (10 ms)


def test_cpu_seconds_of_a_process_that_is_gone_is_none() -> None:
    assert cpu_seconds(2**22 + 1) is None  # above the kernel's pid limit: never a process
