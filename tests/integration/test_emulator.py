"""The VirusTotal emulator over real HTTP: auth, body shapes, determinism, relationships,
not-found answers, queued -> completed analyses, uploads, the quota gate, faults, stats.

One emulator runs in a background thread (its own event loop, ephemeral port) for
the whole module; every test starts from ``POST /_emulator/reset`` and default
runtime settings. Tests are synchronous and drive an aiohttp client with asyncio.run.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest

from pipeline.devtools.emulator import EmulatorConfig, RunningEmulator, start
from pipeline.devtools.emulator.control import Gate
from pipeline.devtools.emulator.netdata import domain_facts, ip_facts

pytestmark = pytest.mark.integration

KEY = "vtstream-demo-key"
V3 = {"x-apikey": KEY}
SCAN_S = 30.0  # queued scans complete when a test moves CLOCK on, never by waiting
DEFAULTS = {"rate_per_minute": None, "daily_quota": None, "scan_seconds": SCAN_S, "never_complete": False,
            "not_found_ratio": 0.0, "latency_ms": 0.0, "retry_after_s": None}
T = TypeVar("T")


class ShiftedClock:
    """Wall time plus an offset the tests move forward: a queued scan completes without waiting."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


CLOCK = ShiftedClock()


class ServerThread:
    """The emulator on its own event loop in a daemon thread, on :data:`CLOCK`."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.running: RunningEmulator = asyncio.run_coroutine_threadsafe(
            start(config, clock=CLOCK), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.running.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    srv = ServerThread(EmulatorConfig(port=0, scan_seconds=SCAN_S))
    yield srv
    srv.stop()


@pytest.fixture()
def url(server: ServerThread) -> str:
    base = server.running.url
    run(lambda s: _post_json(s, f"{base}/_emulator/reset", {}))
    run(lambda s: _post_json(s, f"{base}/_emulator/config", DEFAULTS))
    return base


def run(fn: Callable[[aiohttp.ClientSession], Awaitable[T]], timeout: float = 10) -> T:
    async def main() -> T:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            return await fn(session)
    return asyncio.run(main())


async def _post_json(s: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Any:
    async with s.post(url, data=orjson.dumps(body)) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def _get(s: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, bytes]:
    async with s.get(url, **kw) as resp:
        return resp.status, await resp.read()


def get(url: str, headers: dict[str, str] | None = V3, **params: str) -> tuple[int, Any]:
    status, raw = run(lambda s: _get(s, url, headers=headers, params=params))
    return status, (orjson.loads(raw) if raw else None)


def post(url: str, data: Any, headers: dict[str, str] | None = V3, **params: str) -> tuple[int, Any]:
    async def go(s: aiohttp.ClientSession) -> tuple[int, bytes]:
        async with s.post(url, data=data, headers=headers, params=params) as resp:
            return resp.status, await resp.read()
    status, raw = run(go)
    return status, (orjson.loads(raw) if raw else None)


def control(base: str, name: str, body: dict[str, Any] | None = None) -> Any:
    if body is None:
        return get(f"{base}/_emulator/{name}", headers=None)[1]
    return run(lambda s: _post_json(s, f"{base}/_emulator/{name}", body))


def url_id(u: str) -> str:
    return base64.urlsafe_b64encode(u.encode()).decode().rstrip("=")


def file_form(content: bytes, **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for k, v in fields.items():
        form.add_field(k, v)
    form.add_field("file", content, filename="sample.bin", content_type="application/octet-stream")
    return form


# --------------------------------------------------------------------------- auth


def test_v3_wrong_or_missing_key_is_401_with_virustotal_body(url: str) -> None:
    assert get(f"{url}/api/v3/ip_addresses/8.8.8.8", headers={"x-apikey": "nope"}) == (
        401, {"error": {"code": "WrongCredentialsError", "message": "Wrong API key"}})
    status, body = get(f"{url}/api/v3/ip_addresses/8.8.8.8", headers=None)
    assert status == 401 and body["error"]["code"] == "AuthenticationRequiredError"


def test_v2_wrong_or_missing_key_is_403_with_empty_body(url: str) -> None:
    assert get(f"{url}/vtapi/v2/ip-address/report", headers=None, ip="8.8.8.8", apikey="nope") == (403, None)
    assert get(f"{url}/vtapi/v2/ip-address/report", headers=None, ip="8.8.8.8") == (403, None)
    assert control(url, "stats")["rejected_auth"] == 2


# --------------------------------------------------------------------------- v3 shapes


def test_v3_ip_address_shape(url: str) -> None:
    status, body = get(f"{url}/api/v3/ip_addresses/151.101.0.1")
    assert status == 200
    data = body["data"]
    assert (data["type"], data["id"]) == ("ip_address", "151.101.0.1")
    assert data["links"]["self"] == f"{url}/api/v3/ip_addresses/151.101.0.1"
    attrs = data["attributes"]
    for key in ("as_owner", "asn", "country", "network", "whois", "whois_date", "last_analysis_stats",
                "last_analysis_results", "reputation", "total_votes", "tags", "continent",
                "regional_internet_registry", "last_modification_date"):
        assert key in attrs, key
    engine = next(iter(attrs["last_analysis_results"].values()))
    assert set(engine) == {"category", "engine_name", "method", "result"}
    assert sum(attrs["last_analysis_stats"].values()) == len(attrs["last_analysis_results"]) >= 60


def test_v3_domain_shape(url: str) -> None:
    status, body = get(f"{url}/api/v3/domains/Example.COM")
    assert status == 200 and body["data"]["id"] == "example.com"
    attrs = body["data"]["attributes"]
    assert {"Forcepoint ThreatSeeker", "BitDefender", "Dr.Web", "alphaMountain.ai"} <= set(attrs["categories"])
    for key in ("whois", "whois_date", "creation_date", "last_dns_records", "popularity_ranks", "registrar",
                "last_analysis_stats", "last_analysis_results", "reputation", "total_votes"):
        assert key in attrs, key


def test_v3_file_shape_and_hash_aliases(url: str) -> None:
    status, body = get(f"{url}/api/v3/files/44D88612FEA8A8F36DE82E1278ABB02F")
    assert status == 200
    attrs = body["data"]["attributes"]
    assert attrs["md5"] == "44d88612fea8a8f36de82e1278abb02f"
    for key in ("md5", "sha1", "sha256", "ssdeep", "authentihash", "tlsh", "names", "meaningful_name",
                "type_description", "type_tag", "magic", "trid", "size", "unique_sources", "first_submission_date",
                "last_submission_date", "last_analysis_date", "times_submitted", "last_analysis_stats",
                "last_analysis_results", "total_votes", "reputation", "pe_info", "exiftool", "main_icon",
                "signature_info", "sigma_analysis_stats", "sandbox_verdicts"):
        assert key in attrs, key
    assert {"timestamp", "imphash", "machine_type", "entry_point", "resource_langs", "resource_types",
            "resource_details", "import_list"} <= set(attrs["pe_info"])
    assert set(attrs["pe_info"]["resource_details"][0]) == {"sha256", "lang", "chi2", "filetype", "entropy", "type"}
    assert set(attrs["main_icon"]) == {"raw_md5", "dhash"}
    engine = next(iter(attrs["last_analysis_results"].values()))
    assert set(engine) == {"category", "engine_name", "engine_version", "result", "method", "engine_update"}
    # the same file by its sha256 and sha1
    for other in (attrs["sha256"], attrs["sha1"]):
        assert get(f"{url}/api/v3/files/{other}")[1]["data"]["attributes"]["md5"] == attrs["md5"]


def test_v3_url_by_base64_and_sha256_id(url: str) -> None:
    target = "http://www.google.com"
    status, body = get(f"{url}/api/v3/urls/{url_id(target)}")
    assert status == 200
    data = body["data"]
    assert data["id"] == "dd014af5ed6b38d9130e3f466f850e46d21b951199d53a18ef29ee9341614eaf"  # sha256 of the canonical URL
    attrs = data["attributes"]
    assert attrs["url"] == "http://www.google.com/"
    for key in ("url", "last_final_url", "title", "categories", "last_http_response_code", "last_analysis_stats",
                "last_analysis_results", "first_submission_date", "last_submission_date", "times_submitted",
                "threat_names", "reputation", "total_votes", "tags"):
        assert key in attrs, key
    assert get(f"{url}/api/v3/urls/{data['id']}")[1] == body


def test_v3_bodies_are_deterministic(url: str) -> None:
    paths = ["/api/v3/ip_addresses/45.83.140.140", "/api/v3/domains/jppost-ge.top",
             f"/api/v3/files/{'ab' * 32}", f"/api/v3/urls/{url_id('http://example.com/x.exe')}"]
    first = [get(url + p) for p in paths]
    control(url, "reset", {})
    ip_facts.cache_clear()
    domain_facts.cache_clear()
    assert [get(url + p) for p in paths] == first


def test_v3_malformed_ids_are_400(url: str) -> None:
    for path in ("/api/v3/ip_addresses/notanip", "/api/v3/domains/xpressco", "/api/v3/files/xyz"):
        status, body = get(url + path)
        assert status == 400 and body["error"]["code"] == "InvalidArgumentError", path


# --------------------------------------------------------------------------- relationships


def test_v3_embedded_relationship_descriptors(url: str) -> None:
    status, body = get(f"{url}/api/v3/ip_addresses/8.8.8.8", relationships="resolutions,urls,communicating_files")
    assert status == 200
    rels = body["data"]["relationships"]
    assert set(rels) == {"resolutions", "urls", "communicating_files"}
    for name, rel in rels.items():
        assert rel["links"]["related"] == f"{url}/api/v3/ip_addresses/8.8.8.8/{name}"
        assert "count" in rel["meta"]
    for d in rels["resolutions"]["data"]:
        assert d["type"] == "resolution" and d["id"].startswith("8.8.8.8")
    for d in rels["urls"]["data"]:
        assert d["type"] == "url" and d["id"] == hashlib.sha256(d["context_attributes"]["url"].encode()).hexdigest()
    status, body = get(f"{url}/api/v3/files/{'cd' * 32}", relationships="contacted_domains,contacted_ips,behaviours")
    rels = body["data"]["relationships"]
    assert rels["contacted_domains"]["data"][0]["type"] == "domain"
    assert rels["contacted_ips"]["data"][0]["type"] == "ip_address"
    assert rels["behaviours"]["data"][0]["type"] == "file_behaviour"
    status, body = get(f"{url}/api/v3/urls/{url_id('http://example.com/')}", relationships="last_serving_ip_address")
    assert body["data"]["relationships"]["last_serving_ip_address"]["data"]["type"] == "ip_address"
    assert get(f"{url}/api/v3/ip_addresses/8.8.8.8", relationships="nope")[0] == 400


def test_v3_relationship_listing_full_objects_and_cursor(url: str) -> None:
    domain = next(d for d in (f"site{i}.example.com" for i in range(100)) if len(domain_facts(d).resolutions) >= 3)
    status, page1 = get(f"{url}/api/v3/domains/{domain}/resolutions", limit="2")
    assert status == 200 and len(page1["data"]) == 2
    res = page1["data"][0]
    assert res["type"] == "resolution"
    assert {"date", "host_name", "ip_address", "resolver", "ip_address_last_analysis_stats",
            "host_name_last_analysis_stats"} <= set(res["attributes"])
    assert res["attributes"]["host_name"] == domain
    assert page1["meta"]["count"] == len(domain_facts(domain).resolutions)
    status, page2 = get(page1["links"]["next"])
    assert status == 200 and page2["data"][0]["id"] not in {r["id"] for r in page1["data"]}
    status, descriptors = get(f"{url}/api/v3/domains/{domain}/relationships/resolutions", limit="2")
    assert descriptors["data"] == [{"type": r["type"], "id": r["id"]} for r in page1["data"]]
    status, files = get(f"{url}/api/v3/ip_addresses/8.8.8.8/communicating_files")
    assert status == 200
    for f in files["data"]:
        assert f["type"] == "file" and "last_analysis_stats" in f["attributes"]
    assert control(url, "stats")["by_kind"]["relationship"]["accepted"] == 4


# --------------------------------------------------------------------------- not found


def test_unknown_indicators(url: str) -> None:
    assert get(f"{url}/api/v3/domains/notfound.example.com") == (
        404, {"error": {"code": "NotFoundError", "message": 'Domain "notfound.example.com" not found'}})
    assert get(f"{url}/api/v3/files/{'0f' * 32}")[0] == 200          # known while not_found_ratio is 0
    assert get(f"{url}/vtapi/v2/domain/report", headers=None, domain="notfound.org", apikey=KEY) == (
        200, {"response_code": 0, "verbose_msg": "Domain not found"})
    control(url, "config", {"not_found_ratio": 1.0})
    status, body = get(f"{url}/api/v3/files/{'0f' * 32}")
    assert status == 404 and body["error"]["code"] == "NotFoundError"
    status, body = get(f"{url}/vtapi/v2/file/report", headers=None, resource="0f" * 32, apikey=KEY)
    assert body["response_code"] == 0
    assert body["verbose_msg"] == "The requested resource is not among the finished, queued or pending scans"
    assert get(f"{url}/vtapi/v2/ip-address/report", headers=None, ip="1.2.3.4", apikey=KEY)[1]["response_code"] == 0
    assert control(url, "stats")["not_found"] == 5


# --------------------------------------------------------------------------- v2 shapes


def test_v2_ip_report_shape(url: str) -> None:
    status, body = get(f"{url}/vtapi/v2/ip-address/report", headers=None, ip="151.101.0.1", apikey=KEY)
    assert status == 200 and body["response_code"] == 1 and body["verbose_msg"] == "IP address in dataset"
    for key in ("as_owner", "asn", "country", "whois", "resolutions", "detected_urls",
                "detected_downloaded_samples", "undetected_downloaded_samples", "detected_referrer_samples",
                "undetected_referrer_samples", "detected_communicating_samples", "undetected_communicating_samples"):
        assert key in body, key
    for r in body["resolutions"]:
        assert set(r) == {"hostname", "last_resolved"}
    for s in body["detected_communicating_samples"] + body["undetected_downloaded_samples"]:
        assert set(s) == {"date", "positives", "total", "sha256"}
    # v2 and v3 tell the same story
    v3 = get(f"{url}/api/v3/ip_addresses/151.101.0.1")[1]["data"]["attributes"]
    assert (v3["asn"], v3["as_owner"], v3["country"]) == (body["asn"], body["as_owner"], body["country"])


def test_v2_domain_report_shape(url: str) -> None:
    status, body = get(f"{url}/vtapi/v2/domain/report", headers=None, domain="github.com", apikey=KEY)
    assert status == 200 and body["verbose_msg"] == "Domain found in dataset"
    for key in ("categories", "whois", "whois_timestamp", "BitDefender category", "Dr.Web category",
                "Opera domain info", "Websense ThreatSeeker category", "resolutions", "domain_siblings",
                "subdomains", "detected_urls", "detected_downloaded_samples", "undetected_referrer_samples"):
        assert key in body, key
    assert set(body["Webutation domain info"]) == {"Safety score", "Adult content", "Verdict"}
    for r in body["resolutions"]:
        assert set(r) == {"ip_address", "last_resolved"}


def test_v2_file_report_allinfo_has_every_threatq_key(url: str) -> None:
    status, body = post(f"{url}/vtapi/v2/file/report", {"resource": "cd" * 32, "allinfo": "1", "apikey": KEY},
                        headers=None)
    assert status == 200 and body["response_code"] == 1
    assert body["verbose_msg"] == "Scan finished, information embedded"
    for key in ("md5", "sha1", "sha256", "ssdeep", "authentihash", "type", "unique_sources", "first_seen",
                "positives", "total", "community_reputation", "harmless_votes", "malicious_votes", "permalink",
                "scan_date", "scan_id", "submission_names", "scans"):
        assert key in body, key
    scan = next(iter(body["scans"].values()))
    assert set(scan) == {"detected", "version", "result", "update"}
    info = body["additional_info"]
    for key in ("pe-timestamp", "exiftool", "pe-imphash", "pe-resource-langs", "deepguard", "sigcheck",
                "positives_delta", "pe-machine-type", "trid", "magic", "main_icon", "behaviour-v1",
                "pe-resource-types", "network_infrastructure", "pe-entry-point", "pe-resource-detail",
                "contacted_domains", "officecheck", "imports"):
        assert key in info, key
    assert set(info["main_icon"]) == {"raw_md5", "dhash"}
    assert set(info["officecheck"]) == {"document_summary_info", "summary_info"}
    assert set(info["pe-resource-detail"][0]) == {"sha256", "lang", "chi2", "filetype", "entropy", "type"}
    b = info["behaviour-v1"]
    assert b["process"]["tree"][0]["name"]
    assert set(b["runtime-dlls"][0]) == {"success", "file"}
    assert b["mutex"]["opened"] and b["mutex"]["created"]
    for op in ("opened", "read", "written", "moved", "downloaded", "replaced", "deleted", "copied"):
        assert b["filesystem"][op][0]["path"], op
    assert "network" in b
    status, basic = get(f"{url}/vtapi/v2/file/report", headers=None, resource="cd" * 32, apikey=KEY)
    assert "additional_info" not in basic and basic["sha256"] == body["sha256"]


def test_v2_url_report_allinfo_shape(url: str) -> None:
    target = "http://login.example.net/redirect/unreachable"
    status, body = get(f"{url}/vtapi/v2/url/report", headers=None, resource=target, allinfo="1", apikey=KEY)
    assert status == 200 and body["response_code"] == 1
    assert body["verbose_msg"] == "Scan finished, scan information embedded in this object"
    for key in ("url", "filescan_id", "positives", "total", "scans", "scan_id", "permalink", "scan_date",
                "first_seen", "last_seen"):
        assert key in body, key
    assert body["url"] == target
    info = body["additional_info"]
    for key in ("resolution", "resolution_country", "BitDefender category", "Forcepoint ThreatSeeker category",
                "Sophos description", "URL contact error", "redirector"):
        assert key in info, key
    assert all({"detected", "result"} <= set(s) for s in body["scans"].values())
    assert any("detail" in s for s in body["scans"].values())


# --------------------------------------------------------------------------- analyses


def test_v3_url_scan_queued_then_completed_then_known(url: str) -> None:
    target = "http://notfound.example.org/payload.exe"
    assert get(f"{url}/api/v3/urls/{url_id(target)}")[0] == 404
    status, desc = post(f"{url}/api/v3/urls", {"url": target})
    assert status == 200
    aid = desc["data"]["id"]
    sha = hashlib.sha256(target.encode()).hexdigest()
    assert aid.startswith(f"u-{sha}-") and desc["data"]["type"] == "analysis"
    status, queued = get(f"{url}/api/v3/analyses/{aid}")
    attrs = queued["data"]["attributes"]
    assert (attrs["status"], attrs["results"]) == ("queued", {}) and sum(attrs["stats"].values()) == 0
    assert queued["meta"]["url_info"] == {"id": sha, "url": target}
    assert get(f"{url}/api/v3/urls/{url_id(target)}")[0] == 404
    CLOCK.advance(SCAN_S + 0.1)
    done = get(f"{url}/api/v3/analyses/{aid}")[1]
    attrs = done["data"]["attributes"]
    assert attrs["status"] == "completed" and sum(attrs["stats"].values()) == len(attrs["results"]) > 60
    status, obj = get(f"{url}/api/v3/urls/{sha}")
    assert status == 200 and obj["data"]["attributes"]["url"] == target
    assert obj["data"]["attributes"]["last_analysis_stats"] == attrs["stats"]
    assert get(f"{url}/api/v3/analyses/nope")[0] == 404


def test_v3_never_complete_keeps_analyses_queued(url: str) -> None:
    control(url, "config", {"never_complete": True, "scan_seconds": 0})
    aid = post(f"{url}/api/v3/urls", {"url": "http://example.com/never"})[1]["data"]["id"]
    assert get(f"{url}/api/v3/analyses/{aid}")[1]["data"]["attributes"]["status"] == "queued"


def test_v2_url_scan_then_report_minus2_then_1(url: str) -> None:
    target = "http://notfound.example.com/login.php"
    status, scan = post(f"{url}/vtapi/v2/url/scan", {"url": target, "apikey": KEY}, headers=None)
    assert status == 200 and scan["response_code"] == 1
    assert scan["verbose_msg"] == "Scan request successfully queued, come back later for the report"
    assert scan["scan_id"].startswith(hashlib.sha256(target.encode()).hexdigest() + "-")
    assert scan["permalink"].startswith("https://www.virustotal.com/url/")
    report = get(f"{url}/vtapi/v2/url/report", headers=None, resource=scan["scan_id"], apikey=KEY)[1]
    assert report["response_code"] == -2
    CLOCK.advance(SCAN_S + 0.1)
    report = get(f"{url}/vtapi/v2/url/report", headers=None, resource=scan["scan_id"], apikey=KEY)[1]
    assert report["response_code"] == 1 and report["url"] == target and report["scans"]
    by_url = get(f"{url}/vtapi/v2/url/report", headers=None, resource=target, apikey=KEY)[1]
    assert by_url["positives"] == report["positives"]
    # scan=1 on an unknown URL queues it, like v2 did
    other = "http://notfound.example.com/other"
    assert get(f"{url}/vtapi/v2/url/report", headers=None, resource=other, apikey=KEY)[1]["response_code"] == 0
    queued = get(f"{url}/vtapi/v2/url/report", headers=None, resource=other, scan="1", apikey=KEY)[1]
    assert queued["response_code"] == 1 and queued["scan_id"]


def test_v3_file_upload_analysis_then_hash_known(url: str) -> None:
    control(url, "config", {"not_found_ratio": 1.0})
    content = os.urandom(4096)
    sha256, md5 = hashlib.sha256(content).hexdigest(), hashlib.md5(content).hexdigest()
    assert get(f"{url}/api/v3/files/{sha256}")[0] == 404
    status, desc = post(f"{url}/api/v3/files", file_form(content))
    assert status == 200
    aid = desc["data"]["id"]
    assert base64.b64decode(aid).decode().startswith(md5 + ":")
    queued = get(f"{url}/api/v3/analyses/{aid}")[1]
    assert queued["data"]["attributes"]["status"] == "queued"
    assert queued["meta"]["file_info"] == {"sha256": sha256, "md5": md5,
                                           "sha1": hashlib.sha1(content).hexdigest(), "size": 4096}
    assert get(f"{url}/api/v3/files/{sha256}")[0] == 404
    CLOCK.advance(SCAN_S + 0.1)
    done = get(f"{url}/api/v3/analyses/{aid}")[1]
    assert done["data"]["attributes"]["status"] == "completed"
    engine = next(iter(done["data"]["attributes"]["results"].values()))
    assert {"engine_version", "engine_update", "category", "result"} <= set(engine)
    for h in (sha256, md5):
        status, obj = get(f"{url}/api/v3/files/{h}")
        assert status == 200
        attrs = obj["data"]["attributes"]
        assert (attrs["sha256"], attrs["md5"], attrs["size"]) == (sha256, md5, 4096)


def test_v3_upload_url_flow(url: str) -> None:
    status, body = get(f"{url}/api/v3/files/upload_url")
    assert status == 200 and body["data"].startswith(f"{url}/_upload/")
    content = b"large file stand-in" * 1000
    status, desc = post(body["data"], file_form(content))
    assert status == 200 and desc["data"]["type"] == "analysis"
    CLOCK.advance(SCAN_S + 0.1)
    assert get(f"{url}/api/v3/analyses/{desc['data']['id']}")[1]["data"]["attributes"]["status"] == "completed"
    assert post(f"{url}/_upload/bogus", file_form(b"x"))[0] == 404
    kinds = control(url, "stats")["by_kind"]
    assert kinds["upload_url"]["accepted"] == 1 and kinds["submission"]["accepted"] == 2


def test_v2_file_scan_then_report_minus2_then_1(url: str) -> None:
    control(url, "config", {"not_found_ratio": 1.0})
    content = os.urandom(1000)
    sha256 = hashlib.sha256(content).hexdigest()
    status, scan = post(f"{url}/vtapi/v2/file/scan", file_form(content, apikey=KEY), headers=None)
    assert status == 200 and scan["response_code"] == 1 and scan["sha256"] == sha256
    assert scan["md5"] == hashlib.md5(content).hexdigest() and scan["scan_id"].startswith(sha256 + "-")
    assert post(f"{url}/vtapi/v2/file/scan", file_form(content, apikey="bad"), headers=None) == (403, None)
    report = get(f"{url}/vtapi/v2/file/report", headers=None, resource=sha256, apikey=KEY)[1]
    assert report["response_code"] == -2 and report["verbose_msg"] == "Your resource is queued for analysis"
    CLOCK.advance(SCAN_S + 0.1)
    report = get(f"{url}/vtapi/v2/file/report", headers=None, resource=scan["scan_id"], apikey=KEY)[1]
    assert report["response_code"] == 1 and report["sha256"] == sha256
    status, rescan = post(f"{url}/vtapi/v2/file/rescan", {"resource": sha256, "apikey": KEY}, headers=None)
    assert rescan["response_code"] == 1 and rescan["sha256"] == sha256


# --------------------------------------------------------------------------- quota gate


def test_rate_limit_is_strict_v3_429_and_v2_204(url: str) -> None:
    control(url, "config", {"rate_per_minute": 30, "retry_after_s": 7})

    async def burst(s: aiohttp.ClientSession) -> list[int]:
        return [(await _get(s, f"{url}/api/v3/ip_addresses/10.0.0.{i}", headers=V3))[0] for i in range(35)]
    statuses = run(burst)
    assert statuses == [200] * 30 + [429] * 5
    status, body = get(f"{url}/api/v3/ip_addresses/8.8.8.8")
    assert (status, body) == (429, {"error": {"code": "QuotaExceededError", "message": "Quota exceeded"}})
    headers = run(lambda s: _headers(s, f"{url}/api/v3/ip_addresses/8.8.8.8"))
    assert headers.get("Retry-After") == "7"
    assert get(f"{url}/vtapi/v2/ip-address/report", headers=None, ip="8.8.8.8", apikey=KEY) == (204, None)
    stats = control(url, "stats")
    assert stats["accepted"] == 30 and stats["rejected_quota"] == 8
    assert stats["max_accepted_in_any_60s"] == 30
    assert stats["by_kind"]["object"] == {"accepted": 30, "rejected": 8}


async def _headers(s: aiohttp.ClientSession, u: str) -> dict[str, str]:
    async with s.get(u, headers=V3) as resp:
        await resp.read()
        return dict(resp.headers)


def test_daily_quota(url: str) -> None:
    control(url, "config", {"daily_quota": 3})
    assert [get(f"{url}/api/v3/domains/example.com")[0] for _ in range(4)] == [200, 200, 200, 429]
    assert control(url, "stats")["rejected_daily"] == 1


def test_sliding_window_gate_counts_only_accepted_requests() -> None:
    gate = Gate()
    for i in range(4):
        assert gate.allows(1000.0 + i, 4, None) is None
        gate.accept(1000.0 + i)
    assert gate.allows(1059.9, 4, None) == "rate"        # still 4 accepted in the last 60 s
    assert gate.allows(1060.0, 4, None) is None          # the first one left the window
    gate.accept(1060.0)
    assert gate.allows(1060.5, 4, None) == "rate"
    assert gate.max_in_window == 4
    for t in (1200.0, 1200.1):
        gate.accept(t)
    assert gate.in_window(1200.2) == 2 and gate.max_in_window == 4
    assert gate.allows(1200.2, None, 7) == "daily"       # 7 accepted on this UTC day


# --------------------------------------------------------------------------- faults


def test_fault_500_for_next_request_then_normal(url: str) -> None:
    control(url, "faults", {"mode": "500", "count": 1, "match": "/ip_addresses/"})
    assert get(f"{url}/api/v3/domains/example.com")[0] == 200        # path does not match
    status, body = get(f"{url}/api/v3/ip_addresses/8.8.8.8")
    assert status == 500 and body["error"]["code"] == "InternalError"
    assert get(f"{url}/api/v3/ip_addresses/8.8.8.8")[0] == 200
    control(url, "faults", {"mode": "503"})
    v2_url = f"{url}/vtapi/v2/ip-address/report?ip=8.8.8.8&apikey={KEY}"
    assert run(lambda s: _get(s, v2_url))[0] == 503
    control(url, "faults", {"mode": "401", "count": 1})
    assert get(f"{url}/api/v3/ip_addresses/8.8.8.8")[1]["error"]["code"] == "WrongCredentialsError"
    assert control(url, "stats")["faults_injected"] == 3


def test_fault_truncated_malformed_reset_timeout(url: str) -> None:
    control(url, "faults", {"mode": "truncated", "count": 1})
    with pytest.raises(aiohttp.ClientPayloadError):
        get(f"{url}/api/v3/ip_addresses/8.8.8.8")
    control(url, "faults", {"mode": "malformed", "count": 1})
    status, raw = run(lambda s: _get(s, f"{url}/api/v3/ip_addresses/8.8.8.8", headers=V3))
    assert status == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)
    # aiohttp retries an idempotent request once after a disconnect, so reset two connections
    control(url, "faults", {"mode": "reset", "count": 2})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        get(f"{url}/api/v3/ip_addresses/8.8.8.8")
    control(url, "faults", {"mode": "timeout", "count": 1})
    with pytest.raises(asyncio.TimeoutError):
        run(lambda s: _get(s, f"{url}/api/v3/ip_addresses/8.8.8.8", headers=V3), timeout=0.3)
    assert control(url, "faults") == {"mode": "none", "count": None, "match": None}
    assert get(f"{url}/api/v3/ip_addresses/8.8.8.8")[0] == 200
    assert control(url, "stats")["faults_injected"] == 5


def test_bad_control_requests_are_400(url: str) -> None:
    async def go(s: aiohttp.ClientSession) -> list[int]:
        out = []
        for path, body in (("faults", {"mode": "explode"}), ("config", {"port": 1}),
                           ("config", {"rate_per_minute": "x"})):
            async with s.post(f"{url}/_emulator/{path}", data=orjson.dumps(body)) as resp:
                out.append(resp.status)
        return out
    assert run(go) == [400, 400, 400]


# --------------------------------------------------------------------------- verdicts that change


def test_a_set_verdict_answers_v3_and_v2_until_cleared(url: str) -> None:
    sha = hashlib.sha256(b"verdict").hexdigest()
    paths = {"domain": ("/api/v3/domains/clean.example", "clean.example"),
             "ip": ("/api/v3/ip_addresses/198.51.100.7", "198.51.100.7"), "file": (f"/api/v3/files/{sha}", sha)}
    before = {kind: get(url + path)[1]["data"]["attributes"] for kind, (path, _) in paths.items()}
    CLOCK.advance(60)
    for kind, (_, value) in paths.items():
        listed = control(url, "verdicts", {"type": kind, "value": value, "positives": 12})
    assert {(row["type"], row["positives"]) for row in listed} == {("domain", 12), ("ip", 12), ("file", 12)}
    for kind, (path, _) in paths.items():
        now = get(url + path)[1]["data"]["attributes"]
        assert now["last_analysis_stats"]["malicious"] == 12, kind
        assert now["last_analysis_date"] > before[kind]["last_analysis_date"], kind  # a new analysis
    v2 = get(f"{url}/vtapi/v2/file/report", headers=None, apikey=KEY, resource=sha)[1]
    assert v2["positives"] == 12
    control(url, "verdicts", {"type": "domain", "value": "clean.example", "positives": None})
    assert get(url + paths["domain"][0])[1]["data"]["attributes"] == before["domain"]


@pytest.mark.parametrize("body", [{"type": "email", "value": "x", "positives": 1},
                                  {"type": "ip", "value": "", "positives": 1},
                                  {"type": "ip", "value": "1.2.3.4", "positives": -1},
                                  {"type": "ip", "value": "1.2.3.4", "positives": True}])
def test_a_bad_verdict_is_400(url: str, body: dict[str, Any]) -> None:
    async def go(s: aiohttp.ClientSession) -> int:
        async with s.post(f"{url}/_emulator/verdicts", data=orjson.dumps(body)) as resp:
            return resp.status
    assert run(go) == 400


# --------------------------------------------------------------------------- stats and serve


def test_stats_count_kinds_and_lookups(url: str) -> None:
    for _ in range(3):
        get(f"{url}/api/v3/ip_addresses/8.8.8.8")
    get(f"{url}/api/v3/domains/example.com")
    get(f"{url}/api/v3/domains/example.com/subdomains")
    aid = post(f"{url}/api/v3/urls", {"url": "http://example.com/a"})[1]["data"]["id"]
    get(f"{url}/api/v3/analyses/{aid}")
    stats = control(url, "stats")
    assert stats["by_kind"]["object"]["accepted"] == 4
    assert stats["by_kind"]["relationship"]["accepted"] == 1
    assert stats["by_kind"]["submission"]["accepted"] == 1
    assert stats["by_kind"]["analysis"]["accepted"] == 1
    assert stats["accepted"] == 7 and stats["max_accepted_in_any_60s"] == 7
    assert stats["unique_lookups"] == 2 and stats["max_lookups_per_indicator"] == 3
    assert stats["top_lookups"]["ip:8.8.8.8"] == 3
    assert stats["config"]["api_keys"] == 1     # a count, never the keys


def test_serve_prints_ready_line_with_real_port() -> None:
    code = ("import asyncio; from pipeline.devtools.emulator import EmulatorConfig, serve; "
            "asyncio.run(serve(EmulatorConfig(port=0)))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("vtstream emulator listening on http://127.0.0.1:") and line.endswith("(api v3 + v2)")
        port = int(line.split("127.0.0.1:")[1].split()[0])
        assert port > 0
        assert get(f"http://127.0.0.1:{port}/_emulator/health", headers=None) == (200, {"ok": True})
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_recorded_answers_are_served_as_recorded_and_the_rest_is_plainly_synthetic(url: str) -> None:
    """The demo's 8.8.8.8 is Google's, as VirusTotal recorded it; an unrecorded address says it is made up."""
    real = get(f"{url}/api/v3/ip_addresses/8.8.8.8")[1]["data"]["attributes"]
    assert (real["asn"], real["as_owner"]) == (15169, "Google LLC")
    assert get(f"{url}/vtapi/v2/ip-address/report", headers=None, ip="8.8.8.8", apikey=KEY)[1]["response_code"] == 1
    drawn = get(f"{url}/api/v3/ip_addresses/2001:4860:4860::8888")[1]["data"]["attributes"]
    assert "EMULATOR" in drawn["as_owner"] and 64496 <= drawn["asn"] <= 65551
    related = get(f"{url}/api/v3/ip_addresses/8.8.8.8", relationships="resolutions")[1]["data"]
    assert related["attributes"]["as_owner"] == "Google LLC" and "resolutions" in related["relationships"]
