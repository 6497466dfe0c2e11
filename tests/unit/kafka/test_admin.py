"""The record limit reaches every topic vtstream creates and every producer it builds."""

import pytest

from pipeline.kafka import admin
from pipeline.kafka.admin import topic_catalog
from pipeline.settings import Settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("limit", [1024 * 1024, 300_000])
def test_topics_producers_and_consumers_follow_the_record_limit(monkeypatch, limit):
    settings = Settings.of(kafka_max_record_bytes=limit)
    assert {spec.config()["max.message.bytes"] for spec in topic_catalog(settings)} == {str(limit)}
    monkeypatch.setattr(admin, "AIOKafkaProducer", lambda **options: options)
    monkeypatch.setattr(admin, "AIOKafkaConsumer", lambda *topics, **options: options)
    producer = admin.make_producer(settings, max_batch_size=4 * 1024 * 1024)
    assert producer["max_request_size"] == limit and producer["max_batch_size"] <= limit
    consumer = admin.make_consumer(settings)
    assert consumer["max_partition_fetch_bytes"] >= limit and consumer["fetch_max_bytes"] >= limit


def test_the_limit_has_a_floor_that_leaves_a_dead_letter_room():
    with pytest.raises(Exception, match="VTSTREAM_KAFKA_MAX_RECORD_BYTES"):
        Settings.from_env({"VTSTREAM_KAFKA_MAX_RECORD_BYTES": "1000"})
