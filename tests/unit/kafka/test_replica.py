"""The worker's copy of the cache (intake's one-hop answers) and intake's batch partitioning."""

from __future__ import annotations

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from pipeline.contracts.card import SummaryCard
from pipeline.kafka.direct import key_slot
from pipeline.kafka.replica import CacheCopy
from pipeline.rules.cache import completed
from pipeline.settings import CacheSettings

pytestmark = pytest.mark.unit


def done(now: float = 1000.0) -> bytes:
    return completed(SummaryCard.mapped_from(True, {"positives": 1}), True, now, CacheSettings()).to_bytes()


def test_a_finished_entry_is_served_until_it_expires():
    copy = CacheCopy(10)
    copy.apply(b"ip:8.8.8.8", done(1000.0))
    ttl = CacheSettings().ttl_s
    assert copy.fresh(b"ip:8.8.8.8", 1000.0 + ttl - 1).summary.positives == 1
    assert copy.fresh(b"ip:8.8.8.8", 1000.0 + ttl + 1) is None


def test_in_flight_tombstones_and_garbage_remove_the_entry():
    copy = CacheCopy(10)
    for update in (orjson.dumps({"state": "inflight", "since": 1.0, "waiters": []}), None):
        copy.apply(b"ip:8.8.8.8", done())
        copy.apply(b"ip:8.8.8.8", update)
        assert copy.fresh(b"ip:8.8.8.8", 1000.0) is None and len(copy) == 0
    copy.apply(b"ip:8.8.8.8", b'"state":"done" but not JSON')
    assert copy.fresh(b"ip:8.8.8.8", 1000.0) is None and len(copy) == 0


def test_the_least_recently_used_entry_goes_first():
    copy = CacheCopy(2)
    copy.apply(b"a", done())
    copy.apply(b"b", done())
    assert copy.fresh(b"a", 1000.0) is not None  # a is now the most recently used
    copy.apply(b"c", done())
    assert len(copy) == 2
    assert copy.fresh(b"b", 1000.0) is None
    assert copy.fresh(b"a", 1000.0) is not None and copy.fresh(b"c", 1000.0) is not None


def test_the_copy_is_bounded_by_bytes_not_only_by_entries():
    """One finished answer can be a megabyte (a file with many relations): a count alone bounds nothing."""
    big = orjson.dumps({**orjson.loads(done()), "summary": {"positives": 1, "note": "x" * 100_000}})
    copy = CacheCopy(1000, max_bytes=1024 * 1024)
    for n in range(40):
        copy.apply(f"file:{n}".encode(), big)
    assert copy.size <= 1024 * 1024 and len(copy) == 10  # the ten most recent 100 KB answers
    assert copy.fresh(b"file:39", 1000.0) is not None and copy.fresh(b"file:0", 1000.0) is None
    copy.apply(b"file:huge", b'{"state": "done"' + b" " * (2 * 1024 * 1024) + b"}")  # larger than all of it
    assert len(copy) == 10 and copy.size <= 1024 * 1024
    for n in range(40):
        copy.apply(f"file:{n}".encode(), None)
    assert copy.size == 0 and len(copy) == 0


@pytest.mark.parametrize("count", [1, 4, 7])
def test_intake_partitions_keys_like_the_kafka_producers(count):
    """vt.lookups must stay co-partitioned with the cache table that faust's producer fills."""
    partitions = list(range(count))
    for key in (b"ip:8.8.8.8", b"domain:example.com", b"url:aHR0cDovL2EuYi8", b"file:" + b"a" * 64):
        assert key_slot(key, count) == DefaultPartitioner()(key, partitions, partitions)
