"""What a stage runs with in a unit test: a :class:`Context` over plain dicts and a typed fake app.

Stage unit tests build their context here, never by hand, so a field added to
``Context`` is added once, and mypy checks every test's arguments.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, MutableMapping, cast

import faust

from pipeline.kafka.runtime import Context
from pipeline.mapping.apply import MappingSet
from pipeline.rules.verdicts import Tallies
from pipeline.settings import Settings


class FakeProducer:
    """faust's producer as ``Outbox.of`` uses it: send(topic, key, value, ...) -> a future of the ack,
    resolved at once; ``fail`` makes every send raise, as a broker that is gone does."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.fail = fail

    async def send(self, topic: str, key: bytes | None, value: bytes, *_: Any) -> asyncio.Future[None]:
        if self.fail:
            raise ConnectionError("broker gone")
        self.sent.append((topic, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class FakeApp:
    """The part of ``faust.App`` a stage reads while it handles records: whether a rebalance or a
    shutdown is waiting (``Context.must_yield``), and the producer an outbox of the app sends with.
    A test flips ``rebalancing`` or ``should_stop`` to hand a partition over mid-record."""

    def __init__(self, *, rebalancing: bool = False, should_stop: bool = False,
                 producer: FakeProducer | None = None) -> None:
        self.rebalancing, self.should_stop = rebalancing, should_stop
        self.producer = producer or FakeProducer()


def stage_context(settings: Settings | None = None, *, app: FakeApp | None = None,
                  cache: MutableMapping[bytes, bytes] | None = None, mappings: MappingSet | None = None,
                  clock: Callable[[], float] = time.time, sightings: Tallies | None = None) -> Context:
    """A stage's context with no broker: default ``Settings()`` unless given, tables as dicts, no topics,
    no mappings unless given (stages that map answers need ``load_mappings(settings.mappings_dir)``)."""
    return Context(settings=settings or Settings(),
                   app=cast(faust.App, app or FakeApp()),  # the fake has just what the stages read of an app
                   topics={}, cache={} if cache is None else cache, quota={}, mappings=mappings, clock=clock,
                   sightings=sightings or Tallies())
