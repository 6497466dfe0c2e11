"""API v2 handlers (``/vtapi/v2``): the endpoints the ThreatQ operation calls.

The key comes as the ``apikey`` query parameter or form field. A wrong or
missing key is answered with HTTP 403 and an empty body, and an exhausted quota
with HTTP 204 and an empty body, as v2 did. Report endpoints accept several
resources at once (comma-separated for files, newline-separated for URLs) and
then answer a JSON list, as v2 batch requests did.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from pipeline.devtools.emulator import v2
from pipeline.devtools.emulator.data import canonical_url, sha256_of, valid_domain, valid_hash, valid_ip
from pipeline.devtools.emulator.routes_v3 import MAX_DIRECT_UPLOAD, read_upload, submit_file_scan, submit_url_scan
from pipeline.devtools.emulator.recorded import recorded
from pipeline.devtools.emulator.scans import FileInfo
from pipeline.devtools.emulator.state import EMULATOR_KEY, Emulator, json_response

_SCAN_ID = re.compile(r"^[0-9a-f]{64}-\d{9,11}$")
MAX_BATCH = 25


def _emu(request: web.Request) -> Emulator:
    return request.app[EMULATOR_KEY]


async def _params(request: web.Request) -> dict[str, str]:
    """Query parameters, overlaid with url-encoded or multipart form fields (not files)."""
    params = {k: v for k, v in request.query.items()}
    if request.method == "POST" and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


def _flag(params: dict[str, str], name: str) -> bool:
    return params.get(name, "0").lower() in ("1", "true", "yes")


def _answer(results: list[Any]) -> web.Response:
    """One body, or a JSON list for a batch; items may be pre-encoded (bytes)."""
    if len(results) == 1:
        return json_response(results[0])
    return json_response(b"[" + b",".join(r if isinstance(r, bytes) else orjson.dumps(r) for r in results) + b"]")


def _cached(emu: Emulator, key: tuple[Any, ...], render: Callable[[], dict[str, Any]]) -> bytes:
    """A rendered report from the body cache (facts are immutable, so the key says it all)."""
    body = emu.bodies.get(key)
    if body is None:
        body = orjson.dumps(render())
        emu.bodies.put(key, body)
    return body


async def ip_report(request: web.Request) -> web.Response:
    emu, p = _emu(request), await _params(request)
    if (denied := emu.admit("v2", "object", p.get("apikey"))) is not None:
        return denied
    ip = p.get("ip", "").strip()
    if not valid_ip(ip):
        return json_response({"response_code": -1, "verbose_msg": "Invalid IP address"})
    if (real := recorded("v2", "ip_address", ip)) is not None:
        return json_response(real)
    facts = emu.ip(ip)
    if facts is None:
        return json_response(v2.not_found("ip", ip))
    return json_response(_cached(emu, ("v2ip", ip), lambda: v2.ip_report(facts)))


async def domain_report(request: web.Request) -> web.Response:
    emu, p = _emu(request), await _params(request)
    if (denied := emu.admit("v2", "object", p.get("apikey"))) is not None:
        return denied
    domain = p.get("domain", "").strip().lower().rstrip(".")
    if not valid_domain(domain):
        return json_response({"response_code": -1, "verbose_msg": "Invalid domain"})
    if (real := recorded("v2", "domain", domain)) is not None:
        return json_response(real)
    facts = emu.domain(domain)
    if facts is None:
        return json_response(v2.not_found("domain", domain))
    return json_response(_cached(emu, ("v2domain", domain), lambda: v2.domain_report(facts)))


def _file_one(emu: Emulator, resource: str, allinfo: bool) -> Any:
    now, never = emu.clock(), emu.config.never_complete
    scan = emu.scans.get(resource) if _SCAN_ID.match(resource) else None
    if scan is not None and scan.kind == "file":
        if not emu.scans.done(scan, now, never):
            return v2.queued(resource, scan.scan_id)
        resource_hash = scan.target
    elif valid_hash(resource):
        resource_hash = resource
    elif _SCAN_ID.match(resource):
        resource_hash = resource.split("-", 1)[0]
    else:
        return {"response_code": -1, "resource": resource,
                "verbose_msg": "Invalid resource, check what you are submitting"}
    facts = emu.file(resource_hash)
    if facts is None:
        info = emu.scans.file_info(resource_hash)
        pending = info and emu.scans.pending("file", info.sha256, now, never)
        return v2.queued(resource, pending.scan_id) if pending else v2.not_found("file", resource)
    key = ("v2file", resource, allinfo, facts.sha256, facts.md5, facts.last_analysis_date)
    return _cached(emu, key, lambda: v2.file_report(facts, resource, allinfo=allinfo))


async def file_report(request: web.Request) -> web.Response:
    emu, p = _emu(request), await _params(request)
    resources = [r.strip().lower() for r in p.get("resource", "").split(",") if r.strip()][:MAX_BATCH]
    kind = "analysis" if resources and all(_SCAN_ID.match(r) for r in resources) else "object"
    if (denied := emu.admit("v2", kind, p.get("apikey"))) is not None:
        return denied
    if not resources:
        return json_response({"response_code": -1, "verbose_msg": "Invalid resource, check what you are submitting"})
    return _answer([_file_one(emu, r, _flag(p, "allinfo")) for r in resources])


async def file_scan(request: web.Request) -> web.Response:
    emu = _emu(request)
    if not request.content_type.startswith("multipart/"):
        key = (await _params(request)).get("apikey")
        if (denied := emu.admit("v2", "submission", key)) is not None:
            return denied
        return web.Response(status=400, text="Expected a multipart/form-data body with a 'file' field")
    info, fields, problem = await read_upload(request, MAX_DIRECT_UPLOAD)
    if (denied := emu.admit("v2", "submission", fields.get("apikey") or request.query.get("apikey"))) is not None:
        return denied
    if info is None:
        return web.Response(status=413 if problem and "maximum" in problem else 400, text=problem or "bad upload")
    scan = submit_file_scan(emu, info)
    return json_response(v2.file_scan(info.md5, info.sha1, info.sha256, scan.submitted))


async def file_rescan(request: web.Request) -> web.Response:
    emu, p = _emu(request), await _params(request)
    if (denied := emu.admit("v2", "submission", p.get("apikey"))) is not None:
        return denied
    out: list[dict[str, Any]] = []
    for resource in [r.strip().lower() for r in p.get("resource", "").split(",") if r.strip()][:MAX_BATCH]:
        facts = emu.file(resource) if valid_hash(resource) else None
        if facts is None:
            out.append(v2.not_found("file", resource))
            continue
        scan = submit_file_scan(emu, FileInfo(facts.md5, facts.sha1, facts.sha256, facts.size))
        body = v2.file_scan(facts.md5, facts.sha1, facts.sha256, scan.submitted, rescan=True)
        body["resource"] = resource
        out.append(body)
    return _answer(out or [v2.not_found("file", None)])


async def url_scan(request: web.Request) -> web.Response:
    emu, p = _emu(request), await _params(request)
    if (denied := emu.admit("v2", "submission", p.get("apikey"))) is not None:
        return denied
    out: list[dict[str, Any]] = []
    for raw in [u.strip() for u in p.get("url", "").splitlines() if u.strip()][:MAX_BATCH] or [""]:
        url = canonical_url(raw)
        if url is None:
            out.append({"response_code": -1, "verbose_msg": v2.MSG_INVALID_URL})
            continue
        scan = submit_url_scan(emu, url)
        out.append(v2.url_scan(url, sha256_of(url), scan.submitted, resource=raw))
    return _answer(out)


def _url_one(emu: Emulator, resource: str, allinfo: bool, scan_if_missing: bool) -> Any:
    now, never = emu.clock(), emu.config.never_complete
    scan = emu.scans.get(resource) if _SCAN_ID.match(resource) else None
    if scan is not None and scan.kind == "url":
        if not emu.scans.done(scan, now, never):
            return v2.queued(resource, scan.scan_id)
        url: str | None = scan.target
    elif _SCAN_ID.match(resource):
        url = emu.url_for_id(resource.split("-", 1)[0])
    else:
        url = canonical_url(resource)
    if url is None:
        return {"response_code": -1, "verbose_msg": v2.MSG_INVALID_URL}
    facts = emu.url(url)
    if facts is not None:
        key = ("v2url", resource, allinfo, facts.url, facts.last_analysis_date)
        return _cached(emu, key, lambda: v2.url_report(facts, resource, allinfo=allinfo))
    pending = emu.scans.pending("url", url, now, never)
    if pending is not None:
        return v2.queued(resource, pending.scan_id)
    if scan_if_missing:
        new = submit_url_scan(emu, url)
        return v2.url_scan(url, sha256_of(url), new.submitted, resource=resource)
    return v2.not_found("url", resource)


async def url_report(request: web.Request) -> web.Response:
    emu, p = _emu(request), await _params(request)
    resources = [r.strip() for r in p.get("resource", "").splitlines() if r.strip()][:MAX_BATCH]
    kind = "analysis" if resources and all(_SCAN_ID.match(r) for r in resources) else "object"
    if (denied := emu.admit("v2", kind, p.get("apikey"))) is not None:
        return denied
    if not resources:
        return json_response({"response_code": -1, "verbose_msg": v2.MSG_INVALID_URL})
    allinfo, scan = _flag(p, "allinfo"), _flag(p, "scan")
    return _answer([_url_one(emu, r, allinfo, scan) for r in resources])


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/vtapi/v2/ip-address/report", ip_report)
    r.add_get("/vtapi/v2/domain/report", domain_report)
    for method in ("GET", "POST"):
        r.add_route(method, "/vtapi/v2/file/report", file_report)
        r.add_route(method, "/vtapi/v2/url/report", url_report)
    r.add_post("/vtapi/v2/file/scan", file_scan)
    r.add_post("/vtapi/v2/file/rescan", file_rescan)
    r.add_post("/vtapi/v2/url/scan", url_scan)
