"""Replay runs for the integration tests: an archive topic with chosen timestamps, the command, its status."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from tests.support.settings import UNTHROTTLED

from pipeline.devtools.rig import child_env

ARCHIVE = "siem.archive"
HOUR_MS = 3600 * 1000
#: The replayed range: ten days ago, for two days.
BASE_MS = (int(time.time()) // 3600 - 240) * HOUR_MS
FROM_MS, TO_MS = BASE_MS, BASE_MS + 48 * HOUR_MS


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def archive(bootstrap: str, records: list[tuple[int, str | dict[str, Any]]], partitions: int = 2) -> None:
    """Create the archive topic and write ``(timestamp_ms, record)`` pairs with those Kafka timestamps."""

    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            if ARCHIVE not in await admin.list_topics():
                await admin.create_topics([NewTopic(ARCHIVE, partitions, 1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            sent = []
            for i, (ts, record) in enumerate(records):
                value = record.encode() if isinstance(record, str) else orjson.dumps(record)
                sent.append(await producer.send(ARCHIVE, value, timestamp_ms=ts, partition=i % partitions))
            await asyncio.gather(*sent)
        finally:
            await producer.stop()

    asyncio.run(run())


def replay_env(bootstrap: str, vt_url: str, **env: str) -> dict[str, str]:
    """The environment `vtstream replay` runs in: the test's broker and emulator, ``env`` as VTSTREAM_<NAME>."""
    return child_env(**{"VTSTREAM_KAFKA_BOOTSTRAP": bootstrap, "VTSTREAM_VT_BASE_URL": vt_url, **UNTHROTTLED,
                        **{f"VTSTREAM_{k.upper()}": v for k, v in env.items()}})


def replay_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline", "replay", "--topic", ARCHIVE, "--from", iso(FROM_MS), "--to", iso(TO_MS),
            *args]


def replay(bootstrap: str, vt_url: str, *args: str, timeout: float = 120, **env: str
           ) -> subprocess.CompletedProcess[str]:
    """Run `vtstream replay` as a user would."""
    return subprocess.run(replay_args(*args), env=replay_env(bootstrap, vt_url, **env), capture_output=True,
                          text=True, timeout=timeout)


def dry_counts(stdout: str) -> dict[str, int]:
    counts = {}
    for line in stdout.splitlines():
        label, _, number = line.rpartition(" ")
        if number.isdigit() and label.strip():
            counts[label.strip()] = int(number)
    return counts


def status_of(bootstrap: str, run: str) -> dict[str, Any]:
    """The run as `vtstream status --json` shows it."""
    status = subprocess.run([sys.executable, "-m", "pipeline", "status", "--json"], capture_output=True, text=True,
                            env={**os.environ, "VTSTREAM_KAFKA_BOOTSTRAP": bootstrap}, timeout=60)
    (found,) = [r for r in json.loads(status.stdout)["replay_runs"] if r["run"] == run]
    return found


