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
record to vt.dead with the error instead of killing the agent, and nothing on that
path can raise (:func:`route_failure`): a poison record costs one dead letter, never
a crash, nor an uncommitted offset that crash-loops the group. Nothing an output
record holds stops a stage either: the :class:`Outbox` sends a record it cannot
encode, or one larger than ``VTSTREAM_KAFKA_MAX_RECORD_BYTES``, to vt.dead instead.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import traceback
import weakref
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Coroutine, MutableMapping, TypeVar

import faust
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from faust.exceptions import ProducerSendError
from faust.streams import _current_event  # the context variable behind faust.current_event()

from topics import DEAD

from pipeline.contracts.quick import quick_init
from pipeline.contracts.wire import DeadLetter, Outgoing, wire_value
from pipeline.errors import RecordError
from pipeline.observe.logs import handling
from pipeline.observe.metrics import Metrics
from pipeline.observe.probes import Readiness
from pipeline.rules.deadletter import dead_letter, minimal_dead_letter
from pipeline.rules.fitting import budget
from pipeline.rules.privacy import UrlPrivacy, scrub
from pipeline.rules.cache import SentRequests
from pipeline.rules.verdicts import Tallies
from pipeline.settings import Settings
from pipeline.settings.groups import DEFAULT_MAX_RECORD_BYTES

log = logging.getLogger("vtstream.kafka.runtime")

#: Most of a handler's traceback the log line shows (scrubbed): a record quoted in an error
#: must not cost the loop more than a dead letter does.
TRACE_CHARS = 16 * 1024

#: Longest a batch holds the event loop before it lets other tasks run. A results batch of
#: 800 answers (2 ms each) held it for 1.6 s: the gateway's calls in flight sat answered
#: but unread, and new ones could not start (``vtstream bench misses``, bench-results.md).
TURN_EVERY_S = 0.01

@quick_init
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
    #: Requests the broker acknowledged to this process's lookup stage (a redelivered requester waits).
    requested: SentRequests = field(default_factory=SentRequests)
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
        await send_dead_letter(out, stage, record.key, record.value, record.ref, ctx.settings.privacy,
                               reason=f"malformed {what}", error=str(exc), error_type=type(exc).__name__)
        return None


#: A stage's handler of one decoded record: (ctx, outbox, the record as read, its typed value).
DecodedHandler = Callable[["Context", "Outbox", "Received", Decoded], Awaitable[None]]
#: What :func:`decoding` gives back: a handler of the raw record, as ``run_batches`` takes it after ``partial(h, ctx)``.
RawHandler = Callable[["Context", "Outbox", "Received"], Coroutine[Any, Any, None]]


def decoding(decode: Callable[[bytes | None], Decoded], *, stage: str,
             what: str) -> Callable[[DecodedHandler[Decoded]], RawHandler]:
    """Make a handler of typed records one of raw records: each is decoded first, and a malformed one
    goes to vt.dead (:func:`decode_or_dead_letter`) instead of reaching the handler."""
    def wrap(handle: DecodedHandler[Decoded]) -> RawHandler:
        @functools.wraps(handle)
        async def handle_raw(ctx: Context, out: Outbox, record: Received) -> None:
            value = await decode_or_dead_letter(ctx, out, record, decode, stage=stage, what=what)
            if value is not None:
                await handle(ctx, out, record, value)
        return handle_raw
    return wrap


async def send_dead_letter(out: "Outbox", stage: str, key: bytes | None, original: bytes | Any, ref: str | None,
                           privacy: UrlPrivacy, *, reason: str, error: str | None = None,
                           error_type: str | None = None, attempts: int = 1) -> None:
    """Send ``original`` to vt.dead; never raises (but for cancellation).

    If the full dead letter cannot be built (the scrubber, the encoder, anything), a
    minimal one goes instead: stage, reason, the error's type, ``ref``, the original's
    length and SHA-256. If even that cannot be sent, the failure is logged and the
    stage moves on: a record that cannot be dead-lettered must not stop its partition.
    Only a producer that fails for every record (the broker gone) is raised: that is
    not the record's doing, and the stage stops so the batch is replayed, uncommitted.
    """
    try:
        letter = dead_letter(original, stage=stage, reason=reason, privacy=privacy, error=error,
                             attempts=attempts, ref=ref, error_type=error_type)
    except Exception as exc:
        log.error("%s: could not build the dead letter of record %s (%s); sending a minimal one",
                  stage, ref, type(exc).__name__)
        letter = _minimal(stage, original, ref, error_type)
    try:
        await out.send(DEAD, key or None, letter)
    except Exception as exc:
        if producer_failed(exc):
            raise
        try:
            await out.send(DEAD, key or None, _minimal(stage, original, ref, error_type))
        except Exception as again:
            if producer_failed(again):
                raise
            log.critical("%s: record %s could not be sent to %s either (%s); it is skipped",
                         stage, ref, DEAD, type(exc).__name__)


def _minimal(stage: str, original: Any, ref: str | None, error_type: str | None,
             reason: str = "the dead letter could not be built") -> DeadLetter:
    return minimal_dead_letter(original if isinstance(original, bytes) else None, stage=stage,
                               reason=reason, error_type=error_type, ref=ref)


def fits(key: bytes | None, value: bytes, limit: int) -> bool:
    """Whether a record of this key and value stays under ``limit`` bytes on the broker."""
    return len(value) <= budget(limit, key)


def producer_failed(exc: BaseException) -> bool:
    """Whether a send failed in the client or the broker for a reason other than the record's size."""
    return isinstance(exc, (KafkaError, ProducerSendError)) and not too_large(exc)


def too_large(exc: BaseException) -> bool:
    """Whether a send failed because the record (or its batch) is larger than Kafka accepts
    (faust wraps the client's error in its own)."""
    return isinstance(exc, MessageSizeTooLargeError) or (
        isinstance(exc, ProducerSendError) and isinstance(exc.__cause__, MessageSizeTooLargeError))


class Outbox:
    """Sends records through a producer and waits for all of them on flush.

    A record it cannot encode, or that is larger than ``limit`` (the client's own
    check and the broker's too), goes to vt.dead as a bounded letter that names its
    size, and the stage moves on.
    """

    def __init__(self, send: Send, watch: Watch = _ignore, *, stage: str = "outbox",
                 limit: int = DEFAULT_MAX_RECORD_BYTES, privacy: UrlPrivacy | None = None) -> None:
        self._send = send
        self._watch = watch
        self._pending: list[Awaitable[Any]] = []
        self._sent: list[tuple[str, bytes | None, bytes] | None] = []
        self._refused: list[tuple[bytes | None, DeadLetter | None, DeadLetter]] = []
        self.stage, self.limit = stage, limit
        self._privacy = privacy or UrlPrivacy()

    @classmethod
    def of(cls, ctx: Context, stage: str) -> "Outbox":
        """An outbox on the faust app's producer, watched by the app's metrics as ``stage``."""
        app = ctx.app
        return cls(lambda topic, key, value: app.producer.send(topic, key, value, None, None, None),
                   ctx.metrics.watcher(stage, ctx.clock), **limits(ctx.settings, stage))

    async def send(self, topic: str, key: bytes | str | None, value: Outgoing) -> Awaitable[Any] | None:
        """Start sending ``value``: a wire record, an output event (a dict) or bytes. Returns the
        broker's acknowledgement of it (None when it went to vt.dead instead)."""
        self._watch(topic, value)
        if isinstance(key, str):
            key = key.encode()
        payload = self._payload(topic, key, value)
        return await self._start(topic, key, payload) if payload is not None else None

    def _payload(self, topic: str, key: bytes | None, value: Outgoing) -> bytes | None:
        """The bytes to send, or None when they went to vt.dead instead (see :meth:`_refuse`)."""
        try:
            payload = wire_value(value)
        except (TypeError, ValueError) as exc:  # orjson's encode error is a TypeError
            self._refuse(topic, key, None, f"cannot be encoded ({exc})", type(exc).__name__)
            return None
        if not fits(key, payload, self.limit):
            self._refuse(topic, key, payload, f"is {len(payload):,} bytes, over VTSTREAM_KAFKA_MAX_RECORD_BYTES "
                         f"({self.limit:,})", "RecordTooLarge")
            return None
        return payload

    async def _start(self, topic: str, key: bytes | None, payload: bytes) -> Awaitable[Any] | None:
        try:
            sent = await self._send(topic, key, payload)
        except Exception as exc:
            if not too_large(exc):
                raise
            self._too_large(topic, key, payload)
            await self._flush_refused()
            return None
        self._pending.append(sent)
        self._sent.append((topic, key, payload))
        return sent

    def _take(self) -> tuple[list[Awaitable[Any]], list[tuple[str, bytes | None, bytes] | None]]:
        """The acks started since the last call, each with its record (None: a batch's, handled by its own)."""
        taken = self._pending, self._sent
        self._pending, self._sent = [], []
        return taken

    async def _settled(self, pending: list[Awaitable[Any]],
                       sent: list[tuple[str, bytes | None, bytes] | None]) -> None:
        """Wait for every ack; a record the broker refuses as too large goes to vt.dead instead,
        any other failure is raised (the producer failed: the batch is replayed)."""
        results = await asyncio.gather(*pending, return_exceptions=True)
        failed: BaseException | None = None
        for record, result in zip(sent, results):
            if not isinstance(result, BaseException):
                continue
            if record is not None and too_large(result):
                self._too_large(*record)
            elif failed is None:
                failed = result
        await self._flush_refused()
        if failed is not None:
            raise failed

    def _too_large(self, topic: str, key: bytes | None, payload: bytes) -> None:
        """Queue the dead letter of a record Kafka refused as too large."""
        self._refuse(topic, key, payload, f"of {len(payload):,} bytes was refused by Kafka as too large",
                     "MessageSizeTooLargeError")

    def _refuse(self, topic: str, key: bytes | None, payload: bytes | None, problem: str, error_type: str) -> None:
        """Queue the dead letter of an output record that cannot be sent as it is: the full one
        (the start of the record, scrubbed) and the minimal one, should the full one be refused too."""
        log.error("%s: an output record for %s %s; it goes to %s instead", self.stage, topic, problem, DEAD)
        reason = f"output record for {topic} {problem}"
        minimal = _minimal(self.stage, payload, None, error_type, reason)
        full: DeadLetter | None = None
        if topic != DEAD:  # never a dead letter of a dead letter: the minimal one goes
            try:
                full = dead_letter(payload, stage=self.stage, reason=reason, privacy=self._privacy,
                                   error_type=error_type)
            except Exception:
                full = None
        self._refused.append((key, full, minimal))

    async def _flush_refused(self) -> None:
        """Send the queued dead letters of refused records; a failure is logged, not raised."""
        refused, self._refused = self._refused, []
        for key, full, minimal in refused:
            for letter in (full, minimal):
                if letter is None:
                    continue
                try:
                    await (await self._send(DEAD, key, letter.to_bytes()))
                    self._watch(DEAD, letter)
                    break
                except Exception as exc:
                    if producer_failed(exc):
                        raise
                    log.error("%s: a dead letter could not be sent (%s)", self.stage, type(exc).__name__)
            else:
                log.critical("%s: no dead letter could be sent for an output record; it is skipped", self.stage)

    async def flush(self) -> None:
        await self._settled(*self._take())


def limits(settings: Settings, stage: str) -> dict[str, Any]:
    """The :class:`Outbox` options these settings give a stage: its name, the record limit, URL privacy."""
    return {"stage": stage, "limit": settings.kafka.max_record_bytes, "privacy": settings.privacy}


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
    """A handler raised: log it and send the record to vt.dead with the error. Never raises.

    The error may quote the record, so the log line and the dead letter get its URL
    secrets scrubbed (the traceback is formatted here for that)."""
    try:
        trace = "".join(traceback.format_exception(exc))
        log.error("%s: unexpected error on record %s\n%s", stage, ref, scrub(trace, privacy, TRACE_CHARS).rstrip())
    except Exception:  # a traceback that cannot be formatted or scrubbed: its type is enough
        log.error("%s: unexpected error on record %s: %s", stage, ref, type(exc).__name__)
    try:
        error = repr(exc)
    except Exception:
        error = type(exc).__name__
    await send_dead_letter(out, stage, key, value, ref, privacy, reason="unexpected error", error=error,
                           error_type=type(exc).__name__)


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
