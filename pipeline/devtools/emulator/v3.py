"""API v3 bodies: objects, relationship descriptors and listings, analyses.

Shapes follow the real bodies in ``tests/samples/vt/v3``. ``base`` is the
``.../api/v3`` URL the client called, so ``links`` point back at the emulator.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.devtools.emulator.data import seeded, sha256_of, valid_ip
from pipeline.devtools.emulator.netdata import DomainFacts, IpFacts, UrlFacts, domain_facts, ip_facts, url_facts
from pipeline.devtools.emulator.engines import EngineResult, stats
from pipeline.devtools.emulator.filedata import FileFacts, file_facts

Json = dict[str, Any]

#: The endpoint collection for each object type.
COLLECTION = {"ip_address": "ip_addresses", "domain": "domains", "file": "files", "url": "urls"}


def results(verdicts: list[EngineResult], *, file: bool) -> Json:
    out: Json = {}
    for r in verdicts:
        entry: Json = {"category": r.category, "engine_name": r.engine}
        if file:
            entry["engine_version"] = r.version
            entry["engine_update"] = r.update
        entry["method"] = "blacklist"
        entry["result"] = r.result
        out[r.engine] = entry
    return out


def _object(kind: str, oid: str, base: str, attributes: Json) -> Json:
    return {"type": kind, "id": oid, "links": {"self": f"{base}/{COLLECTION[kind]}/{oid}"}, "attributes": attributes}


def ip_object(f: IpFacts, base: str) -> Json:
    return _object("ip_address", f.ip, base, {
        "as_owner": f.as_owner, "asn": f.asn, "continent": f.continent, "country": f.country,
        "network": f.network, "regional_internet_registry": f.rir, "whois": f.whois, "whois_date": f.whois_date,
        "last_analysis_date": f.last_analysis_date, "last_analysis_results": results(f.verdicts, file=False),
        "last_analysis_stats": stats(f.verdicts, file=False), "last_modification_date": f.last_modification_date,
        "reputation": f.reputation, "tags": list(f.tags),
        "total_votes": {"harmless": f.votes[0], "malicious": f.votes[1]},
    })


def domain_object(f: DomainFacts, base: str) -> Json:
    return _object("domain", f.domain, base, {
        "categories": f.categories, "creation_date": f.creation_date, "last_dns_records": f.dns_records,
        "last_dns_records_date": f.dns_date, "last_analysis_date": f.last_analysis_date,
        "last_analysis_results": results(f.verdicts, file=False), "last_analysis_stats": stats(f.verdicts, file=False),
        "last_modification_date": f.last_modification_date, "last_update_date": f.whois_date,
        "popularity_ranks": f.popularity, "registrar": f.registrar, "reputation": f.reputation,
        "tags": [], "tld": f.domain.rsplit(".", 1)[-1],
        "total_votes": {"harmless": f.votes[0], "malicious": f.votes[1]}, "whois": f.whois, "whois_date": f.whois_date,
    })


def url_object(f: UrlFacts, base: str) -> Json:
    return _object("url", f.url_id, base, {
        "url": f.url, "last_final_url": f.final_url, "title": f.title, "categories": f.categories,
        "first_submission_date": f.first_submission_date, "last_submission_date": f.last_submission_date,
        "last_analysis_date": f.last_analysis_date, "last_modification_date": f.last_analysis_date,
        "last_analysis_results": results(f.verdicts, file=False), "last_analysis_stats": stats(f.verdicts, file=False),
        "last_http_response_code": f.http_code, "has_content": False, "times_submitted": f.times_submitted,
        "threat_names": f.threat_names, "reputation": f.reputation, "tags": f.tags,
        "total_votes": {"harmless": f.votes[0], "malicious": f.votes[1]},
    })


def file_object(f: FileFacts, base: str) -> Json:
    verdicts = f.verdicts
    obj = _object("file", f.sha256, base, {
        "md5": f.md5, "sha1": f.sha1, "sha256": f.sha256, "ssdeep": f.ssdeep, "authentihash": f.authentihash,
        "tlsh": f.tlsh, "vhash": f.vhash, "names": f.names, "meaningful_name": f.meaningful_name,
        "type_description": f.type_description, "type_tag": f.type_tag, "type_extension": f.type_tag[2:],
        "magic": f.magic, "trid": [{"file_type": t, "probability": p} for t, p in f.trid], "size": f.size,
        "unique_sources": f.unique_sources, "first_submission_date": f.first_seen,
        "last_submission_date": f.last_submission_date, "last_analysis_date": f.last_analysis_date,
        "last_modification_date": f.last_analysis_date, "times_submitted": f.times_submitted,
        "last_analysis_stats": stats(verdicts, file=True), "last_analysis_results": results(verdicts, file=True),
        "total_votes": {"harmless": f.votes[0], "malicious": f.votes[1]}, "reputation": f.reputation, "tags": f.tags,
        "creation_date": f.pe_timestamp, "exiftool": f.exiftool, "main_icon": f.main_icon,
        "pe_info": {
            "timestamp": f.pe_timestamp, "imphash": f.imphash, "machine_type": f.machine_type,
            "entry_point": f.entry_point, "resource_langs": f.resource_langs, "resource_types": f.resource_types,
            "resource_details": f.resource_details,
            "import_list": [{"library_name": lib, "imported_functions": fns} for lib, fns in f.imports.items()],
        },
        "signature_info": {k: v for k, v in f.sigcheck.items() if v},
        "office_info": f.office,
        "sandbox_verdicts": {f.behaviour.sandbox: {
            "category": "malicious" if f.positives else "harmless", "sandbox_name": f.behaviour.sandbox,
            "malware_classification": ["TROJAN"] if f.positives else ["CLEAN"],
            **({"malware_names": [f.family]} if f.positives else {})}},
        "sigma_analysis_stats": {"critical": 0, "high": 1 if f.positives > 20 else 0,
                                 "medium": 2 if f.positives else 0, "low": 1},
    })
    if f.positives:
        obj["attributes"]["popular_threat_classification"] = {
            "suggested_threat_label": f"trojan.{f.family.lower()}",
            "popular_threat_name": [{"value": f.family.lower(), "count": f.positives}]}
    return obj


def behaviour_object(f: FileFacts, base: str) -> Json:
    """One sandbox's report (the ``behaviours`` relationship)."""
    b = f.behaviour
    oid = f"{f.sha256}_{b.sandbox}"
    return {"type": "file_behaviour", "id": oid, "links": {"self": f"{base}/file_behaviours/{oid}"}, "attributes": {
        "sandbox_name": b.sandbox, "analysis_date": f.last_analysis_date, **_behaviour_attributes(f)}}


def has_sandbox_report(f: FileFacts) -> bool:
    """About one file in ten was never run by a sandbox (VirusTotal runs only some files)."""
    return int(f.sha256[:2], 16) >= 26


def summary_not_found(f: FileFacts) -> bool:
    """Half the files without a sandbox report answer 404 for the summary, half an empty one."""
    return int(f.sha256[:2], 16) < 13


def behaviour_summary(f: FileFacts) -> Json:
    """``GET /files/{id}/behaviour_summary``: the sandboxes' reports merged, without per-sandbox fields.

    Shaped on VirusTotal's published example (tests/golden/fixtures/v3/SOURCES.md); for a
    file no sandbox ran, the route answers 404 (:func:`summary_not_found`) or this empty ``data``.
    """
    if not has_sandbox_report(f):
        return {"data": {}}
    rng = seeded("file-behaviour-summary", f.sha256)
    attributes = _behaviour_attributes(f)
    attributes["ip_traffic"].append({"destination_ip": "192.168.0.255", "destination_port": 137,
                                     "transport_layer_protocol": "UDP"})  # NetBIOS broadcast: sandboxes see it
    return {"data": {
        **attributes,
        "calls_highlighted": ["GetTickCount", "IsDebuggerPresent", "CreateMutexW"],
        "processes_terminated": [n["name"] for n in attributes["processes_tree"]],
        "tags": ["DETECT_DEBUG_ENVIRONMENT", "LONG_SLEEPS"] + (["PERSISTENCE"] if f.positives else []),
        "mitre_attack_techniques": [
            {"id": tid, "signature_description": text, "severity": severity,
             "refs": [{"ref": "#signature_matches", "value": tid}]}
            for tid, text, severity in rng.sample(_TECHNIQUES, rng.randint(2, 4))],
    }}


#: (technique id, sandbox signature, severity) as VirusTotal's sandboxes report them.
_TECHNIQUES = tuple(tuple(row.split(" | ")) for row in """\
T1055 | Injects code into other processes | IMPACT_SEVERITY_HIGH
T1497 | May sleep (evasive loops) to hinder dynamic analysis | IMPACT_SEVERITY_LOW
T1547.001 | Creates an autostart registry key | IMPACT_SEVERITY_MEDIUM
T1082 | Reads software policies | IMPACT_SEVERITY_INFO
T1083 | Reads ini files | IMPACT_SEVERITY_INFO
T1070.004 | Deletes files inside the Windows folder | IMPACT_SEVERITY_INFO
T1036 | Creates files inside the user directory | IMPACT_SEVERITY_INFO""".splitlines())


def _behaviour_attributes(f: FileFacts) -> Json:
    """What one sandbox and the merged summary both say."""
    b = f.behaviour
    return {
        "processes_tree": [_proc_tree(p) for p in b.process_tree],
        "modules_loaded": [d for d, _ in b.runtime_dlls],
        "mutexes_opened": b.mutexes_opened, "mutexes_created": b.mutexes_created,
        "files_opened": b.files["opened"], "files_written": b.files["written"], "files_deleted": b.files["deleted"],
        "files_copied": [{"source": f"C:\\Users\\<USER>\\Desktop\\{f.meaningful_name}", "destination": p}
                         for p in b.files["copied"]],
        "files_dropped": [{"path": p, "sha256": sha256_of(p + f.sha256)} for p in b.files["written"]],
        "dns_lookups": [{"hostname": h, "resolved_ips": [ip]} for h, ip in b.dns],
        "ip_traffic": [{"destination_ip": t.rsplit(":", 1)[0], "destination_port": int(t.rsplit(":", 1)[1]),
                        "transport_layer_protocol": "TCP"} for t in b.tcp],
        "http_conversations": [{"url": u, "request_method": m} for u, m in b.http],
    }


def _proc_tree(p: dict[str, Any]) -> Json:
    return {"process_id": str(p["pid"]), "name": p["name"], "children": [_proc_tree(c) for c in p["children"]]}


def resolution_object(ip: str, host: str, date: int, base: str) -> Json:
    ipf, dom = ip_facts(ip), domain_facts(host)
    return {"type": "resolution", "id": ip + host, "links": {"self": f"{base}/resolutions/{ip}{host}"}, "attributes": {
        "date": date, "host_name": host, "ip_address": ip, "resolver": "VirusTotal",
        "ip_address_last_analysis_stats": stats(ipf.verdicts, file=False),
        "host_name_last_analysis_stats": stats(dom.verdicts, file=False)}}


def whois_object(wid: str, owner: str, whois: str, date: int, base: str) -> Json:
    wmap = dict(line.split(": ", 1) for line in whois.splitlines() if ": " in line)
    return {"type": "whois", "id": wid, "links": {"self": f"{base}/whois/{wid}"}, "attributes": {
        "first_seen_date": date, "last_updated": date, "registrant_country": wmap.get("Country", ""),
        "whois_map": wmap, "registrar_name": wmap.get("Registrar", owner)}}


# --------------------------------------------------------------------------- relationships

@dataclass(frozen=True, slots=True)
class Related:
    """One related object: its descriptor, and how to build the full object."""

    type: str
    id: str
    make: Callable[[str], Json]            # base -> full object
    context: Json | None = None

    def descriptor(self) -> Json:
        d: Json = {"type": self.type, "id": self.id}
        if self.context is not None:
            d["context_attributes"] = self.context
        return d


def _file(sha: str) -> Related:
    return Related("file", sha, lambda base: file_object(file_facts(sha), base))


def _ip(ip: str) -> Related:
    return Related("ip_address", ip, lambda base: ip_object(ip_facts(ip), base))


def _domain(d: str) -> Related:
    return Related("domain", d, lambda base: domain_object(domain_facts(d), base))


def _url(u: str) -> Related:
    return Related("url", sha256_of(u), lambda base: url_object(url_facts(u), base), {"url": u})


def _res(ip: str, host: str, date: int) -> Related:
    return Related("resolution", ip + host, lambda base: resolution_object(ip, host, date, base))


def _whois(wid: str, owner: str, whois: str, date: int) -> Related:
    return Related("whois", wid, lambda base: whois_object(wid, owner, whois, date, base))


def _host_rels(f: IpFacts | DomainFacts, owner: str, whois_every_days: int) -> dict[str, Callable[[], list[Related]]]:
    """What an IP address and a domain both relate to: files, URLs, and past whois records (``owner``
    in each, one every ``whois_every_days`` back from the newest)."""
    return {
        "communicating_files": lambda: [_file(s.sha256) for s in f.samples.all("communicating")],
        "downloaded_files": lambda: [_file(s.sha256) for s in f.samples.all("downloaded")],
        "referrer_files": lambda: [_file(s.sha256) for s in f.samples.all("referrer")],
        "urls": lambda: [_url(u.url) for u in f.urls],
        "historical_whois": lambda: [_whois(w, owner, f.whois, f.whois_date - i * 86_400 * whois_every_days)
                                     for i, w in enumerate(f.whois_ids)],
    }


def _ip_rels(f: IpFacts) -> dict[str, Callable[[], list[Related]]]:
    return {"resolutions": lambda: [_res(f.ip, h, d) for h, d in f.resolutions],
            **_host_rels(f, f.as_owner, whois_every_days=90)}


def _domain_rels(f: DomainFacts) -> dict[str, Callable[[], list[Related]]]:
    return {
        "resolutions": lambda: [_res(ip, f.domain, d) for ip, d in f.resolutions],
        "siblings": lambda: [_domain(d) for d in f.siblings],
        "subdomains": lambda: [_domain(d) for d in f.subdomains],
        **_host_rels(f, f.registrar, whois_every_days=365),
    }


def _file_rels(f: FileFacts) -> dict[str, Callable[[], list[Related]]]:
    return {
        "contacted_domains": lambda: [_domain(d) for d in f.contacted_domains],
        "contacted_ips": lambda: [_ip(ip) for ip in f.contacted_ips],
        "contacted_urls": lambda: [_url(u) for u in f.contacted_urls],
        "itw_urls": lambda: [_url(u) for u in f.itw_urls],
        "dropped_files": lambda: [_file(s) for s in f.dropped_files],
        "execution_parents": lambda: [_file(s) for s in f.execution_parents],
        "behaviours": lambda: [Related("file_behaviour", f"{f.sha256}_{f.behaviour.sandbox}",
                                       lambda base: behaviour_object(f, base))] if has_sandbox_report(f) else [],
    }


def _url_rels(f: UrlFacts) -> dict[str, Callable[[], list[Related]]]:
    host_rel = _ip(f.host) if valid_ip(f.host) else _domain(f.host)
    return {
        "last_serving_ip_address": lambda: [_ip(f.serving_ip)],
        "network_location": lambda: [host_rel],
        "downloaded_files": lambda: [_file(s) for s in f.downloaded_files],
        "redirecting_urls": lambda: [_url(u) for u in f.redirecting_urls],
        "redirects_to": lambda: [_url(f.final_url)] if f.final_url != f.url else [],
        "contacted_ips": lambda: [_ip(f.serving_ip)],
    }


#: Relationships that hold one object, not a list.
SINGLE = frozenset({"last_serving_ip_address", "network_location"})


def relationships(kind: str, facts: Any) -> dict[str, Callable[[], list[Related]]]:
    """Relationship name -> producer of related objects, for an object of ``kind``."""
    table: dict[str, Callable[[Any], dict[str, Callable[[], list[Related]]]]] = {
        "ip_address": _ip_rels, "domain": _domain_rels, "file": _file_rels, "url": _url_rels}
    return table[kind](facts)


def encode_cursor(offset: int, limit: int) -> str:
    return base64.b64encode(f'{{"limit": {limit}, "offset": {offset}}}'.encode()).decode()


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return max(0, int(text.rsplit('"offset": ', 1)[1].rstrip("}")))
    except (ValueError, IndexError):
        raise ValueError(f"Invalid cursor: {cursor}") from None


def embedded(name: str, items: list[Related], self_url: str, limit: int = 10) -> Json:
    """``data.relationships.<name>`` as ``?relationships=`` embeds it."""
    links = {"self": f"{self_url}/relationships/{name}?limit={limit}", "related": f"{self_url}/{name}"}
    if name in SINGLE:
        return {"data": items[0].descriptor() if items else None, "links": links}
    out: Json = {"data": [r.descriptor() for r in items[:limit]], "links": links, "meta": {"count": len(items)}}
    if len(items) > limit:
        cursor = encode_cursor(limit, limit)
        out["meta"]["cursor"] = cursor
        links["next"] = f"{self_url}/relationships/{name}?limit={limit}&cursor={cursor}"
    return out


def listing(name: str, items: list[Related], self_url: str, base: str, *, limit: int, offset: int,
            descriptors_only: bool) -> Json:
    """``GET /{collection}/{id}/{name}`` (full objects) or ``.../relationships/{name}`` (descriptors)."""
    path = f"{self_url}/relationships/{name}" if descriptors_only else f"{self_url}/{name}"
    if name in SINGLE:
        item = items[0] if items else None
        one = None if item is None else (item.descriptor() if descriptors_only else item.make(base))
        return {"data": one, "links": {"self": path}}
    page = items[offset: offset + limit]
    data = [r.descriptor() for r in page] if descriptors_only else [r.make(base) for r in page]
    out: Json = {"data": data, "meta": {"count": len(items)}, "links": {"self": f"{path}?limit={limit}"}}
    if offset + limit < len(items):
        cursor = encode_cursor(offset + limit, limit)
        out["meta"]["cursor"] = cursor
        out["links"]["next"] = f"{path}?cursor={cursor}&limit={limit}"
    return out


# --------------------------------------------------------------------------- analyses and errors

def analysis(analysis_id: str, base: str, *, status: str, date: int, verdicts: list[EngineResult] | None,
             file: bool, meta: Json, item: str) -> Json:
    """An analysis object, queued (empty results) or completed."""
    results_ = results(verdicts, file=file) if verdicts else {}
    counts = stats(verdicts or [], file=file) if verdicts else stats([], file=file)
    return {"data": {"id": analysis_id, "type": "analysis",
                     "links": {"self": f"{base}/analyses/{analysis_id}", "item": item},
                     "attributes": {"date": date, "status": status, "stats": counts, "results": results_}},
            "meta": meta}


def analysis_descriptor(analysis_id: str, base: str) -> Json:
    return {"data": {"type": "analysis", "id": analysis_id, "links": {"self": f"{base}/analyses/{analysis_id}"}}}


def error(code: str, message: str) -> Json:
    return {"error": {"code": code, "message": message}}


def url_id_candidates(raw: str) -> str | None:
    """The URL encoded in a v3 URL id (unpadded URL-safe base64), if it decodes to one."""
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return text if "." in text or "://" in text else None


__all__ = ["COLLECTION", "Related", "analysis", "analysis_descriptor", "behaviour_object", "behaviour_summary",
           "decode_cursor", "domain_object", "embedded", "error", "file_object", "has_sandbox_report", "ip_object",
           "listing", "relationships", "summary_not_found", "url_id_candidates", "url_object"]
