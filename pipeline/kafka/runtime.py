"""What every stage shares at run time: the context, the outbox, the batch loop.

Every stage handles a record through one signature, :data:`Handler`:
``(outbox, received)``, its dependencies bound when the stage is installed
(``functools.partial(handle, ctx)``), and every loop takes the same step per
record (:func:`handle_one`); this module
owns the faust plumbing around them. The rule it enforces: forward first,
then ack. A batch's outputs are all produced and acknowledged by the broker
(:meth:`Outbox.flush`) before its events are acked, so a crash at any point
replays work instead of losing it. Acks are manual (``noack_take``,
``noack()``): faust's acking iterators ack the current event in a
``finally``, so an agent cancelled by a graceful stop would otherwise commit
records whose outputs were never produced. A handler that raises sends its
record to vt.dead with the error instead of killing the agent.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
import weakref
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, MutableMapping, TypeVar

import faust
from faust.streams import _current_event  # the context variable behind faust.current_event()

from topics import DEAD

from pipeline.contracts.wire import Outgoing, wire_value
from pipeline.errors import RecordError
from pipeline.observe.logs import handling
from pipeline.observe.metrics import Metrics
from pipeline.observe.probes import Readiness
from pipeline.rules.deadletter import dead_letter
from pipeline.rules.privacy import UrlPrivacy, scrub
from pipeline.rules.verdicts import Tallies
from pipeline.settings import Settings

log = logging.getLogger("vtstream.kafka.runtime")

#: Longest a batch holds the event loop before it lets other tasks run. A results batch of
#: 800 answers (2 ms each) held it for 1.6 s: the gateway's calls in flight sat answered
#: but unread, and new ones could not start (``vtstream bench misses``, bench-results.md).
TURN_EVERY_S = 0.01

@dataclass(frozen=True, slots=True)
class Received:
    """One input record as every stage sees it: its key and value, where it came from
    (``ref``: topic/partition/offset) and the clock reading when it was taken (``now``)."""

    key: bytes
    value: bytes | None
    ref: str
    now: float


#: The one stage contract: handle one record, sending what it causes through the outbox.
Handler = Callable[["Outbox", Received], Awaitable[None]]


@dataclass
class Context:
    """Dependencies handed to every stage; built by :func:`pipeline.app.create_app`."""

    settings: Settings
    app: faust.App
    topics: dict[str, Any]
    cache: MutableMapping[bytes, bytes]
    quota: MutableMapping[bytes, bytes]
    mappings: Any
    clock: Callable[[], float] = time.time
    #: The verdict table (pipeline.rules.verdicts), co-partitioned with the cache; a dict when verdict changes are off.
    verdicts: MutableMapping[bytes, bytes] = field(default_factory=dict)
    #: Live sightings answered from the cache, counted until the sightings stage sends them.
    sightings: Tallies = field(default_factory=Tallies)
    batch_size: int = 1000
    batch_within: float = 0.01
    metrics: Metrics = field(default_factory=Metrics)
    readiness: Readiness = field(default_factory=Readiness)

    def must_yield(self) -> bool:
        """True while a rebalance or a shutdown waits for held records: re-park them now."""
        return bool(self.app.rebalancing or self.app.should_stop)


#: Starts sending one record, (topic, key, value) -> a future that resolves on the broker's ack.
Send = Callable[[str, "bytes | None", bytes], Awaitable[Awaitable[Any]]]
#: Sees every record an outbox sends, (topic, value) before encoding: the metrics' view of the run.
Watch = Callable[[str, Any], None]


def _ignore(topic: str, value: Any) -> None:
    pass


Decoded = TypeVar("Decoded")


async def decode_or_dead_letter(ctx: "Context", out: "Outbox", record: "Received",
                                decode: Callable[[bytes | None], Decoded], *, stage: str,
                                what: str) -> Decoded | None:
    """The decoded record, or None once the malformed bytes are on vt.dead, naming the field at fault."""
    try:
        return decode(record.value)
    except RecordError as exc:
        await out.send(DEAD, record.key, dead_letter(record.value, stage=stage, reason=f"malformed {what}",
                                                     error=str(exc), privacy=ctx.settings.privacy))
        return None


class Outbox:
    """Sends records through a producer and waits for all of them on flush."""

    def __init__(self, send: Send, watch: Watch = _ignore) -> None:
        self._send = send
        self._watch = watch
        self._pending: list[Awaitable[Any]] = []

    @classmethod
    def of(cls, ctx: Context, stage: str) -> "Outbox":
        """An outbox on the faust app's producer, watched by the app's metrics as ``stage``."""
        app = ctx.app
        return cls(lambda topic, key, value: app.producer.send(topic, key, value, None, None, None),
                   ctx.metrics.watcher(stage, ctx.clock))

    async def send(self, topic: str, key: bytes | str | None, value: Outgoing) -> None:
        """Start sending ``value``: a wire record, an output event (a dict) or bytes."""
        self._watch(topic, value)
        if isinstance(key, str):
            key = key.encode()
        self._pending.append(await self._send(topic, key, wire_value(value)))

    async def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            await asyncio.gather(*pending)


async def run_batches(ctx: Context, stream: Any, stage: str, handler: Handler, out: Outbox | None = None) -> None:
    """Feed each event of ``stream`` to ``handler`` (with the batch's clock reading); flush
    outputs (through ``out``, default the app's producer) before the batch is acked."""
    out = out or Outbox.of(ctx, stage)
    records = ctx.metrics.records.labels(stage)
    async for batch in stream.noack_take(ctx.batch_size, within=ctx.batch_within):
        now = ctx.clock()
        records.inc(len(batch))
        turn_at = time.perf_counter() + TURN_EVERY_S
        for event in batch:
            if time.perf_counter() >= turn_at:  # let the other stages' tasks run
                await asyncio.sleep(0)
                turn_at = time.perf_counter() + TURN_EVERY_S
            # Table writes read faust's "current event" (the RocksDB store picks its
            # partition database by it); a batch has none of its own. Only the context
            # variable is set: Stream.current_event belongs to noack_take's buffer task.
            _current_event.set(weakref.ref(event))
            await handle_one(stage, handler, out, received(event, now), ctx.settings.privacy)
        _current_event.set(None)
        handling(stage, None)
        await out.flush()
        for event in batch:
            await stream.ack(event)


async def run_each(ctx: Context, stream: Any, stage: str, handler: Handler) -> None:
    """Like :func:`run_batches`, one event at a time: for stages that wait (gateway, retry
    tiers), so each record is acknowledged as soon as what it caused is produced."""
    out = Outbox.of(ctx, stage)
    records = ctx.metrics.records.labels(stage)
    manual = stream.noack()
    async for event in manual.events():
        records.inc()
        await handle_one(stage, handler, out, received(event, ctx.clock()), ctx.settings.privacy)
        handling(stage, None)
        await out.flush()
        await manual.ack(event)


async def route_failure(out: Outbox, stage: str, key: bytes, value: bytes | None, ref: str,
                        exc: Exception, privacy: UrlPrivacy) -> None:
    """A handler raised: log it and send the record to vt.dead with the error.

    The error may quote the record, so the log line and the dead letter get its URL
    secrets scrubbed (the traceback is formatted here for that)."""
    trace = "".join(traceback.format_exception(exc))
    log.error("%s: unexpected error on record %s\n%s", stage, ref, scrub(trace, privacy).rstrip())
    await out.send(DEAD, key or None, dead_letter(value, stage=stage, reason="unexpected error",
                                                  error=repr(exc), privacy=privacy))


def received(event: Any, now: float) -> Received:
    """A faust event as the stage contract's :class:`Received` (``ref``: a stable name for the record)."""
    message = event.message
    return Received(event.key or b"", event.value, f"{message.topic}/{message.partition}/{message.offset}", now)


async def handle_one(stage: str, handler: Handler, out: Outbox, record: Received, privacy: UrlPrivacy) -> None:
    """The one step every stage loop takes per record: handle it, and route a failure to vt.dead
    instead of letting it stop the loop. Log lines name the record while it is handled."""
    handling(stage, record.key)
    try:
        await handler(out, record)
    except Exception as exc:  # route, never crash the loop
        await route_failure(out, stage, record.key, record.value, record.ref, exc, privacy)
