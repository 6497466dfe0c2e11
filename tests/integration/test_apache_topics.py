"""The topic settings vtstream creates, checked on Apache Kafka, which enforces them; replay's start by time index.

The embedded broker accepts these settings without acting on them (no
compaction, no size limit, per-batch timestamps), so they are proven here.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from tests.support.apache import topic_settings

from topics import QUOTA, REPLAY_RUNS, STIX, VERDICT_TABLE, changelog_name, retry_topic

from pipeline.devtools.rig import child_env
from pipeline.kafka.admin import topic_catalog
from pipeline.settings import Settings, parse_duration

pytestmark = [pytest.mark.integration, pytest.mark.apache]

HOUR_MS = 3600 * 1000


def test_every_topic_carries_the_settings_apache_kafka_enforces(apache_kafka):
    kafka = apache_kafka.bootstrap
    created = subprocess.run([sys.executable, "-m", "pipeline", "topics", "create"], capture_output=True, text=True,
                             env=child_env(VTSTREAM_KAFKA_BOOTSTRAP=kafka), timeout=60)
    assert created.returncode == 0, created.stderr
    settings = Settings.of(kafka_bootstrap=kafka)
    largest_record = settings.kafka.max_record_bytes  # what vtstream's producers may send (max_request_size)
    described = topic_settings(kafka, *(spec.name for spec in topic_catalog(settings)))
    for name, (replicas, config) in described.items():
        assert replicas == 1 and config["min.insync.replicas"] == "1", name  # one broker: min(3, 1) replicas
        assert int(config["max.message.bytes"]) == largest_record, (name, config["max.message.bytes"])
    for name in (changelog_name(settings.app_id), QUOTA, REPLAY_RUNS):
        assert described[name][1]["cleanup.policy"] == "compact", name
    verdicts = described[changelog_name(settings.app_id, VERDICT_TABLE)][1]  # kept VTSTREAM_VERDICT_MEMORY
    assert verdicts["cleanup.policy"] == "compact,delete"
    assert int(verdicts["retention.ms"]) == settings.outputs.verdict_memory_s * 1000
    for delay in settings.retry.tiers:
        retention_ms = int(described[retry_topic(delay)][1]["retention.ms"])
        assert retention_ms > parse_duration(delay) * 1000, (delay, retention_ms)
    assert described[STIX][1]["message.timestamp.type"] == "LogAppendTime"


def _archive(kafka: str, topic: str, records: int, per_hour: int, first_ms: int) -> None:
    """``records`` small indicator records on one partition, ``per_hour`` to each hour from ``first_ms``."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka})
    admin.create_topics([NewTopic(topic, 1, 1, config={"retention.ms": "-1"})])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka, "linger.ms": 50, "batch.size": 1_000_000,
                         "queue.buffering.max.messages": 2_000_000, "acks": "all"})
    step = HOUR_MS // per_hour
    for i in range(records):
        producer.produce(topic, f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}".encode(), timestamp=first_ms + i * step)
        if i % 100_000 == 99_999:
            producer.poll(0)
    assert producer.flush(120) == 0


def test_replay_starts_a_window_in_the_middle_of_a_million_records_from_the_time_index(apache_kafka):
    kafka, topic = apache_kafka.bootstrap, "siem.archive"
    records, per_hour = 1_000_000, 1_000
    first_ms = (int(time.time()) // 3600 - 2000) * HOUR_MS  # 1,000 hours of history, ending 1,000 hours ago
    _archive(kafka, topic, records, per_hour, first_ms)
    window = first_ms + 500 * HOUR_MS  # the 501st hour: records 500,000 .. 500,999

    def iso(ms: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))

    started = time.monotonic()
    dry = subprocess.run([sys.executable, "-m", "pipeline", "replay", "--topic", topic, "--from", iso(window),
                          "--to", iso(window + HOUR_MS), "--run", "middle", "--dry-run"],
                         capture_output=True, text=True, env=child_env(VTSTREAM_KAFKA_BOOTSTRAP=kafka), timeout=120)
    took = time.monotonic() - started
    assert dry.returncode == 0, dry.stderr
    assert "(start found by offsets_for_times: partition 0 at 500000)" in dry.stdout, dry.stdout
    assert re.search(r"records in range\s+1000\n", dry.stdout), dry.stdout
    print(f"dry run over a one-hour window of {records:,} records: {took:.1f} s")  # shown with -s; for the docs
