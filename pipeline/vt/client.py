"""The VirusTotal HTTP client, API v3 and v2, for lookups of IPs, domains, URLs and hashes.

One call of :meth:`VirusTotalClient.lookup` is one indicator's enrichment. In v3
it is one request (relationship descriptors ride along through
``?relationships=``) plus one request per relationship configured to be fetched
in full, plus, with ``VTSTREAM_VT_BEHAVIOUR``, one for a found file's sandbox
behaviour summary (:mod:`pipeline.vt.behaviour`). Every request first awaits ``pace()``, the gateway's rate and quota
governor, so the client itself never decides when to call, and the gateway counts what
VirusTotal sees there: one ``pace()`` per request, in one place (:meth:`VirusTotalClient._request`).

The API key travels in the ``x-apikey`` header (v3) or the ``apikey`` parameter
(v2), and in the path of :meth:`VirusTotalClient.overall_quotas`; it is scrubbed
from every error message this module produces. It goes to ``VTSTREAM_VT_BASE_URL``
only: redirects are not followed (a 3xx is an error naming where it pointed), and an
upload URL VirusTotal hands out must be on the same origin. Every response body is read
with a cap (``VTSTREAM_VT_MAX_RESPONSE_BYTES``, counted after decompression), so no
answer can exhaust the worker's memory.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Literal, Sequence
from urllib.parse import quote

import aiohttp
import orjson

from pipeline.contracts.indicator import Indicator, vt_url_id
from pipeline.observe.metrics import Metrics
from pipeline.rules.allowances import ReportedAllowances, reported_allowances
from pipeline.settings import Settings
from pipeline.vt.behaviour import NO_SANDBOX_REPORT, merge_behaviour_summary
from pipeline.errors import ConfigError
from pipeline.vt.errors import (MalformedResponse, Redirected, ResponseTooLarge, TransportError,
                                  VirusTotalError, error_for)

WaitTurn = Callable[[], Awaitable[None]]

#: v3 collection per indicator type; v2 endpoint and query parameter per type.
_V3_COLLECTION = {"ip": "ip_addresses", "domain": "domains", "url": "urls",
                  "md5": "files", "sha1": "files", "sha256": "files"}
_V2_REPORT = {"ip": ("ip-address/report", "ip"), "domain": ("domain/report", "domain"),
              "url": ("url/report", "resource"), "md5": ("file/report", "resource"),
              "sha1": ("file/report", "resource"), "sha256": ("file/report", "resource")}
#: v2 response_code values: 1 found, 0 not in dataset, -2 queued for analysis.
_V2_FOUND, _V2_QUEUED = 1, -2


@dataclass(frozen=True, slots=True)
class LookupResult:
    """A VirusTotal answer: ``found`` or ``not_found`` (a result, not an error)."""

    status: Literal["found", "not_found"]
    body: Any
    notes: list[str] = field(default_factory=list)


class VirusTotalClient:
    """Async client; use as ``async with VirusTotalClient(settings) as vt``."""

    def __init__(self, settings: Settings, session: aiohttp.ClientSession | None = None,
                 metrics: Metrics | None = None) -> None:
        self._settings = settings
        self._metrics = metrics
        self._key = api_key(settings)
        self._base = settings.vt.base_url
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> "VirusTotalClient":
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._settings.vt.connect_timeout_s,
                                            connect=self._settings.vt.connect_timeout_s,
                                            sock_read=self._settings.vt.read_timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout, raise_for_status=False,
                                                  headers={"user-agent": "vtstream"})
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    async def lookup(self, indicator: Indicator, pace: WaitTurn, *, api: str,
                     relationships: Sequence[str] = ()) -> LookupResult:
        """Fetch the report for ``indicator`` in API ``api`` (v3 or v2)."""
        if api == "v2":
            return await self._lookup_v2(indicator, pace)
        return await self._lookup_v3(indicator, pace, relationships)

    async def _lookup_v3(self, indicator: Indicator, pace: WaitTurn, relationships: Sequence[str]) -> LookupResult:
        collection = _V3_COLLECTION[indicator.type]
        object_id = vt_url_id(indicator.value) if indicator.type == "url" else indicator.value
        path = f"/api/v3/{collection}/{quote(object_id, safe='')}"
        params = {"relationships": ",".join(relationships)} if relationships else None
        status, body = await self._get_v3(path, params, pace)
        if status == 404:
            return LookupResult("not_found", body)
        full = [name for name in self._settings.vt.relationships if name in relationships]
        notes: list[str] = []
        for name in full:
            rel_status, rel_body = await self._get_v3(
                f"{path}/{name}", {"limit": str(self._settings.vt.relationship_limit)}, pace)
            if rel_status == 404 or not isinstance(rel_body, dict) or not isinstance(rel_body.get("data"),
                                                                                     (list, dict)):
                notes.append(f"relationship {name}: not available")
                continue
            _merge_relationship(body, name, rel_body)
        if self._settings.vt.behaviour and collection == "files":
            if not await self._merge_behaviour_summary(body, path, pace):
                notes.append(NO_SANDBOX_REPORT)
        return LookupResult("found", body, notes=notes)

    async def _merge_behaviour_summary(self, body: Any, path: str, pace: WaitTurn) -> bool:
        """Fetch the file's sandbox behaviour summary into ``body``; False when there is none.

        VirusTotal says "none" with a 404 NotFoundError (its body has no ``data``) or an empty ``data``.
        """
        _status, summary = await self._get_v3(f"{path}/behaviour_summary", None, pace)
        return merge_behaviour_summary(body, summary)

    async def _lookup_v2(self, indicator: Indicator, pace: WaitTurn) -> LookupResult:
        endpoint, param = _V2_REPORT[indicator.type]
        params = {param: indicator.value, "apikey": self._key}
        if endpoint in ("file/report", "url/report"):
            params["allinfo"] = "1"
        body = await self._get_v2(f"/vtapi/v2/{endpoint}", params, pace)
        if not isinstance(body, dict) or "response_code" not in body:
            raise MalformedResponse("v2 answer has no response_code")
        code = body.get("response_code")
        found = code == _V2_FOUND
        return LookupResult("found" if found else "not_found", body,
                            notes=["queued for analysis"] if code == _V2_QUEUED else [])

    # ------------------------------------------------------------------ scans

    async def submit_url(self, url: str, pace: WaitTurn, *, api: str) -> Submission:
        """Ask VirusTotal to scan ``url``; one request."""
        if api == "v2":
            body = await self._get_v2("/vtapi/v2/url/scan", {}, pace, method="POST",
                                      data={"apikey": self._key, "url": url})
            return Submission(_v2_field(body, "scan_id"), body)
        _status, body = await self._get_v3("/api/v3/urls", None, pace, method="POST", data={"url": url})
        return Submission(_v3_id(body), body)

    async def submit_file(self, upload: Upload, pace: WaitTurn, *, api: str) -> Submission:
        """Upload a file for scanning: one request, two for v3 files over 32 MB (upload URL)."""
        if api == "v2":
            form = upload.form(extra={"apikey": self._key})
            body = await self._get_v2("/vtapi/v2/file/scan", {}, pace, method="POST", data=form)
            return Submission(_v2_field(body, "scan_id"), body)
        target = "/api/v3/files"
        if upload.size > DIRECT_UPLOAD_LIMIT:
            _status, answer = await self._get_v3("/api/v3/files/upload_url", None, pace)
            upload_url = answer.get("data") if isinstance(answer, dict) else None
            if not isinstance(upload_url, str) or not upload_url.startswith(("http://", "https://")):
                raise MalformedResponse("upload_url answer has no URL in 'data'")
            if _origin(upload_url) != _origin(self._base):
                raise MalformedResponse(f"upload_url answer points to {_origin(upload_url)!r}, not to "
                                        "VTSTREAM_VT_BASE_URL; the API key is not sent there")
            target = upload_url
        _status, body = await self._get_v3(target, None, pace, method="POST", data=upload.form())
        return Submission(_v3_id(body), body)

    async def poll(self, analysis_id: str, indicator: Indicator, pace: WaitTurn, *, api: str,
                   relationships: Sequence[str] = ()) -> LookupResult | None:
        """The report once the analysis is done, else None (still queued). One request while
        queued; in v3 a finished analysis costs one more to fetch the object report."""
        if api == "v2":
            endpoint = "url/report" if indicator.type == "url" else "file/report"
            body = await self._get_v2(f"/vtapi/v2/{endpoint}", {"resource": analysis_id, "apikey": self._key,
                                                               "allinfo": "1"}, pace)
            if not isinstance(body, dict) or body.get("response_code") != _V2_FOUND:
                return None
            return LookupResult("found", body)
        status, body = await self._get_v3(f"/api/v3/analyses/{quote(analysis_id, safe='')}", None, pace)
        if status == 404:
            raise MalformedResponse(f"analysis {analysis_id} is unknown to VirusTotal")
        if _analysis_status(body) != "completed":
            return None
        return await self._lookup_v3(indicator, pace, relationships)

    async def overall_quotas(self) -> ReportedAllowances | None:
        """The key's allowances as VirusTotal reports them (v3 only), or None when it does not say.

        The key sits in this request's path: every error raised here names it ``***``.
        Not paced: reading one's own quotas is not an API lookup.
        """
        status, body = await self._get_v3(f"/api/v3/users/{quote(self._key, safe='')}/overall_quotas", None,
                                          _unpaced)
        return reported_allowances(body) if status == 200 else None

    async def _get_v3(self, path: str, params: dict[str, str] | None, pace: WaitTurn,
                      method: str = "GET", data: Any = None) -> tuple[int, Any]:
        """Call a v3 path; returns (status, parsed body) for 200 and 404, raises otherwise."""
        status, headers, raw = await self._request(method, path, params, {"x-apikey": self._key}, pace, data)
        if status in (200, 404):
            body = _parse_json(raw) if raw else None
            if status == 200 and not isinstance(body, dict):
                raise MalformedResponse(f"{self._shown(path)}: 200 with a body that is not a JSON object", status=status)
            if status == 404:
                code = _v3_error(body)[0]
                if code not in (None, "NotFoundError"):
                    raise error_for(status, code)(f"VirusTotal answered 404 {code}", status=status, code=code)
            return status, body
        code, message = _v3_error(_parse_json(raw) if raw else None)
        raise error_for(status, code)(
            f"VirusTotal answered {status} {code or ''}: {message or 'no message'}".replace("  ", " "),
            status=status, code=code, retry_after=_retry_after(headers))

    async def _get_v2(self, path: str, params: dict[str, str], pace: WaitTurn,
                      method: str = "GET", data: Any = None) -> Any:
        status, headers, raw = await self._request(method, path, params, {}, pace, data)
        if status == 200:
            return _parse_json(raw)
        if status == 204:  # v2's way of saying "over quota"
            raise error_for(429)("VirusTotal v2 answered 204 (request rate or quota exceeded)",
                                 status=204, retry_after=_retry_after(headers))
        if status == 403:  # v2 answers 403 for a wrong key
            raise error_for(401)("VirusTotal v2 answered 403: wrong API key or no access", status=403)
        raise error_for(status)(f"VirusTotal v2 answered {status}", status=status,
                                retry_after=_retry_after(headers))

    async def _request(self, method: str, path: str, params: dict[str, str] | None,
                       headers: dict[str, str], pace: WaitTurn, data: Any = None) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None, "use VirusTotalClient as an async context manager"
        await pace()  # the one place every request waits its turn: the gateway counts requests here
        url = path if path.startswith(("http://", "https://")) else self._base + path
        started, status = time.monotonic(), None
        try:
            async with self._session.request(method, url, params=params, headers=headers, data=data,
                                             allow_redirects=False) as resp:
                status = resp.status
                if 300 <= status < 400:
                    raise Redirected(f"{method} {self._shown(path)}: VirusTotal answered {status}, a redirect to "
                                     f"{_origin(resp.headers.get('Location', '') or '?')!r}; redirects are not "
                                     "followed with the API key (check VTSTREAM_VT_BASE_URL)", status=status)
                raw = await self._read_capped(resp, method, path)
                return resp.status, dict(resp.headers), raw
        except asyncio.TimeoutError:
            raise TransportError(f"{method} {self._shown(path)}: timed out") from None
        except aiohttp.ClientPayloadError as exc:
            raise MalformedResponse(f"{method} {self._shown(path)}: truncated body ({self._scrub(exc)})") from None
        except aiohttp.ClientError as exc:
            raise TransportError(f"{method} {self._shown(path)}: {type(exc).__name__}: {self._scrub(exc)}") from None
        finally:
            if self._metrics is not None:
                self._metrics.vt_request(method, self._shown(path), status, time.monotonic() - started)

    async def _read_capped(self, resp: aiohttp.ClientResponse, method: str, path: str) -> bytes:
        """The body, or ResponseTooLarge once it passes VTSTREAM_VT_MAX_RESPONSE_BYTES (decompressed)."""
        cap = self._settings.vt.max_response_bytes
        if resp.content_length is not None and resp.content_length > cap:
            raise self._too_large(method, path, resp.content_length)
        body = bytearray()
        async for chunk in resp.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > cap:
                raise self._too_large(method, path, len(body))
        return bytes(body)

    def _too_large(self, method: str, path: str, size: int) -> ResponseTooLarge:
        return ResponseTooLarge(f"{method} {self._shown(path)}: the answer is over {size:,} bytes; "
                                f"VTSTREAM_VT_MAX_RESPONSE_BYTES allows {self._settings.vt.max_response_bytes:,}")

    def _scrub(self, exc: BaseException) -> str:
        return self._shown(str(exc))

    def _shown(self, text: str) -> str:
        """``text`` with the API key (as is and URL-quoted) replaced by ``***``."""
        if not self._key:
            return text
        return text.replace(self._key, "***").replace(quote(self._key, safe=""), "***")


def api_key(settings: Settings) -> str:
    """The API key: VTSTREAM_VT_API_KEY, or read from VTSTREAM_VT_API_KEY_FILE at each start."""
    if settings.vt.api_key_file is None:
        return settings.vt.api_key
    try:
        return settings.vt.api_key_file.read_text().removesuffix("\n").strip()
    except OSError as exc:
        raise ConfigError(f"VTSTREAM_VT_API_KEY_FILE cannot be read: {exc.strerror}") from None


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-cased (where a request, and the key, would go)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme.lower()}://{rest.split('/', 1)[0].split('?', 1)[0].lower()}"


async def _unpaced() -> None:
    """The pace of a request that does not count against the key's lookups."""


#: v3 files up to this size go to POST /files; larger ones through an upload URL.
DIRECT_UPLOAD_LIMIT = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Submission:
    """A scan VirusTotal accepted: the analysis (v3) or scan (v2) id to poll, and the answer body."""

    analysis_id: str
    body: Any


@dataclass(frozen=True, slots=True)
class Upload:
    """A file to upload: its name, size, and either its bytes or a stream of them (a 650 MB upload
    never sits in memory); ``closing`` releases what the stream reads from."""

    name: str
    size: int
    content: bytes | None = None
    stream: Callable[[], AsyncIterator[bytes]] | None = None
    closing: Callable[[], None] | None = None

    def form(self, extra: dict[str, str] | None = None) -> aiohttp.FormData:
        form = aiohttp.FormData()
        for key, value in (extra or {}).items():
            form.add_field(key, value)
        payload: Any = self.content if self.content is not None or self.stream is None else self.stream()
        form.add_field("file", payload or b"", filename=self.name or "sample", content_type="application/octet-stream")
        return form

    def close(self) -> None:
        if self.closing is not None:
            self.closing()


def _v3_id(body: Any) -> str:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise MalformedResponse("submission answer has no data.id")
    return str(data["id"])


def _v2_field(body: Any, name: str) -> str:
    if not isinstance(body, dict) or not isinstance(body.get(name), str):
        raise MalformedResponse(f"v2 submission answer has no {name}")
    return str(body[name])


def _analysis_status(body: Any) -> str | None:
    """queued / in-progress / completed, from a v3 analysis object."""
    try:
        return str(body["data"]["attributes"]["status"])
    except (KeyError, TypeError):
        raise MalformedResponse("analysis answer has no data.attributes.status") from None


def report_age(body: Any, api: str, now: float) -> float | None:
    """Seconds since VirusTotal last analysed the object in ``body``; None when it does not say.

    Protocol knowledge (like ``response_code``), not mapping: it decides whether to rescan.
    """
    try:
        if api == "v2":
            from datetime import datetime, timezone

            when = datetime.strptime(str(body["scan_date"]), "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
            return now - when.timestamp()
        return now - float(body["data"]["attributes"]["last_analysis_date"])
    except (KeyError, TypeError, ValueError):
        return None


def _parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedResponse(f"body is not JSON ({exc})") from None


def _v3_error(body: Any) -> tuple[str | None, str | None]:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return (str(err["code"]) if "code" in err else None,
                str(err["message"]) if "message" in err else None)
    return None, None


def _retry_after(headers: dict[str, str]) -> float | None:
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _merge_relationship(body: dict[str, Any], name: str, rel_body: dict[str, Any]) -> None:
    """Put fully fetched relationship objects (a list, or one object) where the descriptors were."""
    data = body.setdefault("data", {})
    if not isinstance(data, dict):
        return
    rels = data.setdefault("relationships", {})
    if isinstance(rels, dict):
        rels[name] = {"data": rel_body["data"], "meta": rel_body.get("meta", {})}


__all__ = ["LookupResult", "Submission", "Upload", "VirusTotalClient", "VirusTotalError", "report_age"]
