"""`vtstream misp-feed`: a read-only HTTP server of a MISP feed built from indicators.enriched.

MISP pulls three things from a feed URL: ``/manifest.json`` (every event's
uuid and ``timestamp``), ``/hashes.csv`` (an MD5 per attribute value, for
MISP's feed cache and correlation) and ``/<event uuid>.json`` (one event).
A background reader folds ``indicators.enriched`` into the per-day state
(:mod:`pipeline.outputs.misp.feed`) from the first day served onwards, a
bounded batch at a time, and keeps following it; requests only render that
state, so their work is bounded by one day's event. Until the first pass
has read the topic to its end, every path answers 503 with ``Retry-After``
rather than an incomplete feed.

Access as for ``vtstream taxii`` (:mod:`pipeline.outputs.access`): HTTP
Basic from VTSTREAM_MISP_FEED_USERNAME / PASSWORD (or PASSWORD_FILE),
anonymous only with VTSTREAM_MISP_FEED_ANONYMOUS, HTTPS with
VTSTREAM_MISP_FEED_CERT and KEY, and no plain HTTP beyond loopback unless
VTSTREAM_MISP_FEED_INSECURE.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from typing import Awaitable, Callable

import orjson
from aiohttp import web
from aiokafka import TopicPartition

from topics import ENRICHED

from pipeline.errors import InputError
from pipeline.outputs import access
from pipeline.outputs.misp.feed import Day, FeedState
from pipeline.outputs.misp.render import event, hash_lines, manifest_entry
from pipeline.outputs.topic_reader import TopicReader
from pipeline.settings import Settings

log = logging.getLogger("vtstream.outputs.misp.server")

PREFIX = "VTSTREAM_MISP_FEED"
#: Records the reader folds per fetch; between fetches requests are answered.
READ_BATCH = 500
#: Rendered events kept for repeated requests (MISP pulls a changed event right after the manifest);
#: a full day (VTSTREAM_MISP_FEED_MAX_INDICATORS at its default) renders to about 30 MB.
RENDERED = 2
_EVENT_PATH = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Clock = Callable[[], float]


class Tail:
    """Keeps a :class:`FeedState` up to date from the topic, a batch at a time, from the window's first day on.

    Caught up (:attr:`ready`) once a poll comes back empty with every partition at or past the end offset
    the broker reports: the end offset alone is not trusted to be exact (the embedded test broker
    under-reports it after multi-record batches), an empty poll alone could be a slow fetch.
    """

    def __init__(self, reader: TopicReader, state: FeedState, clock: Clock = time.time,
                 refresh_s: float = 60.0) -> None:
        self.reader, self.state, self.clock, self.refresh_s = reader, state, clock, refresh_s
        self.ready = asyncio.Event()
        self.records = 0
        self._partitions: list[TopicPartition] = []
        self._refreshed = 0.0

    async def _follow_new_partitions(self) -> None:
        """Follow every partition of the topic; one seen first starts at the window's first day."""
        self._refreshed = time.monotonic()
        partitions = await self.reader.partitions()
        if partitions == self._partitions:
            return
        starts = {tp: await self.reader.position(tp) for tp in self._partitions}
        for tp in partitions:
            if tp not in starts:
                starts[tp] = await self.reader.offset_at(tp, self.state.window_start_ms(self.clock()))
        self.reader.follow(starts)
        self._partitions = partitions

    async def step(self) -> int:
        """Fold the next batch; how many records it held (0: nothing came in time). Every ``refresh_s``
        also: drop the days that left the window, follow new partitions, and say how far a catch-up is."""
        if not self._partitions or time.monotonic() - self._refreshed > self.refresh_s:
            if self._partitions and not self.ready.is_set():
                log.info("MISP feed still reading %s: %d records so far", self.reader.topic, self.records)
            self.state.prune(self.clock())
            await self._follow_new_partitions()
        if not self._partitions:  # nothing was ever published to the topic
            await asyncio.sleep(1)
            return 0
        batch = await self.reader.poll()
        for record in batch:
            try:
                self.state.fold(record.value, record.timestamp, self.clock())
            except Exception:  # folding never raises on any record (tested); never let one stop the feed
                log.exception("record %s/%d/%d not folded", record.topic, record.partition, record.offset)
        self.records += len(batch)
        return len(batch)

    async def _at_end(self) -> bool:
        for tp in self._partitions:
            if await self.reader.position(tp) < await self.reader.end(tp):
                return False
        return True

    async def run(self) -> None:
        """Follow the topic until cancelled; a failing read is logged and tried again."""
        started = time.monotonic()
        while True:
            try:
                if await self.step():
                    continue
                if not self.ready.is_set() and await self._at_end():
                    days = self.state.served()
                    log.info("MISP feed caught up: %d records, %d indicators over %d days, in %.1f s",
                             self.records, sum(len(d.entries) for d in days), len(days), time.monotonic() - started)
                    self.ready.set()
            except Exception:
                log.exception("reading %s failed; trying again in 5 s", self.reader.topic)
                await asyncio.sleep(5)


def _event_json(day: Day, indicator_at: int) -> bytes:
    return orjson.dumps(event(day, indicator_at))


def _hashes_csv(day: Day, indicator_at: int) -> bytes:
    return "".join(hash_lines(day, indicator_at)).encode()


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return _json({"error": message, "status": status}, status, headers)


def build_app(settings: Settings, state: FeedState, tail: Tail, password: str) -> web.Application:
    """The feed application: errors, access and readiness first, then the three resources."""
    rendered: OrderedDict[tuple[str, int], bytes] = OrderedDict()

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPMethodNotAllowed as exc:
            return _error(405, f"{request.method} is not supported: this feed is read-only",
                          {"Allow": ", ".join(sorted(exc.allowed_methods))})
        except web.HTTPException as exc:
            if exc.status >= 500:
                raise
            return _error(exc.status, exc.reason)

    @web.middleware
    async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            allowed = settings.misp_feed.anonymous or access.credentials_match(
                request.headers.get("Authorization", ""), settings.misp_feed.username, password)
        except InputError as exc:
            return _error(400, str(exc))
        if not allowed:
            return _error(401, "HTTP Basic credentials are required",
                          {"WWW-Authenticate": 'Basic realm="vtstream MISP feed", charset="UTF-8"'})
        if not tail.ready.is_set():
            return _error(503, f"the feed is still reading {ENRICHED}; try again shortly", {"Retry-After": "10"})
        return await handler(request)

    async def manifest(request: web.Request) -> web.Response:
        return _json({day.uuid: manifest_entry(day) for day in state.served()})

    async def hashes(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8"})
        await response.prepare(request)
        for day in state.served():  # one day at a time, rendered in a thread from a copy
            await response.write(await asyncio.to_thread(_hashes_csv, day.snapshot(), state.indicator_at))
        await response.write_eof()
        return response

    async def one_event(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        day = state.find(name) if _EVENT_PATH.fullmatch(name) else None
        if day is None:
            return _error(404, f"no event {name[:40]!r} in this feed")
        key = (day.uuid, day.version)
        body = rendered.get(key)
        if body is None:  # a day of thousands of indicators takes a second: in a thread, from a copy
            body = rendered[key] = await asyncio.to_thread(_event_json, day.snapshot(), state.indicator_at)
            while len(rendered) > RENDERED:
                rendered.popitem(last=False)
        return web.Response(body=body, content_type="application/json")

    app = web.Application(middlewares=[errors, gate])
    # MISP asks for <feed URL> + "/manifest.json": a feed URL entered with a trailing slash gives "//"
    app.router.add_get("/{lead:/*}manifest.json", manifest)
    app.router.add_get("/{lead:/*}hashes.csv", hashes)
    app.router.add_get("/{lead:/*}{name:[^/]+}.json", one_event)
    return app


async def serve(settings: Settings, host: str, port: int, stop: asyncio.Event, clock: Clock = time.time) -> None:
    """Check access settings, start reading, serve until ``stop`` is set."""
    password, context = access.checked(settings.misp_feed, host, PREFIX)
    state = FeedState(app_id=settings.app_id, days=settings.misp_feed.days,
                      max_indicators=settings.misp_feed.max_indicators, indicator_at=settings.outputs.stix_indicator_at,
                      privacy=settings.privacy)
    reader = TopicReader(settings, ENRICHED, batch=READ_BATCH)
    await reader.start()
    tail = Tail(reader, state, clock)
    following = asyncio.create_task(tail.run())
    runner = web.AppRunner(build_app(settings, state, tail, password), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=context).start()
        log.info("MISP feed at %s://%s:%d/manifest.json: %s from %s on, %d days", "https" if context else "http",
                 host, port, ENRICHED, state.first_day(clock()), settings.misp_feed.days)
        await stop.wait()
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await runner.cleanup()
        await reader.stop()
