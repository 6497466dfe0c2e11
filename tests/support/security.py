"""Running vtstream as a user would against a secured Kafka, and reading results with librdkafka.

Shared by the security tests on the embedded broker (behind a TLS terminator)
and on Apache Kafka.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from tests.support.settings import SHORT_SESSION

from pipeline.devtools.rig import child_env
from topics import ENRICHED

#: Refusals end the process, with the setting named, within this many seconds.
FAIL_FAST_S = 60


def cli_env(bootstrap: str, **settings: str) -> dict[str, str]:
    return child_env(**{"VTSTREAM_KAFKA_BOOTSTRAP": bootstrap, "VTSTREAM_WEB_PORT": "0", **SHORT_SESSION,
                        "VTSTREAM_STORE": "memory://", **{f"VTSTREAM_{k.upper()}": v for k, v in settings.items()}})


def vtstream(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], env=env, text=True, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=FAIL_FAST_S)


def read_summaries(config: dict[str, str], want: set[str], timeout: float = 90.0) -> set[str]:
    """Indicator values with a final summary on indicators.enriched, read with librdkafka."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({**config, "group.id": "soc-reader", "enable.auto.commit": False})
    partitions = consumer.list_topics(ENRICHED, timeout=30).topics[ENRICHED].partitions
    consumer.assign([TopicPartition(ENRICHED, p, OFFSET_BEGINNING) for p in partitions])  # no group join
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    try:
        while not want <= seen and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            event = json.loads(message.value())
            if event["kind"] == "summary" and not event["summary"].get("pending"):
                seen.add(event["indicator"]["value"])
    finally:
        consumer.close()
    return seen


def fails_fast(env: dict[str, str], setting: str, needle: str) -> str:
    """`vtstream worker`, `produce` and `status` exit non-zero in time with one error line naming ``setting``.

    Returns both outputs.
    """
    started = time.monotonic()
    outputs = []
    procs = {"worker": vtstream(env, "worker"), "produce": vtstream(env, "produce", "8.8.8.8"),
             "status": vtstream(env, "status")}
    for name, proc in procs.items():
        try:
            out, _ = proc.communicate(timeout=FAIL_FAST_S - (time.monotonic() - started))
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"{name} still running after {FAIL_FAST_S}s: {proc.communicate()[0][-2000:]}")
        errors = [line for line in out.splitlines() if line.startswith("Error:")]
        assert proc.returncode != 0, (name, out[-2000:])
        assert len(errors) == 1 and setting in errors[0] and needle in errors[0], (name, out[-2000:])
        assert [line for line in out.splitlines() if line.strip()] == errors, (name, out[-2000:])  # nothing else
        outputs.append(out)
    return "\n".join(outputs)
