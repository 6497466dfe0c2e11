"""Golden tests: every recorded VirusTotal sample (and each extra case) maps to the checked-in events.

Regenerate the expectation files after an intended mapping change, then review the diff:

    VTSTREAM_REGEN_GOLDEN=1 .venv/bin/pytest tests/unit/mapping/test_golden.py

A case whose file changed fails that run (so a regeneration is never a silent pass);
review the diff, then run again without the variable.

The second half asserts specific, hand-checked events per sample, so a regenerated
golden file that records a wrong mapping still fails here.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from tests.support.mapping_cases import (
    ENRICHED_AT, EXPECTED, GOLDEN_OPTIONS, MAPPINGS, Case, all_cases, comparable, expected_path,
)
from pipeline.mapping import MappingSet, load_mappings

pytestmark = pytest.mark.unit

REGEN = os.environ.get("VTSTREAM_REGEN_GOLDEN") == "1"
CASES = all_cases()


@pytest.fixture(scope="module")
def mappings() -> MappingSet:
    return load_mappings(MAPPINGS)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_golden(case: Case, mappings: MappingSet) -> None:
    got = comparable(case.run(mappings))
    path = expected_path(case)
    if REGEN:
        fresh = json.dumps(got, indent=1, ensure_ascii=False) + "\n"
        before = path.read_text(encoding="utf-8") if path.is_file() else None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(fresh, encoding="utf-8")
        assert before == fresh, f"{path.name} was regenerated: review the diff, then run again without REGEN"
        return
    assert path.is_file(), f"{path} is missing: run VTSTREAM_REGEN_GOLDEN=1 pytest {__file__} and review it"
    expected = json.loads(path.read_text(encoding="utf-8"))
    assert got == expected


def test_no_stale_golden_files() -> None:
    known = {expected_path(c).name for c in CASES}
    stale = sorted(p.name for p in EXPECTED.glob("*.json") if p.name not in known)
    assert not stale, f"golden files with no case (delete them): {stale}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_event_ids_are_deterministic_and_unique(case: Case, mappings: MappingSet) -> None:
    first = [e["event_id"] for e in case.run(mappings)]
    assert first == [e["event_id"] for e in case.run(mappings)]
    assert len(set(first)) == len(first)


# ---------------------------------------------------------------- hand-checked events

def run(mappings: MappingSet, case_id: str) -> list[dict[str, Any]]:
    (case,) = [c for c in CASES if c.id == case_id]
    events = case.run(mappings)
    assert all(e["enriched_at"] == ENRICHED_AT for e in events)
    return events


def attrs(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in events:
        if e["kind"] == "attribute":
            out.setdefault(e["attribute"]["name"], []).append(e["attribute"]["value"])
    return out


def relation(events: list[dict[str, Any]], kind: str, value: str) -> dict[str, Any]:
    found = [e["relation"] for e in events if e["kind"] == "relation"
             and e["relation"]["type"] == kind and e["relation"]["value"] == value]
    assert len(found) == 1, f"no single {kind} relation {value!r}"
    return found[0]


def rel_attrs(rel: dict[str, Any]) -> dict[str, str]:
    return {a["name"]: a["value"] for a in rel["attributes"]}


def summaries(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["summary"] for e in events if e["kind"] == "summary"]


def report(events: list[dict[str, Any]]) -> dict[str, str]:
    (rep,) = [e["report"] for e in events if e["kind"] == "report"]
    return {a["name"]: a["value"] for a in rep["attributes"]}


def test_v2_ip_8888(mappings: MappingSet) -> None:
    events = run(mappings, "v2/ip_address_report_8.8.8.8")
    a = attrs(events)
    assert a["VirusTotal ASN"] == ["15169"]
    assert a["VirusTotal AS Owner"] == ["Google Inc."]
    assert a["VirusTotal Country"] == ["US"]
    assert a["VirusTotal Verbose Response"] == ["IP address found in dataset"]
    res = relation(events, "FQDN", "000.meizu.net")
    assert rel_attrs(res) == {"Last Resolved": "2014-12-21T00:00:00Z"}
    assert (res["tags"], res["confidence"], res["rating"]) == (["vt", "golden"], 70, 4.0)
    url = relation(events, "URL", "http://update.javaplug-in.com/o/j.js")
    assert rel_attrs(url) == {"Positives": "2", "Total": "61", "Date": "2014-12-25T09:39:39Z"}
    sample = relation(events, "SHA-256", "d29a629317d7b608e748036c02b952545d595262ede691569eda17a405ed94f7")
    assert rel_attrs(sample) == {"Positives": "1", "Total": "46", "Date": "2013-05-30T16:45:57Z"}
    # 1000 resolutions, cap 25: the rest is counted, not dropped silently
    assert "resolutions: 975 more" in a["VirusTotal Omitted Related Indicators"]
    (s,) = summaries(events)
    assert (s["found"], s["asn"], s["as_owner"], s["country"]) == (True, "15169", "Google Inc.", "US")
    assert s["resolutions"][0] == {"host": "000.meizu.net", "last_resolved": "2014-12-21T00:00:00Z"}
    assert s["resolutions_omitted"] == 975
    assert s["detections"][0] == {"url": "http://update.javaplug-in.com/o/j.js", "positives": 2, "total": 61,
                                  "scan_date": "2014-12-25T09:39:39Z"}


def test_v2_domain_github(mappings: MappingSet) -> None:
    events = run(mappings, "v2/domain_report_github.com")
    a = attrs(events)
    assert a["VirusTotal Websense ThreatSeeker category"] == ["information technology"]
    assert a["VirusTotal Dr.Web category"] == ["social networks"]
    assert a["VirusTotal Webutation Domain Info Verdict"] == ["safe"]
    assert a["VirusTotal Whois Timestamp"] == ["2019-04-29T04:50:30Z"]  # 1556513430
    assert rel_attrs(relation(events, "IP Address", "13.229.188.59")) == {"Last Resolved": "2019-03-08T04:28:48Z"}
    (s,) = summaries(events)
    assert s["websense_category"] == "information technology"
    assert s["resolutions"][0] == {"ip": "13.229.188.59", "last_resolved": "2019-03-08T04:28:48Z"}


def test_v2_file_allinfo_behaviour(mappings: MappingSet) -> None:
    events = run(mappings, "v2/file_report_allinfo_behaviour_pe")
    sha256 = "cc4f95243ce37e3dc825bff20af50bac6de569460917763083feb3f3a1eb92e0"
    assert {e["indicator"]["value"] for e in events} == {sha256}
    r = report(events)
    assert r["Bkav Scan"] == "Detected HW32.Packed.4F25 on 2015-09-25 with version 1.3.0.7237"
    assert r["TotalDefense Scan"] == "NOT Detected on 2015-09-28 with version 37.1.62.1"
    assert r["Portable Executable Timestamp"] == "2012-05-13T20:45:11Z"  # 1336941911
    assert r["Portable Executable Machine Type"] == "332"
    assert r["Portable Executable Entry Point"] == "6407"
    assert r["Sigcheck link date"] == "9:45 PM 5/13/2012"
    assert r["Process Name"] == sha256
    assert r["Library imported from rpcrt4.dll"] == "I_RpcAllocate, I_RpcFree"
    assert rel_attrs(relation(events, "MD5", "cde722c6096842db74c6d973b6fd30ca")) == {"Import Hash": "Yes"}
    authenti = relation(events, "SHA-256", "a58c624939850e6c50bc53d742e10e40548633a2ffb722b7808ff399035f5485")
    assert rel_attrs(authenti)["Authenticode Hash"] == "Yes"
    assert rel_attrs(relation(events, "Mutex", "ShimCacheMutex")) == {"Opened Mutex": "Yes"}
    both = rel_attrs(relation(events, "File Path", "C:\\WINDOWS\\system32\\rsaenh.dll"))
    assert both == {"File Successfully Opened": "Yes", "File Successfully Read": "Yes"}
    md5 = rel_attrs(relation(events, "MD5", "602695c8f2ad76564bddcaf47b76edff"))
    assert md5["VirusTotal Number of Positives"] == "52" and md5["Published at"] == "2013-02-07T20:20:44Z"
    relation(events, "Filename", "vt-upload-UIEJN")
    # the file's own sha256 is the indicator, so no relation to itself
    assert not [e for e in events if e["kind"] == "relation" and e["relation"]["value"] == sha256]
    (s,) = summaries(events)
    assert (s["scan_finished"], s["positives"], s["total"], s["md5"]) == (
        True, 52, 57, "602695c8f2ad76564bddcaf47b76edff")


def test_v2_file_batch_maps_each_report(mappings: MappingSet) -> None:
    events = run(mappings, "v2/file_report_batch_multi")
    assert [s["sha256"][:8] for s in summaries(events)] == ["aebbdfb2", "9774f579", "d5cf318c"]
    assert [s["positives"] for s in summaries(events)] == [7, 8, 5]


@pytest.mark.parametrize("case_id", [
    "v2/domain_report_not_found", "v2/file_report_not_found", "v2/url_report_not_found",
    "v2/url_report_invalid_url_response_code_-1", "v2/file_report_queued_response_code_-2",
])
def test_v2_not_found_is_one_found_false_summary(mappings: MappingSet, case_id: str) -> None:
    events = run(mappings, case_id)
    assert [e["kind"] for e in events] == ["summary"]
    assert events[0]["summary"]["found"] is False


def test_v2_url_report_and_scan(mappings: MappingSet) -> None:
    events = run(mappings, "v2/url_report_phishing")
    assert report(events)["OpenPhish Scan"] == "Did Detect phishing site"
    assert report(events)["CLEAN MX Scan"] == "Did NOT Detect clean site"
    (s,) = summaries(events)
    assert (s["scan_finished"], s["positives"], s["total"], s["scan_date"]) == (True, 12, 66, "2018-12-14T10:13:55Z")
    scan = run(mappings, "v2/url_scan")
    assert attrs(scan)["VirusTotal Scan ID"] == ["dd014af5ed6b38d9130e3f466f850e46d21b951199d53a18ef29ee9341614eaf-1562751553"]
    assert summaries(scan)[0]["scan_finished"] is False


def test_v3_ip_resolution_descriptors(mappings: MappingSet) -> None:
    events = run(mappings, "v3/ip_address_8.8.8.8_with_relationships")
    assert attrs(events)["VirusTotal ASN"] == ["15169"]
    # descriptor id "8.8.8.8sanam.ie": the host name is what follows the IP; no date in a descriptor
    assert rel_attrs(relation(events, "FQDN", "sanam.ie")) == {}
    relation(events, "FQDN", "198.qzz.io")  # "8.8.8.8198.qzz.io": digits after the IP stay with the host
    (s,) = summaries(events)
    assert s["resolutions"][0] == {"host": "sanam.ie", "last_resolved": None}


def test_v3_ip_resolution_full_objects(mappings: MappingSet) -> None:
    events = run(mappings, "composed/v3/ip_address_1.1.1.1+resolutions")
    res = relation(events, "FQDN", "kdhnuvweq.xpqgimn.qypvthu.loqu.forum.mythem.es")
    assert rel_attrs(res) == {"Last Resolved": "2019-10-19T22:05:36Z"}  # date 1571522736
    assert rel_attrs(relation(events, "FQDN", "fr33q.no-ip.biz")) == {"Last Resolved": "2019-10-19T21:19:47Z"}
    assert attrs(events)["VirusTotal AS Owner"] == ["Cloudflare, Inc."]


def test_v3_domain_resolution_descriptors_and_objects(mappings: MappingSet) -> None:
    events = run(mappings, "v3/domain_example.com_with_relationships")
    assert rel_attrs(relation(events, "IP Address", "23.192.228.80")) == {}
    relation(events, "IP Address", "23.192.228.84")
    full = run(mappings, "composed/v3/domain_github.com+resolutions+communicating_files")
    assert rel_attrs(relation(full, "IP Address", "140.82.114.3")) == {"Last Resolved": "2019-10-19T03:51:34Z"}
    sample = rel_attrs(relation(full, "SHA-256", "cc48f8b07d1dfc5dea013585766f841568bf040838f3e89ed26d8be496e6f110"))
    assert set(sample) == {"Positives", "Total", "Date"}
    a = attrs(full)
    assert a["VirusTotal Websense ThreatSeeker category"] == ["information technology"]
    assert a["VirusTotal Dr.Web category"] == ["social networks"]


def test_v3_file_report(mappings: MappingSet) -> None:
    events = run(mappings, "v3/file_report_pe_01ba4719")
    r = report(events)
    assert r["ALYac Scan"] == "Detected Gen:Variant.Razy.448897 on 2019-10-24 with version 1.1.1.5"
    assert r["Portable Executable Timestamp"] == "2012-03-04T12:49:47Z"  # 1330865387
    assert r["VirusTotal Scan Date"] == "2019-10-24T01:59:26Z"  # 1571882366
    assert r["Library imported from mscoree.dll"] == "_CorExeMain"
    md5 = rel_attrs(relation(events, "MD5", "e2a1373f5a0024b81742be35880f9422"))
    assert md5["VirusTotal Number of Positives"] == "57"
    (s,) = summaries(events)
    assert (s["positives"], s["total"], s["scan_finished"]) == (57, 72, True)  # 57+2+13


def test_v3_scan_step_bodies(mappings: MappingSet) -> None:
    events = run(mappings, "v3/urls_post_analysis_descriptor")
    assert attrs(events)["VirusTotal Scan ID"] == ["u-9337405ca21d71c5db26b9982aea01707c95a925c8ef99f5a42e7dd29dc06f3d-1755151622"]
    assert summaries(events)[0]["scan_finished"] is False
    queued = run(mappings, "v3/analysis_queued_file")
    relation(queued, "MD5", "a095b8d1513a9dd40ab99a0fc1f6285b")
    assert summaries(queued)[0]["scan_finished"] is False
    done = run(mappings, "v3/analysis_completed_url")
    assert summaries(done)[0]["scan_finished"] is True


@pytest.mark.parametrize("case_id, code", [
    ("v3/error_not_found_file", "NotFoundError"),
    ("v3/error_quota_exceeded", "QuotaExceededError"),
    ("v3/error_invalid_argument_domain", "InvalidArgumentError"),
])
def test_v3_error_bodies_are_found_false(mappings: MappingSet, case_id: str, code: str) -> None:
    events = run(mappings, case_id)
    assert [e["kind"] for e in events] == ["summary"]
    assert events[0]["summary"]["found"] is False and events[0]["summary"]["error"] == code


def test_golden_options_are_the_ones_recorded() -> None:
    assert GOLDEN_OPTIONS.relation_cap == 25 and GOLDEN_OPTIONS.tags == ("vt", "golden")
