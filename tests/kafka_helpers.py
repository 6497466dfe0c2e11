"""Plain aiokafka producer/consumer helpers for tests: what any off-the-shelf client would do."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Iterable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


def produce(bootstrap: str, topic: str, records: Iterable[bytes | str | dict[str, Any]],
            key: bytes | None = None) -> int:
    """Send records (bytes as-is, str utf-8, dict as JSON); returns how many."""

    async def run() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                    max_request_size=16 * 1024 * 1024)
        await producer.start()
        n = 0
        try:
            futures = []
            for record in records:
                if isinstance(record, dict):
                    value = orjson.dumps(record)
                elif isinstance(record, str):
                    value = record.encode()
                else:
                    value = record
                futures.append(await producer.send(topic, value, key=key))
                n += 1
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
        return n

    return asyncio.run(run())


def collect(bootstrap: str, topic: str, until: Callable[[list[dict[str, Any]]], bool],
            timeout: float = 60.0, timestamps: bool = False) -> list[dict[str, Any]]:
    """Read ``topic`` from the beginning until ``until(records)`` is true or ``timeout`` passes.

    Records are decoded JSON objects (undecodable values come back as {"_raw": bytes});
    with ``timestamps`` each also gets "_ts", the record's timestamp in ms (its send time).
    """

    async def run() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                    enable_auto_commit=False, group_id=None,
                                    max_partition_fetch_bytes=16 * 1024 * 1024,
                                    fetch_max_bytes=16 * 1024 * 1024)
        await consumer.start()
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for r in records:
                        try:
                            value = orjson.loads(r.value)
                        except orjson.JSONDecodeError:
                            value = {"_raw": r.value}
                        if timestamps:
                            value["_ts"] = r.timestamp
                        out.append(value)
                if until(out):
                    return out
            return out
        finally:
            await consumer.stop()

    return asyncio.run(run())


def summaries(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("kind") == "summary"]


def finals(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Final summaries: not the interim ones of a submitted scan or a spent quota."""
    return [e for e in summaries(events) if not e["summary"].get("pending")]


def wait_finals(bootstrap: str, n: int, timeout: float = 90.0) -> list[dict[str, Any]]:
    """Read indicators.enriched until ``n`` distinct final summaries arrived; fail if they do not.

    Distinct by ``event_id``: a replayed record's duplicate is the same event and counts once.
    """
    def distinct(evs: list[dict[str, Any]]) -> int:
        return len({e["event_id"] for e in finals(evs)})

    events = collect(bootstrap, "indicators.enriched", lambda evs: distinct(evs) >= n, timeout=timeout)
    assert distinct(events) >= n, f"{distinct(events)} of {n} final summaries"
    return events
