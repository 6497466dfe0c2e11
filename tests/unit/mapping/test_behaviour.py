"""v3 sandbox behaviour (behaviour_summary) mapped into the ThreatQ rows: every mapped row, hand-checked.

The bodies are the repository's own fixtures (tests/golden/fixtures/v3/SOURCES.md):
VirusTotal's published example summary and a realistic AgentTesla summary, each
merged into a file object the way the client merges it.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.support.mapping_cases import FIXTURES, GOLDEN_OPTIONS, MAPPINGS, Case, extra_cases
from pipeline.mapping import AddOptions, MappingSet, load_mappings, map_saved_response
from pipeline.vt.behaviour import BEHAVIOUR_KEY, merge_behaviour_summary, sandbox_report

pytestmark = pytest.mark.unit

AGENTTESLA = "699ec052ecc898bdbdafea0027c4ab44c3d01ae011c17745dd2b7fbddaa077f3"
PUTTY = "9f9e74241d59eccfe7040bfdcbbceacb374eda397cc53a4197b59e4f6f380a91"
BEHAVIOUR_TYPES = {"Mutex", "File Path", "FQDN", "IP Address", "SHA-256"}


@pytest.fixture(scope="module")
def mappings() -> MappingSet:
    return load_mappings(MAPPINGS)


def case(case_id: str) -> Case:
    (found,) = [c for c in extra_cases() if c.id == case_id]
    return found


def relations(events: list[dict[str, Any]], kind: str) -> dict[str, dict[str, str]]:
    """value -> {attribute name: value} for the relations of one type."""
    return {e["relation"]["value"]: {a["name"]: a["value"] for a in e["relation"]["attributes"]}
            for e in events if e["kind"] == "relation" and e["relation"]["type"] == kind}


def attributes(events: list[dict[str, Any]], name: str) -> list[str]:
    return [e["attribute"]["value"] for e in events if e["kind"] == "attribute" and e["attribute"]["name"] == name]


def report(events: list[dict[str, Any]], name: str) -> list[str]:
    (rep,) = [e["report"] for e in events if e["kind"] == "report"]
    return [a["value"] for a in rep["attributes"] if a["name"] == name]


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / "v3" / name).read_text(encoding="utf-8"))


def test_realistic_summary_maps_every_row(mappings: MappingSet) -> None:
    events = case("composed/v3/file_699ec052+behaviour_realistic").run(mappings)
    assert report(events, "Process Name") == [  # the tree, children and grandchildren, depth first
        "C:\\DOCUME~1\\Miller\\LOCALS~1\\Temp\\Win32.AgentTesla.exe",
        "C:\\Users\\<USER>\\AppData\\Local\\Temp\\xws\\xws.exe",
        "C:\\Windows\\System32\\shutdown.exe"]
    dlls = report(events, "Runtime DLL")
    assert len(dlls) == 25 and dlls[0] == "Successfully Run c:\\windows\\system32\\imm32.dll"
    assert report(events, "VirusTotal Omitted Attributes") == ["modules_loaded: 3 more"]  # 28, cap 25
    assert relations(events, "Mutex") == {
        "ShimCacheMutex": {"Opened Mutex": "Yes"},
        "CTF.Compart.MutexDefaultS-1-5-21-1229272821-1563985344-1801674531-1003": {"Created Mutex": "Yes"}}
    paths = relations(events, "File Path")
    assert paths["C:\\Windows\\Microsoft.NET\\Framework\\v4.0.30319\\config\\machine.config"] == {
        "File Successfully Opened": "Yes"}
    # written and copied to the same path: one relation, both attributes
    assert paths["C:\\Users\\<USER>\\AppData\\Local\\Temp\\xws\\xws.exe"] == {
        "File Successfully Written": "Yes", "File Successfully Copied": "Yes"}
    assert paths["C:\\Users\\<USER>\\AppData\\Local\\Temp\\tmpG771.tmp"] == {"File Successfully Deleted": "Yes"}
    run_dat = "C:\\Users\\FD1HVy\\AppData\\Roaming\\33D770D0-06BC-47C5-8714-222CDAC43A71\\run.dat"
    assert paths[run_dat] == {"File Successfully Written": "Yes"}  # dropped: written to disk
    assert paths["C:\\Documents and Settings\\Miller\\Local Settings\\Temp\\xws\\xws.exe"] == {
        "File Attributes Changed": "Yes"}
    assert len(paths) == 8
    # the dropped copy of itself is the indicator: no relation to itself
    assert relations(events, "SHA-256") == {
        "120a4d5404d43646744c849425741a42f4d0b444541245df4d4c44654c44e3e1": {"Dropped File Path": run_dat}}
    assert attributes(events, "MITRE ATT&CK Technique") == [
        "T1082 Reads software policies", "T1083 Reads ini files", "T1055 Spawns processes",
        "T1036 Creates files inside the user directory", "T1070.004 Deletes files inside the Windows folder",
        "T1547.001 Creates an autostart registry key"]
    assert relations(events, "FQDN") == {"checkip.dyndns.org": {"Malware Contacted Domain": "Yes"},
                                         "smtp.yandex.com": {"Malware Contacted Domain": "Yes"}}
    # private broadcast and multicast traffic of the sandbox are not indicators
    assert relations(events, "IP Address") == {"158.101.44.242": {"Malware Contacted Port": "80/TCP"},
                                               "77.88.21.158": {"Malware Contacted Port": "587/TCP"}}
    behaviour = [e["relation"] for e in events if e["kind"] == "relation" and e["relation"]["type"] in BEHAVIOUR_TYPES]
    assert behaviour and all((r["tags"], r["confidence"], r["rating"]) == (["vt", "golden"], 70, 4.0)
                             for r in behaviour)


def test_vt_published_summary_maps_every_row(mappings: MappingSet) -> None:
    events = case("composed/v3/hash_9f9e7424+behaviour_vt_docs").run(mappings)
    assert {e["action"] for e in events} == {"submit_hash"}
    assert report(events, "Process Name") == ["****.exe", f"{PUTTY}.exe"]
    assert report(events, "Runtime DLL")[:2] == ["Successfully Run comctl32.dll",
                                                 "Successfully Run C:\\WINDOWS\\system32\\ws2_32.dll"]
    assert len(report(events, "Runtime DLL")) == 9
    mutexes = relations(events, "Mutex")
    assert mutexes.pop("ShimCacheMutex") == {"Opened Mutex": "Yes"}
    assert len(mutexes) == 7 and set(map(str, mutexes.values())) == {"{'Created Mutex': 'Yes'}"}
    paths = relations(events, "File Path")
    assert len(paths) == 13 and paths["C:\\WINDOWS\\system32\\MSCTF.dll"] == {"File Successfully Opened": "Yes"}
    assert not relations(events, "FQDN") and not attributes(events, "MITRE ATT&CK Technique")


def test_relation_lists_are_capped_with_omitted_counts(mappings: MappingSet) -> None:
    body = fixture("file_699ec052_synthetic.json")
    summary = {"data": {"dns_lookups": [{"hostname": f"c{i}.example.net"} for i in range(40)],
                        "mutexes_opened": [f"m{i}" for i in range(30)]}}
    assert merge_behaviour_summary(body, summary)
    events = map_saved_response(mappings, "v3", "submit_file", body, AddOptions(relation_cap=25))
    assert len(relations(events, "FQDN")) == 25 and len(relations(events, "Mutex")) == 25
    assert set(attributes(events, "VirusTotal Omitted Related Indicators")) == {
        "dns_lookups: 15 more", "mutexes_opened: 5 more"}


def test_dns_answers_are_related_addresses_and_lookups_of_addresses_are_not_hosts(mappings: MappingSet) -> None:
    body = fixture("file_699ec052_synthetic.json")
    summary = {"data": {"dns_lookups": [{"hostname": "c2.example.net", "resolved_ips": ["93.184.216.34", "10.0.0.1"]},
                                        {"hostname": "8.8.8.8"}, {"resolved_ips": ["ff02::1"]}]}}
    assert merge_behaviour_summary(body, summary)
    events = map_saved_response(mappings, "v3", "submit_file", body, GOLDEN_OPTIONS)
    assert relations(events, "FQDN") == {"c2.example.net": {"Malware Contacted Domain": "Yes"}}
    assert relations(events, "IP Address") == {"93.184.216.34": {}}


@pytest.mark.parametrize("summary", [{"data": {}}, {"data": {"tags": [], "processes_tree": []}},
                                     {"error": {"code": "NotFoundError", "message": "no"}}, None, []])
def test_no_sandbox_report_adds_nothing(mappings: MappingSet, summary: Any) -> None:
    plain = fixture("file_699ec052_synthetic.json")
    body = copy.deepcopy(plain)
    assert sandbox_report(summary) is None
    assert merge_behaviour_summary(body, summary) is False
    assert body == plain
    events = map_saved_response(mappings, "v3", "submit_file", body, GOLDEN_OPTIONS)
    assert not [e for e in events if e["kind"] == "relation" and e["relation"]["type"] in BEHAVIOUR_TYPES - {"SHA-256"}]


def test_merge_puts_the_summary_data_where_the_mapping_reads_it() -> None:
    body = fixture("file_9f9e7424_synthetic.json")
    summary = fixture("behaviour_summary_9f9e7424_vt_docs.json")
    assert merge_behaviour_summary(body, summary)
    assert body["data"][BEHAVIOUR_KEY] is summary["data"]
    assert merge_behaviour_summary({"data": [1, 2]}, summary) is False  # a listing is not a file object
