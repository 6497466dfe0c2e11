"""The emulator's HTTP server: app assembly, cross-cutting middleware, control endpoints.

Middleware, in order, for every API request (``/api/v3``, ``/vtapi/v2``, ``/_upload``):
``latency_ms`` sleep -> fault injection -> handler (which authenticates and
applies the quota gate through :meth:`Emulator.admit`) -> status counting.
Control endpoints under ``/_emulator`` need no key and are never faulted,
delayed, limited or counted:

- ``GET  /_emulator/stats``   counters (see ``control.Stats.snapshot``)
- ``GET  /_emulator/requests``  the last API requests as received (``control.RequestLog``)
- ``POST /_emulator/reset``   forget counters, quota windows, analyses, faults, caches
- ``GET|POST /_emulator/config``  read / change runtime settings (JSON object)
- ``GET|POST /_emulator/faults``  read / set ``{"mode", "count", "match"}``
- ``GET|POST /_emulator/verdicts``  read / set an indicator's verdict ``{"type", "value", "positives"}``
  (``emulator.verdicts``: verdicts that change)
- ``GET  /_emulator/health``  ``{"ok": true}``
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from pipeline.devtools.emulator import routes_v2, routes_v3
from pipeline.devtools.emulator.state import EMULATOR_KEY, Emulator, EmulatorConfig, json_response
from pipeline.devtools.emulator.v3 import error

#: How long the "timeout" fault stalls before answering; longer than any sane client timeout.
TIMEOUT_FAULT_S = 120.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _api(path: str) -> str | None:
    if path.startswith("/api/v3") or path.startswith("/_upload/"):
        return "v3"
    if path.startswith("/vtapi/v2"):
        return "v2"
    return None


async def _inject(fault: str, api: str, request: web.Request, handler: Handler,
                  retry_after_s: float | None = None) -> web.StreamResponse:
    """Answer ``request`` the way fault ``fault`` says."""
    if fault == "timeout":
        await asyncio.sleep(TIMEOUT_FAULT_S)
        return await handler(request)
    if fault in ("500", "503"):
        if api == "v2":
            return web.Response(status=int(fault), text="Internal Server Error" if fault == "500" else "Service Unavailable")
        code = "InternalError" if fault == "500" else "TransientError"
        return json_response(error(code, "Injected fault"), int(fault))
    if fault == "429":
        headers = {"Retry-After": f"{retry_after_s:g}"} if retry_after_s is not None else {}
        if api == "v2":
            return web.Response(status=204, headers=headers)
        response = json_response(error("QuotaExceededError", "Quota exceeded"), 429)
        response.headers.update(headers)
        return response
    if fault == "401":
        if api == "v2":
            return web.Response(status=403)
        return json_response(error("WrongCredentialsError", "Wrong API key"), 401)
    if fault == "malformed":
        return web.Response(body=b"<html><body>502 Bad Gateway</body></html>", status=200, content_type="application/json")
    body = orjson.dumps({"data": {"type": "error", "id": "truncated", "attributes": {"padding": "x" * 512}}})
    if fault == "truncated":
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                       "Content-Length": str(len(body))})
        await resp.prepare(request)
        await resp.write(body[: len(body) // 2])
        _close(request)
        return resp
    # "reset": drop the connection without answering
    _close(request)
    return web.Response(status=500)   # never reaches the client


def _close(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    api = _api(request.path)
    if api is None:
        return await handler(request)
    emu = request.app[EMULATOR_KEY]
    body = b""
    if request.content_type in ("application/x-www-form-urlencoded", "application/json"):
        body = await request.read()  # kept by aiohttp for the handler's post() / json()
    emu.requests.add(request.method, request.path_qs, body.decode("utf-8", "replace"))
    emu.stats.in_flight += 1
    emu.stats.max_in_flight = max(emu.stats.max_in_flight, emu.stats.in_flight)
    try:
        return await _answer(emu, api, request, handler)
    finally:
        emu.stats.in_flight -= 1


async def _answer(emu: Emulator, api: str, request: web.Request, handler: Handler) -> web.StreamResponse:
    """``latency_ms``, then a fault or the handler; requests are answered concurrently."""
    if emu.config.latency_ms > 0:
        await asyncio.sleep(emu.config.latency_ms / 1000)
    fault = emu.faults.take(request.path)
    if fault is not None:
        emu.stats.faults_injected += 1
        return await _inject(fault, api, request, handler, emu.config.retry_after_s)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        emu.stats.statuses[exc.status] += 1
        if api == "v3" and exc.status in (404, 405):
            return json_response(error("NotFoundError", f"Unknown endpoint {request.method} {request.path}"), exc.status)
        raise
    emu.stats.statuses[response.status] += 1
    return response


# --------------------------------------------------------------------------- control endpoints

async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    data = orjson.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


async def stats(request: web.Request) -> web.Response:
    emu = request.app[EMULATOR_KEY]
    body = emu.stats.snapshot(emu.gate, emu.clock())
    body["faults"] = emu.faults.describe()
    body["config"] = emu.config_dict()
    return json_response(body)


async def requests_log(request: web.Request) -> web.Response:
    return json_response(list(request.app[EMULATOR_KEY].requests.entries))


async def reset(request: web.Request) -> web.Response:
    request.app[EMULATOR_KEY].reset()
    return json_response({"ok": True})


async def config_endpoint(request: web.Request) -> web.Response:
    emu = request.app[EMULATOR_KEY]
    if request.method == "POST":
        try:
            emu.update_config(await _json_body(request))
        except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
            return json_response({"error": str(exc)}, 400)
    return json_response(emu.config_dict())


async def faults(request: web.Request) -> web.Response:
    emu = request.app[EMULATOR_KEY]
    if request.method == "POST":
        try:
            emu.faults.set(await _json_body(request))
        except (ValueError, orjson.JSONDecodeError) as exc:
            return json_response({"error": str(exc)}, 400)
    return json_response(emu.faults.describe())


async def verdicts(request: web.Request) -> web.Response:
    emu = request.app[EMULATOR_KEY]
    if request.method == "POST":
        try:
            emu.set_verdict(await _json_body(request))
        except (ValueError, orjson.JSONDecodeError) as exc:
            return json_response({"error": str(exc)}, 400)
    return json_response(emu.verdicts.listed())


async def health(request: web.Request) -> web.Response:
    return json_response({"ok": True})


# --------------------------------------------------------------------------- assembly

def create_app(config: EmulatorConfig, *, clock: Callable[[], float] | None = None) -> web.Application:
    """The emulator as an aiohttp application (not yet listening).

    >>> app = create_app(EmulatorConfig(port=0))
    >>> isinstance(app, web.Application)
    True
    """
    emu = Emulator(config) if clock is None else Emulator(config, clock=clock)
    app = web.Application(middlewares=[api_middleware], client_max_size=4 * 1024 * 1024)
    app[EMULATOR_KEY] = emu
    routes_v3.add_routes(app)
    routes_v2.add_routes(app)
    app.router.add_get("/_emulator/stats", stats)
    app.router.add_get("/_emulator/requests", requests_log)
    app.router.add_post("/_emulator/reset", reset)
    app.router.add_route("GET", "/_emulator/config", config_endpoint)
    app.router.add_route("POST", "/_emulator/config", config_endpoint)
    app.router.add_route("GET", "/_emulator/faults", faults)
    app.router.add_route("POST", "/_emulator/faults", faults)
    app.router.add_route("GET", "/_emulator/verdicts", verdicts)
    app.router.add_route("POST", "/_emulator/verdicts", verdicts)
    app.router.add_get("/_emulator/health", health)
    return app


@dataclass
class RunningEmulator:
    """A started emulator: its base URL (``http://host:port``), port, state, and how to stop it."""

    runner: web.AppRunner
    host: str
    port: int
    emulator: Emulator

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start(config: EmulatorConfig, *, clock: Callable[[], float] | None = None) -> RunningEmulator:
    """Start listening (``port=0`` picks a free port) and return without blocking."""
    app = create_app(config, clock=clock)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5,
                           handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    port = config.port
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        port = server.sockets[0].getsockname()[1]
    return RunningEmulator(runner, config.host, port, app[EMULATOR_KEY])


async def serve(config: EmulatorConfig) -> None:
    """Run until cancelled. Prints one line when ready:
    ``vtstream emulator listening on http://host:port (api v3 + v2)``.
    """
    running = await start(config)
    print(f"vtstream emulator listening on {running.url} (api v3 + v2)", flush=True)
    sys.stdout.flush()
    try:
        await asyncio.Event().wait()
    finally:
        await running.stop()
