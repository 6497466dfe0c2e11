"""`vtstream status` against a real broker: quota records, parked, dead and lag as an operator sees them."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from datetime import datetime, timezone

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from click.testing import CliRunner
from tests.support.kafka import produce

from pipeline.cli.status import gather_status, render, status_command
from pipeline.errors import ConfigError
from pipeline.kafka.admin import ensure_topics, topic_catalog
from pipeline.settings import Settings
from topics import DEAD, LOOKUPS, POLLS, QUOTA, RAW, REPLAY, REQUESTS, RESPONSES, intake_group, retry_topic

pytestmark = pytest.mark.integration

#: The default retry tiers' topics, in the default order (30s, 2m, 10m, 1h).
TIERS = tuple(retry_topic(delay) for delay in ("30s", "2m", "10m", "1h"))


def _today() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d")


def _commit(bootstrap: str, group: str, topic: str, offset: int, partitions: tuple[int, ...] = (0,)) -> None:
    """Commit ``offset`` on ``partitions`` of ``topic`` for ``group``, as a worker would after processing."""

    async def run() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.commit({tp: offset for tp in tps})
        finally:
            await consumer.stop()

    asyncio.run(run())


def _run(bootstrap: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(status_command, list(args), env={"VTSTREAM_KAFKA_BOOTSTRAP": bootstrap, **(env or {})})
    return result.exit_code, result.output


@pytest.mark.both_brokers
def test_status_reports_quota_parked_dead_and_lag(kafka: str) -> None:
    settings = Settings.of(kafka_bootstrap=kafka)
    asyncio.run(ensure_topics(settings, topic_catalog(settings)))
    now = time.time()
    old = {"day": "2000-01-01", "used_today": 999, "daily_quota": 500, "month": "2000-01", "used_month": 999,
           "monthly_quota": 0, "rate_per_minute": 4, "last_call_at": now - 86400 * 9000,
           "blocked_until": None, "blocked_reason": None, "updated_at": now - 86400 * 9000}
    new = dict(old, day=_today(), used_today=123, month=_today()[:7], used_month=4021,
               last_call_at=now - 12, updated_at=now - 12, by_source={"siem": 80, "proxy": 43})
    produce(kafka, QUOTA, [old, new], key=b"governor")
    produce(kafka, TIERS[0], [{"n": i} for i in range(3)], key=b"ip:8.8.8.8")
    _commit(kafka, settings.app_id, TIERS[0], 1)
    produce(kafka, DEAD, [{"reason": "bad"}] * 2)
    produce(kafka, RAW, ["8.8.8.8"] * 5, key=b"siem")  # one partition
    # intake commits in its own group; an empty partition's committed offset beyond its end counts 0
    _commit(kafka, intake_group(settings.app_id), RAW, 2, partitions=(0, 1, 2, 3))

    code, out = _run(kafka, "--json", env={"VTSTREAM_SOURCE_DAILY_CAPS": "siem=300"})
    assert code == 0, out
    data = orjson.loads(out)
    quota = data["quota"]
    assert quota["recorded"] is True
    assert (quota["used_today"], quota["daily_quota"], quota["remaining_today"]) == (123, 500, 377)
    assert (quota["used_month"], quota["monthly_quota"]) == (4021, None)
    assert quota["rate_per_minute"] == 4
    assert 10 <= quota["last_call_ago_s"] < 60
    assert data["blocked"] == {"blocked": False, "until": None, "reason": None}
    assert data["sources"] == {"siem": {"used_today": 80, "cap": 300}, "proxy": {"used_today": 43, "cap": None}}
    assert data["parked"] == {TIERS[0]: 2, TIERS[1]: 0, TIERS[2]: 0, TIERS[3]: 0}
    assert data["dead_letters"] == {"topic": DEAD, "count": 2}
    assert data["lag"] == {RAW: 3, LOOKUPS: 0, REQUESTS: 0, REPLAY: 0, POLLS: 0, RESPONSES: 0,
                           TIERS[0]: 2, TIERS[1]: 0, TIERS[2]: 0, TIERS[3]: 0}
    assert data["missing_topics"] == [] and data["notes"] == []
    assert data["group"] == "vtstream" and data["bootstrap"] == kafka

    code, out = _run(kafka, env={"VTSTREAM_SOURCE_DAILY_CAPS": "siem=300"})
    assert code == 0, out
    lines = {line[:19].strip(): line[19:] for line in out.splitlines()}
    assert lines["VirusTotal quota"].startswith("used today 123 / 500 (377 left, resets 00:00 UTC in ")
    assert re.search(r"this month 4021 / unlimited; pace 4/min; last call [0-9]+s ago", lines["VirusTotal quota"])
    assert lines["blocked"] == "no"
    assert lines["per source"] == "siem 80 / 300, proxy 43 / -"
    assert lines["parked"] == "vt.retry.30s 2, vt.retry.2m 0, vt.retry.10m 0, vt.retry.1h 0"
    assert lines["dead letters"] == "2 on vt.dead"
    assert lines["consumer lag"] == ("indicators.raw 3, vt.lookups 0, vt.requests 0, vt.replay 0, vt.polls 0, "
                                     "vt.responses 0 (group vtstream)")


def test_status_on_an_empty_broker_reports_missing_topics_without_creating_them(kafka: str) -> None:
    settings = Settings.of(kafka_bootstrap=kafka)
    snap = asyncio.run(gather_status(settings))
    assert snap.governor is None and snap.dead is None
    assert set(snap.missing_topics) == {QUOTA, DEAD, RAW, LOOKUPS, REQUESTS, REPLAY, POLLS, RESPONSES,
                                        *TIERS}
    again = asyncio.run(gather_status(settings))  # status must not have auto-created anything
    assert again.missing_topics == snap.missing_topics
    text = render(again)
    assert "no calls recorded yet" in text and "vt.dead missing" in text and "vtstream topics create" in text


def test_unreachable_broker_is_a_clear_quick_error() -> None:
    started = time.monotonic()
    code, out = _run("127.0.0.1:1")
    assert code == 1
    assert "cannot reach Kafka at 127.0.0.1:1" in out
    assert time.monotonic() - started < 15


def test_a_broker_that_never_answers_times_out_with_a_clear_error() -> None:
    with socket.socket() as silent:  # accepts connections, never answers a request
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(ConfigError, match=f"cannot reach Kafka at {address}: no answer within 2s"):
            asyncio.run(gather_status(Settings.of(kafka_bootstrap=address), timeout=2))
        assert time.monotonic() - started < 5
