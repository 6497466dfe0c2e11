"""The emulator's configuration and mutable state, shared by the v3 and v2 handlers."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import orjson
from aiohttp import web

from pipeline.devtools.emulator.control import Faults, Gate, RequestLog, Stats
from pipeline.devtools.emulator.data import LRU, sha256_of
from pipeline.devtools.emulator.netdata import DomainFacts, IpFacts, UrlFacts, domain_facts, ip_facts, synthetic_url, url_facts
from pipeline.devtools.emulator.filedata import FileFacts, file_facts
from pipeline.devtools.emulator.scans import ScanBook
from pipeline.devtools.emulator.verdicts import VerdictOverrides
from pipeline.devtools.emulator.v3 import error


@dataclass(frozen=True)
class EmulatorConfig:
    """How the emulator behaves. Fields marked *runtime* can be changed through ``POST /_emulator/config``.

    >>> EmulatorConfig(port=0, rate_per_minute=4).rate_per_minute
    4
    """

    host: str = "127.0.0.1"
    port: int = 8079                                   # 0 = an ephemeral port (reported by serve/start)
    api_keys: tuple[str, ...] = ("vtstream-demo-key",)  # runtime
    rate_per_minute: int | None = None                 # runtime; None = unlimited
    daily_quota: int | None = None                     # runtime; resets 00:00 UTC
    monthly_quota: int | None = None                   # runtime; only reported by overall_quotas
    overall_quotas: bool = True                        # runtime; False: /users/{key}/overall_quotas is a 404
    scan_seconds: float = 5.0                          # runtime; queued -> completed after this
    never_complete: bool = False                       # runtime; analyses stay queued
    not_found_ratio: float = 0.0                       # runtime; fraction of unknown indicators
    latency_ms: float = 0.0                            # runtime; added before each API answer
    retry_after_s: float | None = None                 # runtime; Retry-After on v3 429 when set
    cache_size: int = 10_000                           # rendered bodies kept (LRU)


#: Config fields a client may change at runtime, with their accepted types.
RUNTIME_FIELDS: dict[str, tuple[type, ...]] = {
    "api_keys": (list, tuple), "rate_per_minute": (int, type(None)), "daily_quota": (int, type(None)),
    "monthly_quota": (int, type(None)), "overall_quotas": (bool,),
    "scan_seconds": (int, float), "never_complete": (bool,), "not_found_ratio": (int, float),
    "latency_ms": (int, float), "retry_after_s": (int, float, type(None)),
}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return web.Response(body=raw, status=status, content_type="application/json", headers=headers)


@dataclass
class Emulator:
    """All state behind one app: config, quota gate, counters, faults, analyses, caches."""

    config: EmulatorConfig
    clock: Callable[[], float] = time.time
    gate: Gate = field(default_factory=Gate)
    stats: Stats = field(default_factory=Stats)
    faults: Faults = field(default_factory=Faults)
    requests: RequestLog = field(default_factory=RequestLog)
    scans: ScanBook = field(default_factory=ScanBook)
    verdicts: VerdictOverrides = field(default_factory=VerdictOverrides)
    bodies: LRU[tuple[Any, ...], bytes] = field(init=False)
    urls_by_id: LRU[str, str] = field(init=False)
    upload_tokens: LRU[str, float] = field(init=False)
    file_aliases: LRU[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.bodies = LRU(self.config.cache_size)
        self.file_aliases = LRU(100_000)
        self.urls_by_id = LRU(100_000)
        self.upload_tokens = LRU(10_000)

    # ------------------------------------------------------------------ config / reset

    def update_config(self, changes: dict[str, Any]) -> EmulatorConfig:
        for name, value in changes.items():
            allowed = RUNTIME_FIELDS.get(name)
            if allowed is None:
                raise ValueError(f"{name!r} cannot be changed at runtime; one of {', '.join(RUNTIME_FIELDS)}")
            if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
                raise ValueError(f"bad value for {name}: {value!r}")
        if "api_keys" in changes:
            changes = {**changes, "api_keys": tuple(str(k) for k in changes["api_keys"])}
        self.config = replace(self.config, **changes)
        self.bodies.clear()
        return self.config

    def config_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self.config, f.name) for f in fields(self.config)}
        out["api_keys"] = len(self.config.api_keys)   # never echo keys
        return out

    def reset(self) -> None:
        self.gate, self.stats, self.faults, self.requests = Gate(), Stats(), Faults(), RequestLog()
        self.scans.clear()
        self.verdicts.clear()
        self.bodies.clear()
        self.upload_tokens.clear()

    # ------------------------------------------------------------------ admission

    def admit(self, api: str, kind: str, key: str | None) -> web.Response | None:
        """Auth, then quota. None when accepted; otherwise the rejection to send."""
        cfg = self.config
        if key is None or key not in cfg.api_keys:
            self.stats.record(kind, api, "rejected_auth")
            return auth_failure(api, missing=key is None)
        now = self.clock()
        why = self.gate.allows(now, cfg.rate_per_minute, cfg.daily_quota)
        if why is not None:
            self.stats.record(kind, api, "rejected_daily" if why == "daily" else "rejected_quota")
            if api == "v2":
                return web.Response(status=204)
            headers = {"Retry-After": f"{cfg.retry_after_s:g}"} if cfg.retry_after_s is not None else None
            return json_response(error("QuotaExceededError", "Quota exceeded"), 429, headers)
        self.gate.accept(now)
        self.stats.record(kind, api, "accepted")
        return None

    # ------------------------------------------------------------------ knowledge

    def rule_known(self, kind: str, value: str) -> bool:
        """Does VirusTotal know ``value`` before anyone submits it?"""
        if "notfound" in value.lower():
            return False
        ratio = self.config.not_found_ratio
        if ratio <= 0:
            return True
        digest = hashlib.sha256(f"known:{kind}:{value}".encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 >= ratio

    def set_verdict(self, spec: dict[str, Any]) -> None:
        """``POST /_emulator/verdicts``: answer an indicator with a set number of engines flagging it."""
        self.verdicts.set(spec, self.clock())
        self.bodies.clear()

    def ip(self, ip: str) -> IpFacts | None:
        self.stats.lookup("ip:" + ip)
        return self.verdicts.applied("ip", (ip,), ip_facts(ip)) if self.rule_known("ip", ip) else self._unknown()

    def domain(self, domain: str) -> DomainFacts | None:
        self.stats.lookup("domain:" + domain)
        if not self.rule_known("domain", domain):
            return self._unknown()
        return self.verdicts.applied("domain", (domain,), domain_facts(domain))

    def url_token(self, url: str) -> int | None:
        return self.scans.completed_at("url", url, self.clock(), self.config.never_complete)

    def url(self, url: str, count: bool = True) -> UrlFacts | None:
        """Facts for a canonical URL, or None when VirusTotal does not know it (yet)."""
        if count:
            self.stats.lookup("url:" + sha256_of(url))
        self.remember_url(url)
        scanned = self.url_token(url)
        if scanned is None and not self.rule_known("url", url):
            return self._unknown()
        return self.verdicts.applied("url", (url,), url_facts(url, scanned))

    def file_token(self, value: str) -> int | None:
        info = self.scans.file_info(value)
        if info is None:
            return None
        return self.scans.completed_at("file", info.sha256, self.clock(), self.config.never_complete)

    def file(self, value: str, count: bool = True) -> FileFacts | None:
        """Facts for a file known by md5/sha1/sha256, honouring uploads and set verdicts."""
        facts = self._file(value, count)
        return None if facts is None else self.verdicts.applied("file", (facts.sha256, facts.md5, facts.sha1), facts)

    def _file(self, value: str, count: bool) -> FileFacts | None:
        if count:
            self.stats.lookup("file:" + value)
        info = self.scans.file_info(value)
        scanned = self.file_token(value)
        if info is not None and scanned is not None:
            return file_facts(info.sha256, info.md5, info.sha1, info.size, info.name, scanned)
        seed = self.file_aliases.get(value) or value
        if not self.rule_known("file", seed):
            return self._unknown()
        if info is not None:   # known anyway, with its real hashes
            return file_facts(info.sha256, info.md5, info.sha1, info.size, info.name)
        facts = file_facts(seed)
        if seed == value and len(value) != 64:   # known by md5/sha1: its other hashes lead back here
            for other in (facts.md5, facts.sha1, facts.sha256):
                self.file_aliases.put(other, value)
        return facts

    def _unknown(self) -> Any:
        """Count a lookup of something VirusTotal does not know; the caller answers "not found"."""
        self.stats.not_found += 1
        return None

    def remember_url(self, url: str) -> None:
        self.urls_by_id.put(sha256_of(url), url)

    def url_for_id(self, url_id: str) -> str:
        return self.urls_by_id.get(url_id) or synthetic_url(url_id)


#: Where an app keeps its :class:`Emulator`.
EMULATOR_KEY: web.AppKey[Emulator] = web.AppKey("emulator", Emulator)


def auth_failure(api: str, *, missing: bool) -> web.Response:
    """v3: 401 with VirusTotal's error body. v2: 403 with an empty body, as v2 answered."""
    if api == "v2":
        return web.Response(status=403)
    if missing:
        return json_response(error("AuthenticationRequiredError", "X-Apikey header is missing"), 401)
    return json_response(error("WrongCredentialsError", "Wrong API key"), 401)
