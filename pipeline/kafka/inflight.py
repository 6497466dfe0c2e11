"""Many records of a faust stream worked on at once, acknowledged in order.

The gateway waits on VirusTotal: 150-800 ms per answer, while a paid key
allows a call every 50 ms. :func:`run_in_flight` therefore keeps up to
``limit`` records in hand, each in its own task with its own outbox. A record
is acknowledged only once what it caused is produced and every older record
of its partition is acknowledged too (:class:`~pipeline.rules.ack_order.AckOrder`),
so the committed offset never passes unfinished work.

A record delivered again after it was acknowledged, because its commit was
lost (the broker died before the commit reached it, and the group's rejoin
seeks back to the last commit), is acknowledged again without being worked
on: its outputs are on Kafka, and a VirusTotal call for it would be paid
twice. Only this process knows that; a restarted worker redoes such records.

A stop or a rebalance waits for the records in hand: faust holds the
partitions until every received record is acknowledged, a record whose call
is under way finishes it, and one still queued for its start re-parks itself
(the governor gives up when :meth:`Context.must_yield` turns true). When the
agent itself is cancelled, the loop still waits for its tasks before it ends.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from pipeline.kafka.runtime import Context, Handler, Outbox, handle_one, received
from pipeline.rules.ack_order import AckOrder

async def run_in_flight(ctx: Context, stream: Any, stage: str, handler: Handler, limit: int,
                        outbox: Callable[[], Outbox] | None = None) -> None:
    """Feed ``stream``'s events to ``handler``, up to ``limit`` at once; ack each in order after
    its outputs are produced. ``outbox`` makes one outbox per record (default: the app's producer)."""
    new_outbox = outbox or (lambda: Outbox.of(ctx, stage))
    records = ctx.metrics.records.labels(stage)
    manual = stream.noack()
    slots = asyncio.Semaphore(limit)
    flight: AckOrder[Any] = AckOrder()
    tasks: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []

    async def work(event: Any) -> None:
        message = event.message
        try:
            out = new_outbox()
            await handle_one(stage, handler, out, received(event, ctx.clock()), ctx.settings.privacy)
            await out.flush()
        except BaseException as exc:  # outputs not produced: never ack; the agent stops below
            failures.append(exc)
            raise
        finally:
            slots.release()
        for done in flight.finish((message.topic, message.partition), message.offset):
            await manual.ack(done)

    try:
        async for event in manual.events():
            message = event.message
            if flight.released((message.topic, message.partition), message.offset):
                await manual.ack(event)
                continue
            await slots.acquire()
            if failures:
                raise failures[0]
            records.inc()
            flight.start((message.topic, message.partition), message.offset, event)
            task = asyncio.ensure_future(work(event))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        if tasks:
            await asyncio.wait(set(tasks))  # records in hand finish (or re-park) before the agent ends
    if failures:
        raise failures[0]
