"""`vtstream taxii`: a read-only TAXII 2.1 server over indicators.stix.

One API root (``/vtstream/``) with one collection, discovery at ``/taxii2/``.
Every answer, errors included, is ``application/taxii+json;version=2.1`` with
the specification's error body; writes get 403 (the collection cannot be
written), unknown methods 405, bad parameters and malformed credentials
400, a request that cannot be read before its deadline 503. HTTP Basic from
VTSTREAM_TAXII_USERNAME / PASSWORD; anonymous access only with
VTSTREAM_TAXII_ANONYMOUS; HTTPS with VTSTREAM_TAXII_CERT and VTSTREAM_TAXII_KEY,
required beyond loopback unless VTSTREAM_TAXII_INSECURE. Every request gets a
deadline (VTSTREAM_TAXII_REQUEST_DEADLINE) and a budget of records it may read
(VTSTREAM_TAXII_SCAN_BUDGET).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Awaitable, Callable, Protocol

import orjson
from aiohttp import web
from multidict import MultiMapping

from topics import STIX

from pipeline.errors import InputError
from pipeline.outputs import access
from pipeline.kafka.acls import check_access
from pipeline.outputs.taxii.feed import Feed, FeedBusy, feed_settings
from pipeline.outputs.taxii.paging import DEFAULT_PAGE, MAX_PAGE, Page, Query, decode_cursor, parse_timestamp
from pipeline.settings import Settings

log = logging.getLogger("vtstream.outputs.taxii.server")
#: The prefix of this server's settings, for the messages that name them.
PREFIX = "VTSTREAM_TAXII"

TAXII_MEDIA = "application/taxii+json;version=2.1"
STIX_MEDIA = "application/stix+json;version=2.1"
API_ROOT = "vtstream"
COLLECTION_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "vtstream:indicators.stix"))
#: Largest response the API root promises (a page of MAX_PAGE large objects stays below it).
MAX_CONTENT_LENGTH = 104857600

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Pages(Protocol):
    """What the server reads pages from (:class:`~pipeline.outputs.taxii.feed.Feed`)."""

    async def page(self, query: Query, deadline: float) -> Page: ...


def taxii_json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, headers={"Content-Type": TAXII_MEDIA, **(headers or {})})


def taxii_error(status: int, title: str, description: str, headers: dict[str, str] | None = None) -> web.Response:
    """The TAXII 2.1 error message resource."""
    return taxii_json({"title": title, "description": description, "http_status": str(status)}, status, headers)


def _accepts_taxii(accept: str) -> bool:
    """Accept absent, */*, application/*, or TAXII 2.1 JSON (any version parameter but another number)."""
    if not accept.strip():
        return True
    for part in accept.split(","):
        media, *params = [p.strip().lower() for p in part.split(";")]
        versions = [p.split("=", 1)[1].strip() for p in params if p.startswith("version=")]
        if media in ("*/*", "application/*") or (media == "application/taxii+json"
                                                  and (not versions or versions[0] == "2.1")):
            return True
    return False


def build_app(settings: Settings, feed: Pages, clock: Callable[[], float] = time.monotonic) -> web.Application:
    """The TAXII application: middlewares for errors, auth and media type, then the routes."""
    password = access.read_secret(settings.taxii.password, settings.taxii.password_file, PREFIX)

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPMethodNotAllowed as exc:
            return taxii_error(405, "Method not allowed", f"{request.method} is not supported here",
                               {"Allow": ", ".join(sorted(exc.allowed_methods))})
        except web.HTTPNotFound:
            return taxii_error(404, "Not found", f"no TAXII resource at {request.path}")
        except InputError as exc:
            return taxii_error(400, "Bad request", str(exc))
        except FeedBusy as exc:
            return taxii_error(503, "Service unavailable", str(exc), {"Retry-After": "1"})
        except web.HTTPException as exc:  # aiohttp's own refusals (a body too large, ...): TAXII-shaped too
            return taxii_error(exc.status, exc.reason, exc.text or exc.reason)
        except Exception:  # a bug: answer in TAXII shape and keep serving
            log.exception("TAXII request %s %s failed", request.method, request.path)
            return taxii_error(500, "Internal server error", "the request failed; the server log has the cause")

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not settings.taxii.anonymous and not access.credentials_match(
                request.headers.get("Authorization", ""), settings.taxii.username, password):
            return taxii_error(401, "Unauthorized", "HTTP Basic credentials are required",
                               {"WWW-Authenticate": 'Basic realm="vtstream TAXII", charset="UTF-8"'})
        if request.method == "GET" and not _accepts_taxii(request.headers.get("Accept", "")):
            return taxii_error(406, "Not acceptable", f"this server answers {TAXII_MEDIA}")
        return await handler(request)

    def base_url(request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    def collection_info() -> dict[str, Any]:
        return {"id": COLLECTION_ID, "title": "vtstream enrichments",
                "description": f"STIX 2.1 bundles vtstream published on {STIX}, one per VirusTotal enrichment",
                "can_read": True, "can_write": False, "media_types": [STIX_MEDIA]}

    def check_collection(request: web.Request) -> None:
        if request.match_info["collection"] != COLLECTION_ID:
            raise web.HTTPNotFound()

    async def discovery(request: web.Request) -> web.Response:
        root = f"{base_url(request)}/{API_ROOT}/"
        return taxii_json({"title": "vtstream TAXII 2.1", "description": "VirusTotal enrichments as STIX 2.1",
                           "default": root, "api_roots": [root]})

    async def api_root(request: web.Request) -> web.Response:
        return taxii_json({"title": "vtstream", "description": "VirusTotal enrichments from vtstream",
                           "versions": [TAXII_MEDIA], "max_content_length": MAX_CONTENT_LENGTH})

    async def collections(request: web.Request) -> web.Response:
        return taxii_json({"collections": [collection_info()]})

    async def collection(request: web.Request) -> web.Response:
        check_collection(request)
        return taxii_json(collection_info())

    async def read_page(request: web.Request, ids: frozenset[str] = frozenset()) -> Page:
        check_collection(request)
        deadline = clock() + settings.taxii.request_deadline_s
        page = await feed.page(parse_query(request.query, ids), deadline)
        log.debug("TAXII %s: %d objects, %d records read", request.path_qs, len(page.objects), page.scanned)
        return page

    def page_headers(page: Page) -> dict[str, str]:
        if not page.objects:
            return {}
        return {"X-TAXII-Date-Added-First": page.objects[0].date_added,
                "X-TAXII-Date-Added-Last": page.objects[-1].date_added}

    def envelope(page: Page) -> web.Response:
        body: dict[str, Any] = {"more": page.more}
        if page.next:
            body["next"] = page.next
        if page.objects:
            body["objects"] = [s.obj for s in page.objects]
        return taxii_json(body, headers=page_headers(page))

    async def objects(request: web.Request) -> web.Response:
        return envelope(await read_page(request))

    async def manifest(request: web.Request) -> web.Response:
        page = await read_page(request)
        body: dict[str, Any] = {"more": page.more}
        if page.next:
            body["next"] = page.next
        if page.objects:
            body["objects"] = [{"id": s.obj.get("id"), "date_added": s.date_added, "version": s.version,
                                "media_type": STIX_MEDIA} for s in page.objects]
        return taxii_json(body, headers=page_headers(page))

    async def one_object(request: web.Request) -> web.Response:
        page = await read_page(request, frozenset([request.match_info["object_id"]]))
        if not page.objects and not page.more and not request.query.get("next"):
            return taxii_error(404, "Not found", f"no object {request.match_info['object_id']} in this collection")
        return envelope(page)

    async def read_only(request: web.Request) -> web.Response:
        check_collection(request)
        return taxii_error(403, "Forbidden", "this collection is read-only (can_write is false)")

    app = web.Application(middlewares=[errors, auth])
    objects_path = f"/{API_ROOT}/collections/{{collection}}/objects/"
    app.router.add_get("/taxii2/", discovery)
    app.router.add_get(f"/{API_ROOT}/", api_root)
    app.router.add_get(f"/{API_ROOT}/collections/", collections)
    app.router.add_get(f"/{API_ROOT}/collections/{{collection}}/", collection)
    app.router.add_get(objects_path, objects)
    app.router.add_post(objects_path, read_only)
    app.router.add_get(f"/{API_ROOT}/collections/{{collection}}/manifest/", manifest)
    app.router.add_get(objects_path + "{object_id}/", one_object)
    app.router.add_delete(objects_path + "{object_id}/", read_only)
    return app


def parse_query(params: MultiMapping[str], ids: frozenset[str] = frozenset()) -> Query:
    """The Query of a request's parameters; InputError names the bad one."""
    raw_limit = params.get("limit", str(DEFAULT_PAGE))
    if not (raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 9):
        raise InputError(f"limit must be a whole number from 1, got {raw_limit[:20]!r}")
    limit = min(MAX_PAGE, int(raw_limit))
    if limit < 1:
        raise InputError("limit must be 1 or more")
    wanted_ids = ids or frozenset(v for raw in params.getall("match[id]", []) for v in raw.split(",") if v)
    types = frozenset(v for raw in params.getall("match[type]", []) for v in raw.split(",") if v)
    return Query(added_after_us=parse_timestamp(params["added_after"]) if "added_after" in params else None,
                 ids=wanted_ids, types=types, limit=limit,
                 cursor=decode_cursor(params["next"]) if params.get("next") else {})


async def serve(settings: Settings, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set."""
    password, context = access.checked(settings.taxii, host, PREFIX)
    feed = Feed(settings, STIX)
    await feed.start()  # logs in as the server's own user, or names its settings when it cannot
    runner = web.AppRunner(build_app(settings, feed), access_log=None)
    try:
        await check_access(feed_settings(settings), "taxii")
        await runner.setup()
        await web.TCPSite(runner, host, port, ssl_context=context).start()
        scheme = "https" if context else "http"
        log.info("TAXII 2.1 discovery at %s://%s:%d/taxii2/, collection %s", scheme, host, port, COLLECTION_ID)
        await stop.wait()
    finally:
        await runner.cleanup()
        await feed.stop()
