"""/metrics, /health and /ready on the worker's web port (faust's web server).

- ``/metrics``: :class:`~pipeline.observe.metrics.Metrics` in the Prometheus text format.
- ``/health``: 200 while the event loop turns (the answer is served by that loop).
- ``/ready``: 200 once the worker's consumers have joined their groups and
  the topics they consume exist in the cluster metadata; 503 before that,
  with a JSON body naming what it waits for.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import faust
from faust.web import Request, Response, View

from pipeline.observe.metrics import CONTENT_TYPE, Metrics, OffsetReader


class Readiness:
    """Named conditions a worker waits for before it reports ready; pure bookkeeping."""

    def __init__(self) -> None:
        self._waiting: dict[str, str] = {}
        self._checks: list[Callable[[], list[str]]] = []

    def expect(self, name: str, what: str) -> None:
        """Wait for ``name`` (``what`` is how /ready describes it) until :meth:`done`."""
        self._waiting[name] = what

    def expect_group(self, group: str) -> None:
        """Wait until consumer group ``group`` has assigned this worker its partitions (:meth:`done` with it)."""
        self.expect(group, f"consumer group {group}: first partition assignment")

    def done(self, name: str) -> None:
        self._waiting.pop(name, None)

    def check(self, unmet: Callable[[], list[str]]) -> None:
        """A condition read at each request: ``unmet()`` lists what is still missing."""
        self._checks.append(unmet)

    def waiting_for(self) -> list[str]:
        """What the worker still waits for; empty once it is ready."""
        return [*self._waiting.values(), *(item for unmet in self._checks for item in unmet())]


def missing_topics(app: faust.App, topics: Iterable[str]) -> Callable[[], list[str]]:
    """A readiness check: the consumed topics the faust consumer has no partitions for yet."""
    names = sorted(set(topics))

    def unmet() -> list[str]:
        missing = [t for t in names if not app.consumer.topic_partitions(t)]
        return [f"topics in the cluster metadata: {', '.join(missing)}"] if missing else []

    return unmet


def install(app: faust.App, metrics: Metrics, readiness: Readiness, topics: Iterable[str]) -> None:
    """Register the three pages on ``app``'s web server; ``topics`` are the ones faust consumes."""
    consumed = sorted(set(topics))
    readiness.check(missing_topics(app, consumed))
    metrics.read_offsets(faust_offsets(app, consumed))

    @app.page("/metrics")
    async def metrics_page(self: View, request: Request) -> Response:
        return self.bytes(metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    @app.page("/health")
    async def health_page(self: View, request: Request) -> Response:
        return self.json({"status": "ok"})

    @app.page("/ready")
    async def ready_page(self: View, request: Request) -> Response:
        waiting = readiness.waiting_for()
        body: dict[str, Any] = {"ready": not waiting, "waiting_for": waiting}
        return self.json(body, status=503 if waiting else 200)

    async def joined(*_: Any, **__: Any) -> None:
        readiness.done(app.conf.id)

    readiness.expect_group(app.conf.id)  # faust signals it after the assignment and the tables' recovery
    app.on_rebalance_complete.connect(joined, weak=False)


def faust_offsets(app: faust.App, topics: Iterable[str]) -> OffsetReader:
    """A reader of (end, committed) for the partitions of ``topics`` the faust consumer holds.

    The end is the high water of the consumer's last fetch, which is right on
    every broker (the embedded broker's ListOffsets answers the last batch's base offset + 1,
    not the end).
    """
    names = frozenset(topics)

    def read() -> dict[tuple[str, int], tuple[int, int | None]]:
        consumer: Any = app.consumer
        found: dict[tuple[str, int], tuple[int, int | None]] = {}
        try:
            assigned = consumer.assignment()
        except Exception:  # not started yet, or stopping: nothing in hand
            return found
        for tp in assigned:
            if tp.topic not in names:
                continue
            end = consumer.highwater(tp)
            if end is not None:
                found[(tp.topic, tp.partition)] = (end, consumer._committed_offset.get(tp))
        return found

    return read
