"""The latency baseline: a raw aiokafka passthrough, run as its own process like a worker.

It consumes ``bench.passthrough.in`` (every partition, no group), orjson-parses
each record, produces one small summary-shaped record per input to
``bench.passthrough.out`` and awaits each fetched batch's acks before the next
fetch ("forward first, then ack", as the pipeline does). Its clients use the
pipeline intake's settings (10 ms fetch waits, 1 ms linger, acks=all), so the
difference between the two p99s is what the pipeline adds on this box, not
a tuning gap.

Started by ``vtstream bench latency``::

    python -m pipeline.devtools.bench.passthrough PARTITIONS   # Kafka settings from VTSTREAM_*
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from pipeline.kafka.admin import make_consumer, make_producer
from pipeline.kafka.direct import FETCH_WAIT_MS
from pipeline.settings import Settings

SOURCE, SINK = "bench.passthrough.in", "bench.passthrough.out"
#: Printed on stdout once the consumer holds its positions: inputs sent after it are all seen.
READY = "passthrough ready"


async def forward_batch(consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, sink: str) -> int:
    """One fetch: parse each record, produce one summary-shaped record for it, await the acks; records done."""
    batch = await consumer.getmany(timeout_ms=200, max_records=2000)
    acks = []
    for records in batch.values():
        for record in records:
            doc = orjson.loads(record.value or b"{}")
            out = orjson.dumps({"kind": "summary", "indicator": {"value": doc["value"]},
                                "origin": {"id": doc.get("id")}, "summary": {"cached": True}})
            acks.append(await producer.send(sink, out, key=doc["value"].encode()))
    await asyncio.gather(*acks)
    return len(acks)


def clients(kafka: Settings, **consumer_options: Any) -> tuple[AIOKafkaConsumer, AIOKafkaProducer]:
    """A group-less consumer and a producer with intake's settings (``consumer_options`` override)."""
    options: dict[str, Any] = {"fetch_max_wait_ms": FETCH_WAIT_MS, **consumer_options}
    consumer = make_consumer(kafka, group_id=None, enable_auto_commit=False, **options)
    return consumer, make_producer(kafka, linger_ms=1)


async def passthrough(kafka: Settings, partitions: int) -> None:
    """Forward until cancelled."""
    consumer, producer = clients(kafka)
    await consumer.start()
    await producer.start()
    try:
        tps = [TopicPartition(SOURCE, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        print(READY, flush=True)
        while True:
            await forward_batch(consumer, producer, SINK)
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    try:
        asyncio.run(passthrough(Settings.from_env(os.environ), int(sys.argv[1])))
    except KeyboardInterrupt:
        pass
