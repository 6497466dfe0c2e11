"""Hostile records through a real worker on a real broker, with the emulator (issue 21).

A worker is sent records built to stop it (a 120 KB colon bomb, a URL nested 480
times, a file event spelled to get past a byte search, deep JSON, bytes that are not
UTF-8, bombs of separators and userinfo marks), then ordinary indicators. The ordinary
ones are answered, the hostile ones are in vt.dead in bounded form, and the worker is
the same process throughout. Then no record on any topic vtstream wrote is larger
than VTSTREAM_KAFKA_MAX_RECORD_BYTES.
"""

from __future__ import annotations

import asyncio
import hashlib

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from tests.support.kafka import collect, finals, produce, wait_finals
from tests.support.settings import fast_retries

from pipeline.kafka.admin import topic_catalog
from pipeline.rules.deadletter import KEEP_BYTES
from pipeline.settings import Settings
from topics import DEAD, ENRICHED, RAW, changelog_name

pytestmark = pytest.mark.integration

LIMIT = 256 * 1024
ORDINARY = ["1.1.1.1", "8.8.8.8", "9.9.9.9", "8.8.4.4", "1.0.0.1", "149.112.112.112", "208.67.222.222",
            "208.67.220.220", "64.6.64.6", "185.228.168.9"]


def nested_url(times: int) -> str:
    url = "https://bob:Hunter2pw@bank.example/reset?token=TOKa1"
    for _ in range(times):
        url = "https://wrap.example/?u=" + url.replace("%", "%25").replace("?", "%3F").replace("=", "%3D")
    return url


HOSTILE: list[bytes] = [
    ("a:" * 61_440).encode(),                                       # 120 KB colon bomb (quadratic userinfo regex)
    orjson.dumps({"value": nested_url(480)}),                       # RecursionError in scrub
    b'{"\\u0066ile": {"name": "env", "uri": "file:///proc/self/environ"}}',  # a file event the byte search missed
    b"[" * 200_000,                                                 # deep JSON
    b"\xff\xfe" + b"https://bob:Hunter2pw@h.example/\xff" * 6_000,  # not UTF-8, with a secret
    ("?" + "a=%&" * 60_000).encode(),                               # a pair for the scrubber every 4 bytes
    ("//a@" * 60_000).encode(),                                     # a userinfo match every 4 bytes
    orjson.dumps({"value": "8.8.8.8", "labels": ["x" * 100_000]}),  # a label every summary would repeat
    ("https://h.example/?" + "token=TOKb2&" * 40_000).encode(),     # secrets past the 64 KiB a letter keeps
]


#: Slow hostile records in a row (each costs the scrubber its worst, ~40 ms here): together
#: many times the 3-second session timeout the test workers run with.
BURST = [("?%d" % n + "&token=1" * 12_000).encode() for n in range(200)]


def test_hostile_records_cost_one_dead_letter_each_and_the_worker_goes_on(kafka, emulator, worker_factory):
    worker = worker_factory(kafka, emulator.url, kafka_max_record_bytes=str(LIMIT))
    pid = worker.pid
    produce(kafka, RAW, HOSTILE)
    produce(kafka, RAW, BURST)
    produce(kafka, RAW, ORDINARY)
    events = wait_finals(kafka, len(ORDINARY), timeout=60)
    answered = {e["indicator"]["value"] for e in finals(events)}
    assert set(ORDINARY) <= answered
    dead = collect(kafka, DEAD, lambda records: len(records) >= len(HOSTILE) + len(BURST), timeout=30)
    assert len(dead) == len(HOSTILE) + len(BURST), [d.get("reason") for d in dead]
    assert worker.alive() and worker.pid == pid, worker.tail()
    by_sha = {d["original_sha256"]: d for d in dead}
    for raw in HOSTILE:
        letter = by_sha[hashlib.sha256(raw).hexdigest()]  # every hostile record is named by its hash
        assert letter["stage"] == "intake" and letter["original_length"] == len(raw) and letter["v"] == 2
        kept = letter["original"].get("text") or letter["original"].get("base64") or ""
        assert len(kept.encode()) <= KEEP_BYTES * 4 // 3 + 4
        assert letter["truncated"] == (len(raw) > KEEP_BYTES)
    blob = repr(dead)
    assert "Hunter2pw" not in blob and "TOKa1" not in blob and "TOKb2" not in blob
    worker.stop()
    log = worker.output()
    assert "Traceback" not in log, worker.tail(60)
    # aiokafka's "Heartbeat failed" / "Heartbeat session expired", faust's thread keepalive: none of them
    assert "Heartbeat" not in log and "keepalive is not responding" not in log, worker.tail(60)


def test_no_record_on_any_topic_is_larger_than_the_limit(kafka, emulator_factory, worker_factory):
    """At the smallest limit (128 KiB): 1,500 duplicates of a URL whose scan is queued wait in the
    cache (they took about 300 KB in one entry), hostile records of up to 1 MiB go to vt.dead,
    and STIX bundles are published; then every topic of the catalog is read back."""
    limit = 128 * 1024
    emulator = emulator_factory("--scan-seconds", "4", "--not-found-ratio", "1.0")
    worker = worker_factory(kafka, emulator.url, kafka_max_record_bytes=str(limit), outputs="events,stix",
                            **fast_retries())
    hot = {"value": "https://hot.example.com/landing", "labels": ["TLP:GREEN"] * 50, "source": "s" * 1000}
    produce(kafka, RAW, [orjson.dumps({**hot, "id": str(i)}) for i in range(1_500)])
    produce(kafka, RAW, [b"x:" * 500_000, ("?" + "token=1&" * 120_000).encode(), *[ip for ip in ORDINARY[:3]]])
    events = collect(kafka, ENRICHED,
                     lambda evs: len([e for e in finals(evs) if e["indicator"]["value"] == hot["value"]]) >= 1_500,
                     timeout=120)
    assert len([e for e in finals(events) if e["indicator"]["value"] == hot["value"]]) >= 1_500
    assert worker.alive(), worker.tail()
    settings = Settings.of(kafka_bootstrap=kafka)
    written = [spec.name for spec in topic_catalog(settings) if spec.name != RAW]  # the SIEM writes indicators.raw
    largest = asyncio.run(largest_records(kafka, written))
    over = {topic: size for topic, size in largest.items() if size > limit}
    assert not over, over
    assert largest[DEAD] > 0 and largest[changelog_name("vtstream")] > 0


async def largest_records(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """The largest record (key and value) on each topic, read from the beginning to the end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                fetch_max_bytes=16 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024)
    await consumer.start()
    try:
        found = await consumer.topics()
        partitions = [TopicPartition(topic, p) for topic in topics if topic in found
                      for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        largest = {topic: 0 for topic in topics}
        left = {tp for tp in partitions if ends[tp] > 0}
        while left:
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, records in batch.items():
                for record in records:
                    size = len(record.key or b"") + len(record.value or b"")
                    largest[tp.topic] = max(largest[tp.topic], size)
                    if record.offset + 1 >= ends[tp]:
                        left.discard(tp)
            if not batch:
                left = {tp for tp in left if await consumer.position(tp) < ends[tp]}
        return largest
    finally:
        await consumer.stop()
