"""Crash safety and hostile input: kill -9 mid-stream, a dying group member, 10,000 bad records.

Scaled to keep the suite short; the long forms are in the README (VTSTREAM_CRASH_SCALE).
"""

from __future__ import annotations

import asyncio
import os
import random

import orjson
import pytest
from tests.support.kafka import assert_every_input_answered_once_per_id, collect, ids_answered, produce, stream_of, summaries

from topics import DEAD, ENRICHED, RAW, intake_group

from pipeline.devtools.rig import group_members, wait_until

pytestmark = pytest.mark.integration

SCALE = int(os.environ.get("VTSTREAM_CRASH_SCALE", "1"))
GROUPS = ("vtstream", intake_group("vtstream"))


def test_kill_9_mid_stream_then_restart_loses_nothing(kafka, emulator, worker_factory):
    records = stream_of(500 * SCALE, 4)
    first = worker_factory(kafka, emulator.url)
    produce(kafka, RAW, records)
    partial = collect(kafka, ENRICHED, lambda evs: ids_answered(evs) >= len(records) // 4, timeout=120)
    assert ids_answered(partial) < len(records), "finished before the crash: nothing was tested"
    first.kill()
    worker_factory(kafka, emulator.url)
    events = collect(kafka, ENRICHED, lambda evs: ids_answered(evs) >= len(records), timeout=240)
    assert_every_input_answered_once_per_id(events, len(records))


@pytest.mark.both_brokers
def test_a_dying_group_member_hands_its_partitions_over(kafka, emulator, worker_factory):
    records = stream_of(400 * SCALE, 3, seed=2)
    doomed = worker_factory(kafka, emulator.url)
    worker_factory(kafka, emulator.url)
    wait_until(lambda: all(asyncio.run(group_members(kafka, group)) == 2 for group in GROUPS),
               what="both workers in the faust and the intake group")  # before the stream starts
    produce(kafka, RAW, records)
    collect(kafka, ENRICHED, lambda evs: ids_answered(evs) >= len(records) // 4, timeout=120)
    doomed.kill()
    events = collect(kafka, ENRICHED, lambda evs: ids_answered(evs) >= len(records), timeout=240)
    assert_every_input_answered_once_per_id(events, len(records))


def hostile_records(n: int, seed: int = 3) -> list[bytes]:
    """n records that are not indicators, of every nasty kind."""
    rng = random.Random(seed)
    makers = [
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) + b"\xff",
        lambda: b"\xc3\x28\xa0\xa1" + os.urandom(8) + b"\xfe",
        lambda: b"[" * rng.randrange(600, 5000) + b"]" * 3,
        lambda: b'{"value": ' + b"{" * 2000 + b"}" * 2000 + b"}",
        lambda: b'{"value": ' + orjson.dumps(rng.choice([1, 2.5, True, None, [], {}, ["8.8.8.8"]])) + b"}",
        lambda: orjson.dumps({"value": "8.8.8.8", "labels": rng.choice([1, {"a": 1}, [1, 2]])}),
        lambda: orjson.dumps({"value": "\x00\x01\x1b[31m" + "x" * rng.randrange(5)}),
        lambda: orjson.dumps({"value": rng.choice(["", " ", "\t", "not an ioc", "999.1.1.1", "1.2.3",
                                                    "http://", "a" * 300 + ".com"])}),
        lambda: b"line one\nline two",
        lambda: orjson.dumps({"value": "\u202e" + "moc.live"}),
    ]
    out = [rng.choice(makers)() for _ in range(n)]
    out[::500] = [b'{"value": "' + b"A" * (1024 * 1024) + b'"}'] * len(out[::500])  # 1 MB strings
    return out


def test_ten_thousand_hostile_records_go_to_dead_letters_and_valid_ones_flow(kafka, emulator, worker_factory):
    bad = hostile_records(10_000)
    good = [f"52.{i // 250}.{i % 250}.{i % 7 + 1}".encode() for i in range(50)]
    mixed = bad + good
    random.Random(4).shuffle(mixed)
    worker = worker_factory(kafka, emulator.url)
    produce(kafka, RAW, mixed)
    dead = collect(kafka, DEAD, lambda recs: len(recs) >= len(bad), timeout=180)
    assert len(dead) == len(bad)
    assert all(d["stage"] == "intake" and d["reason"] for d in dead)
    events = collect(kafka, ENRICHED, lambda evs: len(summaries(evs)) >= len(good), timeout=120)
    assert {e["indicator"]["value"] for e in summaries(events)} == {g.decode() for g in good}
    assert worker.proc.poll() is None
