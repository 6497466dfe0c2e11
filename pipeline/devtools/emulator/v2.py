"""API v2 bodies, shaped like the real ones in ``tests/samples/vt/v2``.

``response_code`` is 1 (found / queued by a scan request), 0 (not in the
dataset) or -2 (queued for analysis); ``verbose_msg`` uses VirusTotal's own
sentences. Report permalinks point at the real GUI, as v2 did.
"""

from __future__ import annotations

from typing import Any

from pipeline.devtools.emulator.data import SampleRef, UrlRef, v2_date
from pipeline.devtools.emulator.netdata import DomainFacts, IpFacts, UrlFacts
from pipeline.devtools.emulator.engines import EngineResult
from pipeline.devtools.emulator.filedata import FileFacts

Json = dict[str, Any]

MSG_IP_FOUND = "IP address in dataset"
MSG_IP_MISSING = "Missing IP address"
MSG_DOMAIN_FOUND = "Domain found in dataset"
MSG_DOMAIN_MISSING = "Domain not found"
MSG_SCAN_FINISHED = "Scan finished, information embedded"
MSG_URL_FINISHED = "Scan finished, scan information embedded in this object"
MSG_QUEUED = "Scan request successfully queued, come back later for the report"
MSG_IN_QUEUE = "Your resource is queued for analysis"
MSG_FILE_MISSING = "The requested resource is not among the finished, queued or pending scans"
MSG_URL_MISSING = "Resource does not exist in the dataset"
MSG_INVALID_URL = "Invalid URL, the scan request was not queued"
MSG_RESCAN = "Scan request successfully queued, come back later for the report"


def _samples(refs: list[SampleRef]) -> list[Json]:
    return [{"date": v2_date(s.date), "positives": s.positives, "total": s.total, "sha256": s.sha256} for s in refs]


def _urls(refs: list[UrlRef]) -> list[Json]:
    return [{"url": u.url, "positives": u.positives, "total": u.total, "scan_date": v2_date(u.date)} for u in refs]


def _sample_lists(f: IpFacts | DomainFacts) -> Json:
    s = f.samples
    return {
        "detected_downloaded_samples": _samples(s.detected_downloaded),
        "undetected_downloaded_samples": _samples(s.undetected_downloaded),
        "detected_referrer_samples": _samples(s.detected_referrer),
        "undetected_referrer_samples": _samples(s.undetected_referrer),
        "detected_communicating_samples": _samples(s.detected_communicating),
        "undetected_communicating_samples": _samples(s.undetected_communicating),
    }


def ip_report(f: IpFacts) -> Json:
    return {
        "asn": f.asn, "as_owner": f.as_owner, "country": f.country, "network": f.network,
        "whois": f.whois, "whois_timestamp": f.whois_date,
        "resolutions": [{"last_resolved": v2_date(d), "hostname": h} for h, d in f.resolutions],
        "detected_urls": _urls(f.urls), **_sample_lists(f),
        "response_code": 1, "verbose_msg": MSG_IP_FOUND,
    }


def domain_report(f: DomainFacts) -> Json:
    return {
        "categories": f.v2_categories, "whois": f.whois, "whois_timestamp": f.whois_date,
        "BitDefender category": f.categories["BitDefender"], "Dr.Web category": f.categories["Dr.Web"],
        "Forcepoint ThreatSeeker category": f.categories["Forcepoint ThreatSeeker"],
        "Websense ThreatSeeker category": f.categories["Forcepoint ThreatSeeker"],
        "alphaMountain.ai category": f.categories["alphaMountain.ai"],
        "Opera domain info": f.opera, "BitDefender domain info": f.opera,
        "Webutation domain info": f.webutation,
        "resolutions": [{"last_resolved": v2_date(d), "ip_address": ip} for ip, d in f.resolutions],
        "domain_siblings": f.siblings, "subdomains": f.subdomains,
        "dns_records": f.dns_records, "dns_records_date": f.dns_date,
        "detected_urls": _urls(f.urls), **_sample_lists(f),
        "response_code": 1, "verbose_msg": MSG_DOMAIN_FOUND,
    }


def _permalink(kind: str, sha256: str, epoch: int) -> str:
    return f"https://www.virustotal.com/{kind}/{sha256}/analysis/{epoch}/"


def url_scans(verdicts: list[EngineResult]) -> Json:
    out: Json = {}
    for r in verdicts:
        result = {"clean": "clean site", "unrated": "unrated site"}.get(r.result or "", f"{r.result} site")
        entry: Json = {"detected": r.detected, "result": result}
        if r.detail:
            entry["detail"] = r.detail
        out[r.engine] = entry
    return out


def url_report(f: UrlFacts, resource: str, *, allinfo: bool) -> Json:
    date = f.last_analysis_date
    body: Json = {
        "permalink": _permalink("url", f.url_id, date), "resource": resource, "url": f.url,
        "response_code": 1, "scan_date": v2_date(date), "scan_id": f"{f.url_id}-{date}",
        "verbose_msg": MSG_URL_FINISHED, "filescan_id": f.filescan_id,
        "positives": sum(1 for r in f.verdicts if r.detected), "total": len(f.verdicts),
        "scans": url_scans(f.verdicts),
        "first_seen": v2_date(f.first_submission_date), "last_seen": v2_date(date),
    }
    if allinfo:
        info: Json = {
            "resolution": f.serving_ip, "resolution_country": f.serving_country,
            "BitDefender category": f.categories["BitDefender"],
            "Forcepoint ThreatSeeker category": f.categories["Forcepoint ThreatSeeker"],
            "sophos category": f.categories["Sophos"], "Sophos description": f.categories["Sophos"],
            "Response code": f.http_code, "Response content SHA-256": f.url_id, "rlength": 1024 + len(f.url) * 37,
            "Response headers": {"content-type": "text/html; charset=utf-8", "server": "nginx"},
        }
        if f.redirector:
            info["redirector"] = f.redirector
        if f.contact_error:
            info["URL contact error"] = f.contact_error
        body["additional_info"] = info
    return body


def scans_file(verdicts: list[EngineResult]) -> Json:
    return {r.engine: {"detected": r.detected, "version": r.version, "result": r.result, "update": r.update}
            for r in verdicts if r.category != "type-unsupported"}


def file_report(f: FileFacts, resource: str, *, allinfo: bool) -> Json:
    date = f.last_analysis_date
    scans = scans_file(f.verdicts)
    body: Json = {
        "scans": scans, "scan_id": f"{f.sha256}-{date}", "sha1": f.sha1, "resource": resource, "response_code": 1,
        "scan_date": v2_date(date), "permalink": _permalink("file", f.sha256, date),
        "verbose_msg": MSG_SCAN_FINISHED, "total": len(scans), "positives": sum(1 for s in scans.values() if s["detected"]),
        "sha256": f.sha256, "md5": f.md5,
    }
    if allinfo:
        b = f.behaviour
        body.update({
            "vhash": f.vhash, "submission_names": f.names, "first_seen": v2_date(f.first_seen),
            "last_seen": v2_date(date), "times_submitted": f.times_submitted, "size": f.size,
            "type": f.type_description, "tags": f.tags, "unique_sources": f.unique_sources,
            "ssdeep": f.ssdeep, "authentihash": f.authentihash, "community_reputation": f.reputation,
            "harmless_votes": f.votes[0], "malicious_votes": f.votes[1], "ITW_urls": f.itw_urls,
            "additional_info": {
                "magic": f.magic, "trid": "\n".join(f"{t} ({p}%)" for t, p in f.trid), "exiftool": f.exiftool,
                "sigcheck": f.sigcheck, "deepguard": f.deepguard, "positives_delta": f.positives_delta,
                "pe-timestamp": f.pe_timestamp, "pe-imphash": f.imphash, "pe-machine-type": f.machine_type,
                "pe-entry-point": f.entry_point, "pe-resource-langs": f.resource_langs,
                "pe-resource-types": f.resource_types, "pe-resource-detail": f.resource_details,
                "pe-resource-list": {d["sha256"]: d["filetype"] for d in f.resource_details},
                "imports": {lib.replace(".", "_!_"): fns for lib, fns in f.imports.items()},
                "main_icon": f.main_icon, "officecheck": f.office,
                "contacted_domains": f.contacted_domains,
                "network_infrastructure": f.contacted_domains + f.contacted_ips,
                "behaviour-v1": {
                    "process": {"tree": b.process_tree, "created": [], "injected": [], "shellcmds": [], "terminated": []},
                    "runtime-dlls": [{"file": d, "success": ok} for d, ok in b.runtime_dlls],
                    "mutex": {"opened": [{"mutex": m, "success": True} for m in b.mutexes_opened],
                              "created": [{"mutex": m, "success": True} for m in b.mutexes_created]},
                    "filesystem": {op: [{"path": p, "success": True} for p in paths] for op, paths in b.files.items()},
                    "network": {"dns": [{"hostname": h, "ip": ip} for h, ip in b.dns], "tcp": b.tcp, "udp": b.udp,
                                "http": [{"url": u, "method": m, "user-agent": "Mozilla/4.0 (compatible; MSIE 8.0)"}
                                         for u, m in b.http]},
                    "registry": {"set": [], "deleted": []}, "hooking": [], "extra": [],
                },
            },
        })
    return body


def not_found(kind: str, resource: str | None) -> Json:
    if kind == "ip":
        return {"response_code": 0, "verbose_msg": MSG_IP_MISSING}
    if kind == "domain":
        return {"response_code": 0, "verbose_msg": MSG_DOMAIN_MISSING}
    if kind == "url":
        return {"response_code": 0, "resource": resource, "verbose_msg": MSG_URL_MISSING}
    return {"response_code": 0, "resource": resource, "verbose_msg": MSG_FILE_MISSING}


def queued(resource: str, scan_id: str) -> Json:
    """A report request for something still being analysed."""
    return {"response_code": -2, "resource": resource, "scan_id": scan_id, "verbose_msg": MSG_IN_QUEUE}


def url_scan(url: str, url_id: str, epoch: int, resource: str | None = None) -> Json:
    return {"permalink": _permalink("url", url_id, epoch), "resource": resource or url, "url": url,
            "response_code": 1, "scan_date": v2_date(epoch), "scan_id": f"{url_id}-{epoch}", "verbose_msg": MSG_QUEUED}


def file_scan(md5: str, sha1: str, sha256: str, epoch: int, *, rescan: bool = False) -> Json:
    body: Json = {"scan_id": f"{sha256}-{epoch}", "sha1": sha1, "resource": sha256, "response_code": 1,
                  "sha256": sha256, "permalink": _permalink("file", sha256, epoch), "md5": md5,
                  "verbose_msg": MSG_RESCAN if rescan else MSG_QUEUED}
    return body
