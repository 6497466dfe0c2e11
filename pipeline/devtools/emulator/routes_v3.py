"""API v3 handlers (``/api/v3``): objects, relationships, submissions, analyses, uploads."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

from pipeline.devtools.emulator import v3
from pipeline.devtools.emulator.data import canonical_url, sha256_of, valid_domain, valid_hash, valid_ip
from pipeline.devtools.emulator.netdata import url_facts
from pipeline.devtools.emulator.recorded import recorded
from pipeline.devtools.emulator.filedata import file_analysis_id, file_facts
from pipeline.devtools.emulator.scans import FileInfo, Scan
from pipeline.devtools.emulator.state import EMULATOR_KEY, Emulator, json_response
from pipeline.devtools.emulator.v3 import error

MAX_DIRECT_UPLOAD = 32 * 1024 * 1024
MAX_LARGE_UPLOAD = 650 * 1024 * 1024
MAX_LIMIT = 40

_KIND = {"ip_addresses": "ip_address", "domains": "domain", "files": "file", "urls": "url"}


def _emu(request: web.Request) -> Emulator:
    return request.app[EMULATOR_KEY]


def _base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}/api/v3"


def _bad(message: str) -> web.Response:
    return json_response(error("InvalidArgumentError", message), 400)


def _not_found(message: str) -> web.Response:
    return json_response(error("NotFoundError", message), 404)


def _resolve(emu: Emulator, collection: str, raw: str) -> tuple[str, Any] | web.Response:
    """(canonical id, facts) of an object, or the 400/404 to answer."""
    if collection == "ip_addresses":
        if not valid_ip(raw):
            return _bad(f'"{raw}" is not a valid IP address')
        facts: Any = emu.ip(raw)
        return (raw, facts) if facts else _not_found(f'IP address "{raw}" not found')
    if collection == "domains":
        domain = raw.lower().rstrip(".")
        if not valid_domain(domain):
            return _bad(f'Domain "{raw}" is not a valid domain pattern')
        facts = emu.domain(domain)
        return (domain, facts) if facts else _not_found(f'Domain "{domain}" not found')
    if collection == "files":
        value = raw.lower()
        if not valid_hash(value):
            return _bad(f'"{raw}" is not a valid file hash (md5, sha1 or sha256)')
        facts = emu.file(value)
        return (facts.sha256, facts) if facts else _not_found(f'File "{raw}" not found')
    url = _url_from_id(emu, raw)
    if url is None:
        return _bad(f'"{raw}" is not a valid URL identifier')
    facts = emu.url(url)
    return (facts.url_id, facts) if facts else _not_found(f'Item "{raw}" type "URL" not found')


def _admitted_object(request: web.Request, purpose: str,
                     collection: str | None = None) -> tuple[Emulator, str, str, Any] | web.Response:
    """(emulator, collection, canonical id, facts) of the object a request names once the key is
    admitted for ``purpose``, or the refusal, 400 or 404 to answer. ``collection``: when the route fixes it."""
    emu = _emu(request)
    if (denied := emu.admit("v3", purpose, request.headers.get("x-apikey"))) is not None:
        return denied
    collection = collection or request.match_info["collection"]
    resolved = _resolve(emu, collection, request.match_info["id"])
    if isinstance(resolved, web.Response):
        return resolved
    return (emu, collection, *resolved)


def _url_from_id(emu: Emulator, raw: str) -> str | None:
    if len(raw) == 64 and valid_hash(raw.lower()):
        return emu.url_for_id(raw.lower())
    decoded = v3.url_id_candidates(raw)
    return canonical_url(decoded) if decoded else None


def _token(emu: Emulator, collection: str, oid: str) -> Any:
    """What, besides the id, changes an object's body: its newest completed analysis."""
    if collection == "urls":
        return emu.url_token(emu.url_for_id(oid))
    if collection == "files":
        return emu.file_token(oid)
    return None


async def get_object(request: web.Request) -> web.Response:
    found = _admitted_object(request, "object")
    if isinstance(found, web.Response):
        return found
    emu, collection, oid, facts = found
    rels = tuple(r for r in request.query.get("relationships", "").split(",") if r)
    base = _base(request)
    key = ("v3", collection, oid, rels, base, _token(emu, collection, oid))
    if (cached := emu.bodies.get(key)) is not None:
        return json_response(cached)
    kind = _KIND[collection]
    render: dict[str, Callable[[Any, str], dict[str, Any]]] = {"ip_address": v3.ip_object, "domain": v3.domain_object, "file": v3.file_object, "url": v3.url_object}
    real = recorded("v3", kind, oid) if kind in ("ip_address", "domain") else None
    if real is not None:  # VirusTotal's own answer; its links point here, as VirusTotal's point at itself
        obj = {**orjson.loads(real)["data"], "links": {"self": f"{base}/{collection}/{oid}"}}
    else:
        obj = render[kind](facts, base)
    if rels:
        table = v3.relationships(kind, facts)
        unknown = [r for r in rels if r not in table]
        if unknown:
            return _bad(f"Unknown relationship: {', '.join(unknown)}")
        self_url = obj["links"]["self"]
        obj["relationships"] = {name: v3.embedded(name, table[name](), self_url) for name in rels}
    body = orjson.dumps({"data": obj})
    emu.bodies.put(key, body)
    return json_response(body)


async def get_behaviour_summary(request: web.Request) -> web.Response:
    """``GET /files/{id}/behaviour_summary``: the merged sandbox reports (404 or empty data: none ran it)."""
    found = _admitted_object(request, "behaviour_summary", "files")
    if isinstance(found, web.Response):
        return found
    _, _, oid, facts = found
    if v3.summary_not_found(facts):
        return _not_found(f'Behaviour summary for file "{oid}" not found')
    return json_response(orjson.dumps(v3.behaviour_summary(facts)))


async def get_relationship(request: web.Request) -> web.Response:
    emu, collection, raw = _emu(request), request.match_info["collection"], request.match_info["id"]
    name = request.match_info["relationship"]
    descriptors_only = request.path.rstrip("/").split("/")[-2] == "relationships"
    if (denied := emu.admit("v3", "relationship", request.headers.get("x-apikey"))) is not None:
        return denied
    try:
        limit = min(MAX_LIMIT, max(1, int(request.query.get("limit", "10"))))
        offset = v3.decode_cursor(request.query.get("cursor"))
    except ValueError as exc:
        return _bad(str(exc))
    resolved = _resolve(emu, collection, raw)
    if isinstance(resolved, web.Response):
        return resolved
    oid, facts = resolved
    table = v3.relationships(_KIND[collection], facts)
    if name not in table:
        return _bad(f"Unknown relationship: {name}")
    base = _base(request)
    key = ("v3rel", collection, oid, name, limit, offset, descriptors_only, base, _token(emu, collection, oid))
    if (cached := emu.bodies.get(key)) is not None:
        return json_response(cached)
    self_url = f"{base}/{collection}/{oid}"
    body = orjson.dumps(v3.listing(name, table[name](), self_url, base, limit=limit, offset=offset,
                                      descriptors_only=descriptors_only))
    emu.bodies.put(key, body)
    return json_response(body)


# --------------------------------------------------------------------------- submissions

def _submit_url(emu: Emulator, url: str) -> Scan:
    now = emu.clock()
    epoch, url_id = int(now), sha256_of(url)
    emu.remember_url(url)
    return emu.scans.add(Scan(f"u-{url_id}-{epoch}", f"{url_id}-{epoch}", "url", url, epoch,
                              now + emu.config.scan_seconds))


def submit_file_scan(emu: Emulator, info: FileInfo) -> Scan:
    now = emu.clock()
    epoch = int(now)
    return emu.scans.add(Scan(file_analysis_id(info.md5, epoch), f"{info.sha256}-{epoch}", "file", info.sha256,
                              epoch, now + emu.config.scan_seconds, info))


def submit_url_scan(emu: Emulator, url: str) -> Scan:
    return _submit_url(emu, url)


async def post_url(request: web.Request) -> web.Response:
    emu = _emu(request)
    if (denied := emu.admit("v3", "submission", request.headers.get("x-apikey"))) is not None:
        return denied
    form = await request.post()
    url = canonical_url(str(form.get("url", "")))
    if url is None:
        return _bad("Unable to canonicalize url")
    return json_response(v3.analysis_descriptor(_submit_url(emu, url).analysis_id, _base(request)))


async def analyse(request: web.Request) -> web.Response:
    """``POST /urls/{id}/analyse`` and ``POST /files/{id}/analyse``: a rescan."""
    found = _admitted_object(request, "submission")
    if isinstance(found, web.Response):
        return found
    emu, collection, _, facts = found
    if collection == "urls":
        scan = _submit_url(emu, facts.url)
    elif collection == "files":
        scan = submit_file_scan(emu, FileInfo(facts.md5, facts.sha1, facts.sha256, facts.size))
    else:
        return _bad(f"{collection} cannot be analysed")
    return json_response({"data": {"type": "analysis", "id": scan.analysis_id}})


async def read_upload(request: web.Request, limit: int) -> tuple[FileInfo | None, dict[str, str], str | None]:
    """Stream a multipart upload through the hashers. (file info, other fields, error message)."""
    md5, sha1, sha256 = hashlib.md5(), hashlib.sha1(), hashlib.sha256()
    fields: dict[str, str] = {}
    size, name, seen, too_big = 0, None, False, False
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            await part.release()
            continue
        if part.name == "file":
            seen, name = True, part.filename
            while chunk := await part.read_chunk(1 << 20):
                size += len(chunk)
                if size > limit:
                    too_big = True
                    continue   # drain, do not hash
                md5.update(chunk)
                sha1.update(chunk)
                sha256.update(chunk)
        elif part.name:
            fields[part.name] = await part.text()
    if too_big:
        return None, fields, f"File exceeds the maximum size of {limit} bytes"
    if not seen:
        return None, fields, "Missing file field 'file'"
    return FileInfo(md5.hexdigest(), sha1.hexdigest(), sha256.hexdigest(), size, name), fields, None


async def post_file(request: web.Request) -> web.Response:
    emu = _emu(request)
    if (denied := emu.admit("v3", "submission", request.headers.get("x-apikey"))) is not None:
        return denied
    return await _accept_upload(request, emu, MAX_DIRECT_UPLOAD)


async def _accept_upload(request: web.Request, emu: Emulator, limit: int) -> web.Response:
    if not request.content_type.startswith("multipart/"):
        return _bad("Expected a multipart/form-data body with a 'file' field")
    info, _, problem = await read_upload(request, limit)
    if info is None:
        status = 413 if problem and "maximum size" in problem else 400
        return json_response(error("BadRequestError" if status == 400 else "RequestEntityTooLargeError",
                                   problem or "bad upload"), status)
    return json_response(v3.analysis_descriptor(submit_file_scan(emu, info).analysis_id, _base(request)))


async def upload_url(request: web.Request) -> web.Response:
    emu = _emu(request)
    if (denied := emu.admit("v3", "upload_url", request.headers.get("x-apikey"))) is not None:
        return denied
    token = secrets.token_urlsafe(24)
    emu.upload_tokens.put(token, emu.clock())
    return json_response({"data": f"{request.scheme}://{request.host}/_upload/{token}"})


async def post_large_upload(request: web.Request) -> web.Response:
    emu = _emu(request)
    if (denied := emu.admit("v3", "submission", request.headers.get("x-apikey"))) is not None:
        return denied
    if emu.upload_tokens.get(request.match_info["token"]) is None:
        return _not_found("Upload URL not found or expired")
    return await _accept_upload(request, emu, MAX_LARGE_UPLOAD)


async def get_analysis(request: web.Request) -> web.Response:
    emu, aid = _emu(request), request.match_info["id"]
    if (denied := emu.admit("v3", "analysis", request.headers.get("x-apikey"))) is not None:
        return denied
    scan = emu.scans.get(aid)
    if scan is None:
        return _not_found(f'Analysis "{aid}" not found')
    base = _base(request)
    done = emu.scans.done(scan, emu.clock(), emu.config.never_complete)
    if scan.kind == "url":
        verdicts = url_facts(scan.target, scan.submitted).verdicts if done else None
        meta: dict[str, Any] = {"url_info": {"id": sha256_of(scan.target), "url": scan.target}}
        item, is_file = f"{base}/urls/{sha256_of(scan.target)}", False
    else:
        info = scan.file
        assert info is not None
        verdicts = file_facts(info.sha256, info.md5, info.sha1, info.size, info.name, scan.submitted).verdicts \
            if done else None
        meta = {"file_info": {"sha256": info.sha256, "md5": info.md5, "sha1": info.sha1, "size": info.size}}
        item, is_file = f"{base}/files/{info.sha256}", True
    body = v3.analysis(scan.analysis_id, base, status="completed" if done else "queued", date=scan.submitted,
                       verdicts=verdicts, file=is_file, meta=meta, item=item)
    return json_response(body)


async def get_overall_quotas(request: web.Request) -> web.Response:
    """``GET /users/{key}/overall_quotas``: the key's API allowances (hourly, daily, monthly) as
    configured (``rate_per_minute`` x 60, ``daily_quota``, ``monthly_quota``; unlimited ones left
    out) and what the gate has accepted. Reading it is not counted against the quota."""
    emu = _emu(request)
    key = request.headers.get("x-apikey")
    if key is None or key not in emu.config.api_keys:
        return json_response(error("WrongCredentialsError", "Wrong API key"), 401)
    if not emu.config.overall_quotas:
        return _not_found(f"Unknown endpoint {request.method} {request.path}")
    if request.match_info["user"] != key:
        return json_response(error("ForbiddenError", "You are not authorized to perform the requested operation"), 403)
    cfg, gate = emu.config, emu.gate
    gate.allows(emu.clock(), None, None)  # roll the day over
    allowed = {"api_requests_hourly": (cfg.rate_per_minute * 60 if cfg.rate_per_minute else None, gate.hour_count),
               "api_requests_daily": (cfg.daily_quota, gate.day_count),
               "api_requests_monthly": (cfg.monthly_quota, gate.day_count)}
    data = {name: {"user": {"allowed": limit, "used": used}} for name, (limit, used) in allowed.items()
            if limit is not None}
    return json_response({"data": data})


def add_routes(app: web.Application) -> None:
    coll = "{collection:ip_addresses|domains|files|urls}"
    app.router.add_get("/api/v3/users/{user}/overall_quotas", get_overall_quotas)
    app.router.add_get("/api/v3/files/upload_url", upload_url)
    app.router.add_post("/api/v3/urls", post_url)
    app.router.add_post("/api/v3/files", post_file)
    app.router.add_get("/api/v3/analyses/{id:.+}", get_analysis)
    app.router.add_post("/api/v3/{collection:urls|files}/{id}/analyse", analyse)
    app.router.add_get(f"/api/v3/{coll}/{{id}}", get_object)
    app.router.add_get("/api/v3/files/{id}/behaviour_summary", get_behaviour_summary)
    app.router.add_get(f"/api/v3/{coll}/{{id}}/relationships/{{relationship}}", get_relationship)
    app.router.add_get(f"/api/v3/{coll}/{{id}}/{{relationship}}", get_relationship)
    app.router.add_post("/_upload/{token}", post_large_upload)
