"""Plain aiokafka producer/consumer helpers for tests: what any off-the-shelf client would do."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, Callable, Iterable

import orjson
from aiokafka import AIOKafkaConsumer

from pipeline.devtools import rig
from topics import ENRICHED


def produce(bootstrap: str, topic: str, records: Iterable[bytes | str | dict[str, Any]],
            key: bytes | None = None) -> int:
    """Send records (bytes as-is, str utf-8, dict as JSON) and wait for their acks; returns how many."""
    values = [orjson.dumps(r) if isinstance(r, dict) else r.encode() if isinstance(r, str) else r for r in records]
    return asyncio.run(rig.produce(bootstrap, topic, values, key=key))


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

    events = collect(bootstrap, ENRICHED, lambda evs: distinct(evs) >= n, timeout=timeout)
    assert distinct(events) >= n, f"{distinct(events)} of {n} final summaries"
    return events


def stream_of(unique: int, repeats: int, seed: int = 1) -> list[bytes]:
    """Inputs over ``unique`` routable IPs and domains, each seen ``repeats`` times, shuffled."""
    values = [f"23.{i // 60000}.{(i // 250) % 240}.{i % 250 + 1}" if i % 2 else f"host-{i}.example.net"
              for i in range(unique)]
    records = [orjson.dumps({"value": v, "id": f"{v}#{n}"}) for v in values for n in range(repeats)]
    random.Random(seed).shuffle(records)
    return records


def assert_every_input_answered_once_per_id(events: list[dict], inputs: int) -> None:
    answered = {e["origin"]["id"] for e in summaries(events)}
    assert len(answered) == inputs, f"{inputs - len(answered)} inputs have no summary"
    seen: dict[str, dict] = {}
    for event in events:  # a duplicate from a replay is the same event
        body = {k: v for k, v in event.items() if k != "enriched_at"}
        assert seen.setdefault(event["event_id"], body) == body


def ids_answered(events: list[dict]) -> int:
    return len({e["origin"]["id"] for e in summaries(events)})
