"""The VirusTotal client against the emulator over HTTP: answers, errors, faults, the key."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import aiohttp
import pytest

from pipeline.devtools.emulator import EmulatorConfig, start
from pipeline.rules.indicators import classify
from pipeline.settings import Settings
from pipeline.vt import errors
from pipeline.vt.client import VirusTotalClient

pytestmark = pytest.mark.integration

KEY = "vtstream-demo-key"


async def _free() -> None:
    return None


class Counted:
    """A pace that lets every request through and counts them: the gateway counts requests there."""

    def __init__(self) -> None:
        self.requests = 0

    async def __call__(self) -> None:
        self.requests += 1


def run(scenario: Callable[[VirusTotalClient, Any], Awaitable[Any]], *, key: str = KEY,
        config: dict[str, Any] | None = None, **settings: Any) -> Any:
    """Start an emulator, build a client pointed at it, run ``scenario(client, emulator)``."""

    async def main() -> Any:
        emu = await start(EmulatorConfig(port=0, api_keys=(KEY,), **(config or {})))
        try:
            s = Settings.of(vt_base_url=emu.url, vt_api_key=key, vt_read_timeout_s=2.0, **settings)
            async with VirusTotalClient(s) as client:
                return await scenario(client, emu)
        finally:
            await emu.stop()

    return asyncio.run(main())


async def control(emu: Any, path: str, body: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(emu.url + path, json=body) as resp:
            assert resp.status == 200, await resp.text()


@pytest.mark.parametrize("api", ["v3", "v2"])
@pytest.mark.parametrize("value", ["8.8.8.8", "example.com", "44d88612fea8a8f36de82e1278abb02f",
                                   "http://example.com/"])
def test_found(api, value):
    pace = Counted()
    result = run(lambda vt, _: vt.lookup(classify(value), pace, api=api))
    assert result.status == "found" and pace.requests == 1 and isinstance(result.body, dict)


@pytest.mark.parametrize("api", ["v3", "v2"])
def test_not_found_is_a_result(api):
    result = run(lambda vt, _: vt.lookup(classify("notfound.example.org"), _free, api=api))
    assert result.status == "not_found"


def test_v3_descriptors_in_one_request_and_full_relationships_cost_one_each():
    pace = Counted()
    plain = run(lambda vt, _: vt.lookup(classify("8.8.8.8"), pace, api="v3", relationships=("resolutions", "urls")))
    assert pace.requests == 1
    rels = plain.body["data"]["relationships"]
    assert set(rels) == {"resolutions", "urls"} and "attributes" not in (rels["resolutions"]["data"] or [{}])[0]

    pace = Counted()
    full = run(lambda vt, _: vt.lookup(classify("8.8.8.8"), pace, api="v3", relationships=("resolutions", "urls")),
               vt_relationships=("resolutions",))
    assert pace.requests == 2
    first = full.body["data"]["relationships"]["resolutions"]["data"][0]
    assert "host_name" in first["attributes"]


def test_pace_is_awaited_before_every_request():
    pace = Counted()
    run(lambda vt, _: vt.lookup(classify("example.com"), pace, api="v3", relationships=("resolutions", "urls")),
        vt_relationships=("resolutions", "urls"))
    assert pace.requests == 3


@pytest.mark.parametrize("api, status", [("v3", 401), ("v2", 403)])
def test_wrong_key_is_fatal_and_never_echoed(api, status):
    secret = "wrong-" + "x" * 40

    async def scenario(vt, _):
        with pytest.raises(errors.WrongCredentials) as info:
            await vt.lookup(classify("8.8.8.8"), _free, api=api)
        return info.value

    exc = run(scenario, key=secret)
    assert not exc.retryable and exc.status == status
    assert secret not in str(exc)


@pytest.mark.parametrize("api", ["v3", "v2"])
def test_rate_limit_maps_to_quota_exceeded_with_retry_after(api):
    async def scenario(vt, _):
        await vt.lookup(classify("8.8.8.8"), _free, api=api)
        with pytest.raises(errors.QuotaExceeded) as info:
            await vt.lookup(classify("1.1.1.1"), _free, api=api)
        return info.value

    exc = run(scenario, config={"rate_per_minute": 1, "retry_after_s": 7.0})
    assert exc.retryable
    if api == "v3":
        assert exc.code == "QuotaExceededError" and exc.retry_after == 7.0
    else:
        assert exc.status == 204


@pytest.mark.parametrize("mode, error", [
    ("500", errors.ServerError), ("503", errors.ServerError), ("malformed", errors.MalformedResponse),
    ("truncated", errors.MalformedResponse), ("reset", errors.TransportError),
    ("timeout", errors.TransportError),
])
def test_faults_map_to_retryable_errors(mode, error):
    async def scenario(vt, emu):
        await control(emu, "/_emulator/faults", {"mode": mode, "count": 5})
        with pytest.raises(error) as info:
            await vt.lookup(classify("8.8.8.8"), _free, api="v3")
        return info.value

    exc = run(scenario)
    assert exc.retryable


def test_connection_refused_is_a_transport_error():
    async def main() -> None:
        s = Settings.of(vt_base_url="http://127.0.0.1:1", vt_connect_timeout_s=1.0)
        async with VirusTotalClient(s) as vt:
            with pytest.raises(errors.TransportError):
                await vt.lookup(classify("8.8.8.8"), _free, api="v3")

    asyncio.run(main())


# --- the key goes to VTSTREAM_VT_BASE_URL only, and no answer is read without a cap ----------------

async def _hostile(routes: dict[str, Any]) -> tuple[Any, str, list[dict[str, str]]]:
    """A local server answering ``routes`` (path -> handler); it records the headers it received."""
    from aiohttp import web

    seen: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.StreamResponse:
        seen.append({"path": request.path, **{k.lower(): v for k, v in request.headers.items()}})
        handler = routes.get(request.path)
        return await handler(request) if handler else web.Response(status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}", seen


def _against(routes: Callable[[str], dict[str, Any]], scenario: Callable[[VirusTotalClient], Awaitable[Any]],
             **settings: Any) -> tuple[Any, list[dict[str, str]], list[dict[str, str]]]:
    """Run ``scenario`` against a hostile VirusTotal whose routes may point at a second server (the thief)."""
    async def main() -> Any:
        thief, thief_url, stolen = await _hostile({})
        server, url, seen = await _hostile(routes(thief_url))
        try:
            async with VirusTotalClient(Settings.of(vt_base_url=url, vt_api_key="secret-key-1", **settings)) as vt:
                try:
                    return await scenario(vt), seen, stolen
                except errors.VirusTotalError as exc:
                    return exc, seen, stolen
        finally:
            await server.cleanup()
            await thief.cleanup()

    return asyncio.run(main())


def test_redirects_are_not_followed_with_the_key():
    from aiohttp import web

    def routes(thief: str) -> dict[str, Any]:
        async def redirect(request: web.Request) -> web.Response:
            return web.Response(status=302, headers={"Location": f"{thief}/collect"})
        return {"/api/v3/ip_addresses/8.8.8.8": redirect, "/vtapi/v2/ip-address/report": redirect}

    for api in ("v3", "v2"):
        result, seen, stolen = _against(routes, lambda vt: vt.lookup(classify("8.8.8.8"), _free, api=api))
        assert isinstance(result, errors.Redirected) and not result.retryable
        assert "redirect" in str(result) and "VTSTREAM_VT_BASE_URL" in str(result) and "secret-key-1" not in str(result)
        assert stolen == [] and len(seen) == 1


def test_an_upload_url_on_another_host_gets_neither_the_file_nor_the_key():
    from aiohttp import web

    from pipeline.vt.client import DIRECT_UPLOAD_LIMIT, Upload

    def routes(thief: str) -> dict[str, Any]:
        async def upload_url(request: web.Request) -> web.Response:
            return web.json_response({"data": f"{thief}/_ah/upload/x"})
        return {"/api/v3/files/upload_url": upload_url}

    big = Upload(name="big.bin", size=DIRECT_UPLOAD_LIMIT + 1, content=b"x")
    result, _, stolen = _against(routes, lambda vt: vt.submit_file(big, _free, api="v3"))
    assert isinstance(result, errors.MalformedResponse) and "not to VTSTREAM_VT_BASE_URL" in str(result)
    assert stolen == []


@pytest.mark.parametrize("shape", ["declared", "chunked", "gzip-bomb"])
def test_a_body_over_the_cap_is_an_error_naming_the_setting(shape):
    import gzip

    from aiohttp import web

    cap = 64 * 1024

    def routes(thief: str) -> dict[str, Any]:
        async def huge(request: web.Request) -> web.StreamResponse:
            if shape == "declared":
                return web.Response(body=b"{" + b" " * (cap * 4) + b"}", content_type="application/json")
            if shape == "gzip-bomb":  # 60 KB on the wire, 6 MB once decompressed
                bomb = gzip.compress(b"{" + b" " * (6 * 1024 * 1024) + b"}")
                return web.Response(body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for _ in range(200):
                await response.write(b" " * 4096)
            await response.write_eof()
            return response
        return {"/api/v3/ip_addresses/8.8.8.8": huge}

    result, _, _ = _against(routes, lambda vt: vt.lookup(classify("8.8.8.8"), _free, api="v3"),
                            vt_max_response_bytes=cap)
    assert isinstance(result, errors.ResponseTooLarge) and not result.retryable
    assert "VTSTREAM_VT_MAX_RESPONSE_BYTES allows 65,536" in str(result)


def test_the_key_can_come_from_a_file(tmp_path):
    key_file = tmp_path / "vt-api-key"
    key_file.write_text(KEY + "\n")
    # the wrong key in VTSTREAM_VT_API_KEY shows the file is what is read (from_env refuses both set)
    result = run(lambda vt, _: vt.lookup(classify("8.8.8.8"), _free, api="v3"), key="wrong-key",
                 vt_api_key_file=key_file)
    assert result.status == "found"
