"""The last resort cannot fail, and no output record outgrows Kafka (pipeline.kafka.runtime)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from topics import DEAD, ENRICHED

from pipeline.contracts.wire import DeadLetter
from pipeline.kafka import runtime
from pipeline.kafka.runtime import Outbox, Received, handle_one, route_failure
from pipeline.settings import UrlPrivacy

pytestmark = pytest.mark.unit

PRIVACY = UrlPrivacy()
LIMIT = 256 * 1024


class Broker:
    """A producer's send as the outbox sees it; ``refuse`` decides which records the broker refuses."""

    def __init__(self, refuse_at_send: int | None = None, refuse_at_ack: int | None = None) -> None:
        self.acked: list[tuple[str, bytes]] = []
        self.refuse_at_send, self.refuse_at_ack = refuse_at_send, refuse_at_ack

    async def send(self, topic: str, key: bytes | None, value: bytes) -> asyncio.Future[None]:
        if self.refuse_at_send is not None and len(value) > self.refuse_at_send:
            raise MessageSizeTooLargeError("too large for max_request_size")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.refuse_at_ack is not None and len(value) > self.refuse_at_ack:
            done.set_exception(MessageSizeTooLargeError("MESSAGE_TOO_LARGE"))
        else:
            self.acked.append((topic, value))
            done.set_result(None)
        return done

    def dead(self) -> list[DeadLetter]:
        return [DeadLetter.from_bytes(value) for topic, value in self.acked if topic == DEAD]


def run(broker: Broker, *records: tuple[str, Any]) -> None:
    async def go() -> None:
        out = Outbox(broker.send, stage="results", limit=LIMIT, privacy=PRIVACY)
        for topic, value in records:
            await out.send(topic, b"ip:8.8.8.8", value)
        await out.flush()
    asyncio.run(go())


def test_an_output_over_the_limit_becomes_a_bounded_dead_letter_that_names_its_size():
    huge = {"kind": "attribute", "attribute": {"name": "n", "value": "https://u:hunter2@h.example/ " * 20_000}}
    broker = Broker()
    run(broker, (ENRICHED, huge), (ENRICHED, {"kind": "attribute", "attribute": {"name": "n", "value": "v"}}))
    assert [topic for topic, _ in broker.acked] == [ENRICHED, DEAD]  # the small one went, the huge one did not
    (letter,) = broker.dead()
    encoded = orjson.dumps(huge)
    assert letter.original_length == len(encoded) and letter.original_sha256 == hashlib.sha256(encoded).hexdigest()
    assert f"{len(encoded):,} bytes" in letter.reason and letter.truncated and letter.stage == "results"
    assert "hunter2" not in str(letter)


@pytest.mark.parametrize("broker", [Broker(refuse_at_send=10_000), Broker(refuse_at_ack=10_000)],
                         ids=["client check", "broker refusal"])
def test_message_size_too_large_is_caught_per_record(broker):
    big = b"x" * 20_000
    run(broker, (ENRICHED, b"small"), (ENRICHED, big), (ENRICHED, b"after"))
    assert [value for topic, value in broker.acked if topic == ENRICHED] == [b"small", b"after"]
    (letter,) = broker.dead()
    assert letter.original_length == len(big) and "too large" in letter.reason


def test_an_output_that_cannot_be_encoded_goes_to_vt_dead():
    broker = Broker()
    run(broker, (ENRICHED, {"bad": "\ud800"}))
    (letter,) = broker.dead()
    assert letter.error_type in ("TypeError", "JSONEncodeError") and "cannot be encoded" in letter.reason


def poison(kind: str) -> Any:
    async def handler(out: Outbox, record: Received) -> None:
        if kind == "recursion":
            def deep(n: int) -> int:
                return deep(n + 1)
            deep(0)
        raise ValueError("cannot map https://bob:hunter2@h.example/")
    return handler


@pytest.mark.parametrize("broken", ["nothing", "dead_letter", "scrub", "traceback"])
def test_a_poison_record_costs_one_dead_letter_whatever_breaks_on_the_way(monkeypatch, broken):
    """The handler raises; then building the dead letter (or scrubbing, or formatting the
    traceback) raises too: a minimal letter goes, and handle_one returns."""
    if broken == "dead_letter":
        monkeypatch.setattr(runtime, "dead_letter", lambda *a, **k: 1 / 0)
    elif broken == "scrub":
        monkeypatch.setattr(runtime, "scrub", lambda *a, **k: [].pop())
    elif broken == "traceback":
        monkeypatch.setattr(runtime.traceback, "format_exception", lambda exc: 1 / 0)
    broker = Broker()
    raw = b'{"value": "' + b"a:" * 60_000 + b'"}'

    async def go() -> None:
        out = Outbox(broker.send, limit=LIMIT, privacy=PRIVACY)
        await handle_one("intake", poison("recursion"), out, Received(b"k", raw, "indicators.raw/0/7", 0.0), PRIVACY)
        await out.flush()

    asyncio.run(go())
    (letter,) = broker.dead()
    assert (letter.stage, letter.ref, letter.error_type) == ("intake", "indicators.raw/0/7", "RecursionError")
    assert letter.original_length == len(raw) and letter.original_sha256 == hashlib.sha256(raw).hexdigest()
    assert (letter.original == {}) == (broken == "dead_letter")


def test_route_failure_survives_a_dead_letter_that_cannot_be_sent():
    sent: list[bytes] = []

    async def refuse_once(topic: str, key: bytes | None, value: bytes) -> asyncio.Future[None]:
        if not sent:
            sent.append(b"refused")
            raise ValueError("this letter cannot go")
        sent.append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def go() -> None:
        out = Outbox(refuse_once)
        await route_failure(out, "lookup", b"k", b"\xff\xfe", "vt.lookups/0/1", ValueError("x"), PRIVACY)
        await out.flush()

    asyncio.run(go())
    assert DeadLetter.from_bytes(sent[-1]).original == {}  # the minimal one


def test_a_producer_that_fails_for_every_record_is_not_swallowed():
    """A broker gone is not the record's doing: the stage stops and the batch is replayed."""
    async def gone(topic: str, key: bytes | None, value: bytes) -> asyncio.Future[None]:
        raise KafkaConnectionError("broker gone")

    async def go() -> None:
        await route_failure(Outbox(gone), "lookup", b"k", b"x", "vt.lookups/0/1", ValueError("x"), PRIVACY)

    with pytest.raises(KafkaConnectionError):
        asyncio.run(go())
