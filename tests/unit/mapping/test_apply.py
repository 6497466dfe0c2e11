"""Unit tests of the mapping engine: loading and validation, apply() on odd bodies, map_files."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import orjson
import pytest

from tests.support.mapping_cases import MAPPINGS, REPO, SAMPLES, action_for
from pipeline.contracts.events import KINDS
from pipeline.errors import ConfigError
from pipeline.mapping import (
    OMITTED_ATTRIBUTES, OMITTED_RELATIONS, STEPS, AddOptions, MappingSet, detect_step, load_mappings,
    map_files, map_saved_response,
)
from pipeline.mapping.functions import to_date, to_day, to_int, to_string

pytestmark = pytest.mark.unit

IP = {"type": "ip", "value": "192.0.2.1"}
DOMAIN = {"type": "domain", "value": "example.com"}
OPTS = AddOptions(tags=("a", "b"), confidence=80, rating=2.5, relation_cap=1000)


@pytest.fixture(scope="module")
def mappings() -> MappingSet:
    return load_mappings(MAPPINGS)


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["kind"] for e in events]


def attr_pairs(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["attribute"]["name"], e["attribute"]["value"]) for e in events if e["kind"] == "attribute"]


def relations(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["relation"] for e in events if e["kind"] == "relation"]


# ------------------------------------------------------------------------- loading

def test_loads_every_action_for_both_apis(mappings: MappingSet) -> None:
    for api in ("v2", "v3"):
        assert mappings.actions(api) == ("submit_domain", "submit_file", "submit_hash", "submit_ip", "submit_url")
        assert mappings.steps(api, "submit_url") == ("scan", "report")
        assert mappings.steps(api, "submit_file") == ("scan", "report")
        assert mappings.steps(api, "submit_hash") == ("report",)
    assert "resolutions" in mappings.relationships("v3", "submit_ip")
    assert mappings.relationships("v2", "submit_ip") == ()
    assert set(STEPS) == {"report", "scan"}


@pytest.fixture()
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A copy of the shipped mappings folder to break on purpose."""
    target = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    yield target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize("old, new, message", [
    ("value: data.attributes.asn}", "value: \"data.attributes.asn[\"}",
     "mappings/v3/submit_ip.yaml: rule report.attributes[1].value ('VirusTotal ASN'): bad JMESPath expression"),
    ("{name: VirusTotal ASN, value: data.attributes.asn}", "{name: VirusTotal ASN, value: data.attributes.asn, as: weird}",
     "mappings/v3/submit_ip.yaml: rule report.attributes[1].as ('VirusTotal ASN'): 'weird' is not one of"),
    ("{name: VirusTotal ASN, value: data.attributes.asn}", "{name: VirusTotal ASN, vaule: data.attributes.asn}",
     "mappings/v3/submit_ip.yaml: rule report.attributes[1] ('VirusTotal ASN'): Additional properties"),
    ("{name: VirusTotal ASN,", "{name: \"VirusTotal {ASN\",",
     "mappings/v3/submit_ip.yaml: rule report.attributes[1].name ('VirusTotal {ASN'): template 'VirusTotal {ASN': "
     "unclosed '{'"),
    ("action: submit_ip", "action: submit_ipp",
     "mappings/v3/submit_ip.yaml: says api 'v3' action 'submit_ipp'; the file must be v3/submit_ipp.yaml"),
    ("api: v3", "api: v4", "mappings/v3/submit_ip.yaml: rule api: 'v4' is not one of"),
    ("steps:", "steps: [\n", "mappings/v3/submit_ip.yaml: not valid YAML"),
])
def test_bad_file_is_refused_with_file_rule_and_problem(scratch: Path, old: str, new: str, message: str) -> None:
    edit(scratch / "v3" / "submit_ip.yaml", old, new)
    with pytest.raises(ConfigError) as err:
        load_mappings(scratch)
    assert message in str(err.value)


def test_extends_must_exist(scratch: Path) -> None:
    edit(scratch / "v2" / "submit_hash.yaml", "extends: submit_file.yaml", "extends: nope.yaml")
    with pytest.raises(ConfigError, match=r"mappings/v2/submit_hash.yaml: extends 'nope.yaml', which does not exist"):
        load_mappings(scratch)


def test_missing_folder_and_schema(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_mappings(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="cannot read the mapping schema"):
        load_mappings(tmp_path)


def test_no_virustotal_field_names_in_python() -> None:
    """The vocabulary lives in mappings/: code strings hold no VirusTotal field names."""
    vt_fields = {"response_code", "verbose_msg", "additional_info", "scans", "positives_delta", "last_analysis_stats",
                 "last_analysis_results", "scan_id", "permalink", "detected_urls", "hostname", "last_resolved",
                 "as_owner", "asn", "whois", "data", "id", "type_description", "pe_info", "meta",
                 "VirusTotal ASN", "FQDN", "SHA-256"}
    for name in ("mapping/model.py", "mapping/template.py", "mapping/loader.py", "mapping/apply.py", "mapping/functions.py"):
        tree = ast.parse((REPO / "pipeline" / name).read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        strings = {n.value for n in ast.walk(tree)
                   if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings}
        assert not strings & vt_fields, f"{name}: {strings & vt_fields}"


# --------------------------------------------------------------------------- apply

def test_relations_carry_the_add_options(mappings: MappingSet) -> None:
    body = {"response_code": 1, "resolutions": [{"hostname": "a.example", "last_resolved": "2019-03-29 13:28:11"}]}
    out = mappings.apply("v2", "submit_ip", "report", body, indicator=IP, options=OPTS, enriched_at="2026-01-01T00:00:00Z")
    (rel,) = relations(out.events)
    assert rel == {"type": "FQDN", "value": "a.example", "attributes": [{"name": "Last Resolved", "value": "2019-03-29T13:28:11Z"}],
                   "tags": ["a", "b"], "confidence": 80, "rating": 2.5}
    assert out.events[0]["enriched_at"] == "2026-01-01T00:00:00Z"
    assert out.events[0]["indicator"] == IP and out.events[0]["action"] == "submit_ip" and out.events[0]["api"] == "v2"


def test_duplicate_relations_merge_and_self_relations_drop(mappings: MappingSet) -> None:
    sha = "ab" * 32
    body = {"response_code": 1,
            "detected_downloaded_samples": [{"sha256": sha, "positives": 3, "total": 60, "date": "2019-01-01 00:00:00"}],
            "detected_communicating_samples": [{"sha256": sha.upper(), "positives": 3, "total": 60}, {"sha256": sha,
                                               "positives": 3, "total": 60, "date": "2019-02-01 00:00:00"}],
            "resolutions": [{"hostname": "192.0.2.1"}]}
    out = mappings.apply("v2", "submit_ip", "report", body, indicator=IP, options=OPTS)
    rels = relations(out.events)
    assert [(r["type"], r["value"]) for r in rels] == [("SHA-256", sha), ("SHA-256", sha.upper())]
    assert rels[0]["attributes"] == [{"name": "Positives", "value": "3"}, {"name": "Total", "value": "60"},
                                     {"name": "Date", "value": "2019-01-01T00:00:00Z"},
                                     {"name": "Date", "value": "2019-02-01T00:00:00Z"}]


def test_identical_attributes_are_emitted_once(mappings: MappingSet) -> None:
    body = {"response_code": 1, "categories": ["news", "news", "media"]}
    out = mappings.apply("v2", "submit_domain", "report", body, indicator=DOMAIN, options=OPTS)
    assert attr_pairs(out.events) == [("VirusTotal Category", "news"), ("VirusTotal Category", "media")]


def test_not_found(mappings: MappingSet) -> None:
    out = mappings.apply("v2", "submit_ip", "report", {"response_code": 0}, indicator=IP, options=OPTS)
    assert out.events == []
    assert out.summary == mappings.not_found_summary("v2", "submit_ip")
    assert out.summary.to_dict() == {"found": False, "positives": None, "total": None, "scan_date": None, "asn": None,
                           "as_owner": None, "country": None, "resolutions": [], "resolutions_omitted": 0,
                           "detections": [], "detections_omitted": 0}
    caller_says = mappings.apply("v3", "submit_ip", "report", {"data": {"type": "ip_address", "id": "192.0.2.1"}},
                                 indicator=IP, options=OPTS, found=False)
    assert caller_says.events == [] and caller_says.summary.found is False
    err = mappings.apply("v3", "submit_file", "report", {"error": {"code": "NotFoundError"}},
                         indicator={"type": "md5", "value": "0" * 32}, options=OPTS)
    assert err.summary.field("error") == "NotFoundError" and err.summary.field("scan_finished") is False


def test_unknown_action_or_step_is_a_config_error(mappings: MappingSet) -> None:
    with pytest.raises(ConfigError, match="no mapping for api 'v3' action 'submit_email'"):
        mappings.apply("v3", "submit_email", "report", {}, indicator=IP, options=OPTS)
    with pytest.raises(ConfigError, match="mappings/v3/submit_hash.yaml: no step 'scan'"):
        mappings.apply("v3", "submit_hash", "scan", {}, indicator=IP, options=OPTS)


@pytest.mark.parametrize("api, action, body, step", [
    ("v2", "submit_url", {"response_code": 1, "scan_id": "x-1", "permalink": "https://p", "url": "http://e/"}, "scan"),
    ("v2", "submit_url", {"response_code": 1, "scan_id": "x-1", "permalink": "https://p", "scans": {}}, "report"),
    ("v2", "submit_file", {"response_code": 1, "scan_id": "x-1", "permalink": "https://p", "sha256": "s"}, "scan"),
    ("v2", "submit_file", {"response_code": -2, "scan_id": "x-1"}, "report"),
    ("v3", "submit_url", {"data": {"type": "analysis", "id": "u-1-2"}}, "scan"),
    ("v3", "submit_url", {"data": {"type": "url", "id": "abc"}}, "report"),
    ("v3", "submit_file", {"data": {"type": "private_analysis", "id": "x"}}, "scan"),
    ("v3", "submit_file", {"error": {"code": "NotFoundError"}}, "report"),
    ("v3", "submit_hash", {"data": {"type": "analysis", "id": "x"}}, "report"),
    ("v2", "submit_url", None, "report"),
    ("v2", "submit_url", [1, 2], "report"),
])
def test_detect_step(api: str, action: str, body: Any, step: str) -> None:
    assert detect_step(api, action, body) == step


# ---------------------------------------------------------------------- robustness

ODD_VALUES: list[Any] = [
    None, True, 0, -1, 1.5, 1e308, 2**80, "", "ünïcødé ✓ 🦠", "\ud800", [], {}, [None], [[[]]], {"a": {"b": None}},
    ["x"] * 3, {"": ""}, "2019-13-45 99:99:99", float("nan"),
]


def _mutations(body: Any, odd: Any) -> Iterator[Any]:
    """The body with each of its values in turn (to depth 4) replaced by ``odd``."""
    def walk(node: Any, depth: int) -> Iterator[tuple[Any, Any]]:
        if depth > 4:
            return
        items = list(node.items()) if isinstance(node, dict) else list(enumerate(node[:3])) if isinstance(node, list) else []
        for key, value in items:
            yield node, key
            yield from walk(value, depth + 1)
    for parent, key in list(walk(body, 0)):
        saved = parent[key]
        parent[key] = odd
        yield body
        parent[key] = saved


def _bodies(mappings: MappingSet) -> list[tuple[str, str, Any]]:
    """A small real body per api/action, mutated in place by the robustness test."""
    base = {
        ("v2", "submit_ip"): {"response_code": 1, "asn": "15169", "resolutions": [{"hostname": "a", "last_resolved": "2019-01-01 00:00:00"}],
                              "detected_urls": [{"url": "http://a/", "positives": 1, "total": 2, "scan_date": "2019-01-01 00:00:00"}],
                              "detected_downloaded_samples": [{"sha256": "s", "positives": 1, "total": 2, "date": "2019-01-01 00:00:00"}]},
        ("v2", "submit_domain"): {"response_code": 1, "categories": ["a"], "subdomains": ["b.example"],
                                  "Webutation domain info": {"Verdict": "safe"}, "resolutions": [{"ip_address": "192.0.2.1"}]},
        ("v2", "submit_url"): {"response_code": 1, "url": "http://a/", "scans": {"E": {"detected": True, "result": "r", "detail": "d"}},
                               "additional_info": {"resolution": "192.0.2.1", "redirector": "http://b/"}, "positives": 1},
        ("v2", "submit_file"): {"response_code": 1, "md5": "m" * 32, "sha256": "s" * 64, "authentihash": "a" * 64,
                                "scans": {"E": {"detected": False, "version": "1", "update": "20190101"}},
                                "additional_info": {"imports": {"K_!_dll": ["f"]}, "exiftool": {"A": "b"},
                                                    "behaviour-v1": {"process": {"tree": [{"name": "p", "children": [{"name": "c"}]}]},
                                                                     "filesystem": {"opened": [{"path": "C:\\x", "success": True}]},
                                                                     "runtime-dlls": [{"file": "k.dll", "success": False}]},
                                                    "pe-resource-detail": [{"sha256": "r" * 64, "chi2": 1.5}]}},
        ("v3", "submit_ip"): {"data": {"type": "ip_address", "id": "192.0.2.1", "attributes": {"asn": 1, "last_analysis_stats": {"malicious": 1}},
                                       "relationships": {"resolutions": {"data": [{"type": "resolution", "id": "192.0.2.1a.example"},
                                                                                  {"type": "resolution", "id": "x", "attributes": {"host_name": "b", "date": 1}}]},
                                                         "urls": {"data": [{"type": "url", "id": "u", "context_attributes": {"url": "http://a/"}}]}}}},
        ("v3", "submit_domain"): {"data": {"type": "domain", "id": "example.com", "attributes": {"categories": {"Dr.Web": "x"}},
                                           "relationships": {"resolutions": {"data": [{"type": "resolution", "id": "192.0.2.1example.com"}]},
                                                             "subdomains": {"data": [{"type": "domain", "id": "a.example.com"}]}}}},
        ("v3", "submit_url"): {"data": {"type": "url", "id": "u", "attributes": {"url": "http://a/", "categories": {"Sophos": "s"},
                                                                                "last_analysis_results": {"E": {"category": "malicious", "result": "r"}}},
                                        "relationships": {"last_serving_ip_address": {"data": {"type": "ip_address", "id": "192.0.2.1"}}}}},
        ("v3", "submit_file"): {"data": {"type": "file", "id": "s" * 64, "attributes": {
            "md5": "m" * 32, "names": ["a.exe"], "trid": [{"file_type": "x", "probability": 1}],
            "pe_info": {"import_list": [{"library_name": "k.dll", "imported_functions": ["f"]}], "resource_langs": {"X": 1}},
            "last_analysis_results": {"E": {"category": "malicious", "result": "r", "engine_update": "20190101"}},
            "office_info": {"summary_info": {"a": 1}}},
            "relationships": {"contacted_domains": {"data": [{"type": "domain", "id": "a.example"}]}}}},
    }
    return [(api, action, body) for (api, action), body in base.items()]


def _check_events(events: list[dict[str, Any]]) -> None:
    for e in events:
        orjson.dumps(e)  # publishable
        payload = e[e["kind"]]
        if e["kind"] == "attribute":
            assert isinstance(payload["value"], str) and isinstance(payload["name"], str)
        elif e["kind"] == "relation":
            assert isinstance(payload["value"], str) and payload["value"]
            assert all(isinstance(a["value"], str) for a in payload["attributes"])
        elif e["kind"] == "report":
            assert all(isinstance(a["value"], str) for a in payload["attributes"])


@pytest.mark.parametrize("odd", ODD_VALUES, ids=[repr(v)[:20] for v in ODD_VALUES])
def test_apply_never_raises_on_odd_values(mappings: MappingSet, odd: Any) -> None:
    for api, action, body in _bodies(mappings):
        for step in mappings.steps(api, action):
            for mutated in _mutations(body, odd):
                out = mappings.apply(api, action, step, mutated, indicator=IP, options=OPTS)
                _check_events(out.events)
                orjson.dumps(out.summary)


@pytest.mark.parametrize("body", [None, [], {}, "text", 7, [{"response_code": 1}], {"data": None}, {"data": []},
                                  {"data": "x"}, {"data": {"relationships": 5}}, {"data": {"type": "file", "attributes": []}}])
def test_apply_never_raises_on_odd_shapes(mappings: MappingSet, body: Any) -> None:
    for api in ("v2", "v3"):
        for action in mappings.actions(api):
            for step in mappings.steps(api, action):
                out = mappings.apply(api, action, step, body, indicator=IP, options=OPTS)
                _check_events(out.events)
            map_saved_response(mappings, api, action, body, OPTS)


def test_deep_nesting_does_not_crash(mappings: MappingSet) -> None:
    deep: Any = "bottom"
    for _ in range(5000):
        deep = {"a": [deep]}
    body = {"response_code": 1, "asn": deep, "whois": deep, "categories": [deep], "subdomains": [deep]}
    out = mappings.apply("v2", "submit_domain", "report", body, indicator=DOMAIN, options=OPTS)
    _check_events(out.events)
    out = mappings.apply("v2", "submit_ip", "report", body, indicator=IP, options=OPTS)
    _check_events(out.events)


def test_unicode_values_survive(mappings: MappingSet) -> None:
    body = {"response_code": 1, "resolutions": [{"hostname": "xn--bcher-kva.example", "last_resolved": None},
                                                {"hostname": "bücher.example"}, {"hostname": "🦠.example"},
                                                {"hostname": "bad\ud800surrogate.example"}]}
    out = mappings.apply("v2", "submit_ip", "report", body, indicator=IP, options=OPTS)
    values = [r["value"] for r in relations(out.events)]
    assert values[:3] == ["xn--bcher-kva.example", "bücher.example", "🦠.example"]
    assert values[3] == "bad\ufffdsurrogate.example"  # replaced, so the event can be serialised
    for e in out.events:
        orjson.dumps(e)


def test_hundred_thousand_items_are_capped(mappings: MappingSet) -> None:
    n = 100_000
    v2 = {"response_code": 1,
          "resolutions": [{"hostname": f"h{i}.example", "last_resolved": "2019-01-01 00:00:00"} for i in range(n)],
          "detected_urls": [{"url": f"http://u{i}.example/", "positives": 1, "total": 2} for i in range(n)],
          "undetected_downloaded_samples": [{"sha256": f"{i:064x}", "positives": 0, "total": 2} for i in range(n)]}
    file_body = {"response_code": 1, "sha256": "s" * 64,
                 "scans": {f"E{i}": {"detected": i % 2 == 0, "result": "r", "version": "1", "update": "20190101"} for i in range(n)},
                 "submission_names": [f"n{i}" for i in range(n)]}
    v3 = {"data": {"type": "domain", "id": "example.com", "attributes": {},
                   "relationships": {"resolutions": {"data": [{"type": "resolution", "id": f"192.0.2.{i % 250}example.com"}
                                                              for i in range(n)]},
                                     "subdomains": {"data": [{"type": "domain", "id": f"s{i}.example.com"} for i in range(n)]}}}}
    opts = AddOptions(relation_cap=1000)
    ip = mappings.apply("v2", "submit_ip", "report", v2, indicator=IP, options=opts)
    fil = mappings.apply("v2", "submit_file", "report", file_body, indicator={"type": "sha256", "value": "s" * 64}, options=opts)
    dom = mappings.apply("v3", "submit_domain", "report", v3, indicator=DOMAIN, options=opts)
    assert len(relations(ip.events)) == 3000
    assert (OMITTED_RELATIONS, "resolutions: 99000 more") in attr_pairs(ip.events)
    assert (OMITTED_RELATIONS, "samples: 99000 more") in attr_pairs(ip.events)
    assert len(ip.summary.field("resolutions")) == 1000 and ip.summary.field("resolutions_omitted") == 99000
    (rep,) = [e["report"] for e in fil.events if e["kind"] == "report"]
    assert {"name": OMITTED_ATTRIBUTES, "value": "scans: 99000 more"} in rep["attributes"]
    assert (OMITTED_RELATIONS, "submission_names: 99000 more") in attr_pairs(fil.events)
    assert (OMITTED_RELATIONS, "subdomains: 99000 more") in attr_pairs(dom.events)
    # 1000 descriptors cut to 250 distinct IPs: duplicates merged, none lost before the cap
    assert len([r for r in relations(dom.events) if r["type"] == "IP Address"]) == 250


class _Counted(dict[str, Any]):
    """A list item that counts how often the mapping reads it."""

    reads = 0

    def get(self, key: Any, default: Any = None) -> Any:
        _Counted.reads += 1
        return super().get(key, default)


def test_the_work_on_one_body_is_bounded_by_the_cap_not_the_body() -> None:
    """100,000 resolutions cost what the relation cap allows: the items past it are never read.
    (It once read as a wall-clock limit, which a loaded machine could break.)"""
    mappings = load_mappings(MAPPINGS)
    reads = []
    for size in (2_000, 100_000):
        _Counted.reads = 0
        body = {"response_code": 1, "resolutions": [_Counted(hostname=f"h{i}.example") for i in range(size)]}
        mappings.apply("v2", "submit_ip", "report", body, indicator=IP, options=AddOptions(relation_cap=1000))
        reads.append(_Counted.reads)
    assert 0 < reads[0] == reads[1]


# ---------------------------------------------------------------------- converters

@pytest.mark.parametrize("raw, iso", [
    ("2019-03-29 13:28:11", "2019-03-29T13:28:11Z"), (1553866091, "2019-03-29T13:28:11Z"),
    (1553866091.0, "2019-03-29T13:28:11Z"), ("2019-03-29", "2019-03-29T00:00:00Z"), ("20190329", "2019-03-29T00:00:00Z"),
    ("2019-03-29T13:28:11Z", "2019-03-29T13:28:11Z"), ("not a date", "not a date"), (None, None), (True, None),
    (-5, None), (float("inf"), None), ([], None), ("2019-02-30 00:00:00", "2019-02-30 00:00:00"),
])
def test_dates_render_as_iso_utc(raw: Any, iso: str | None) -> None:
    assert to_date(raw) == iso


def test_other_converters() -> None:
    assert to_day("20150925") == "2015-09-25"
    assert to_string(True) == "true" and to_string(15169) == "15169" and to_string(2.0) == "2"
    assert to_string(4.911615371704102) == "4.911615371704102"
    assert to_string({"b": 1, "a": [2]}) == '{"a":[2],"b":1}'
    assert to_int("57") == 57 and to_int(True) is None and to_int(2.5) is None


# ---------------------------------------------------------------------- vtstream map

def test_map_files_on_every_sample_prints_json_lines() -> None:
    """What `vtstream map --api API --action ACTION FILE` prints, for every recorded sample."""
    groups: dict[tuple[str, str], list[Path]] = {}
    for path in sorted(SAMPLES.glob("v[23]/*.json")):
        groups.setdefault((path.parent.name, action_for(path.name)), []).append(path)
    summaries = 0
    for (api, action), paths in groups.items():
        lines = [orjson.dumps(e).decode() for e in map_files(MAPPINGS, api, action, paths, AddOptions())]
        events = [json.loads(line) for line in lines]
        assert all(e["kind"] in KINDS and e["api"] == api and e["action"] == action for e in events)
        assert events[-1]["kind"] == "summary"
        summaries += sum(e["kind"] == "summary" for e in events)
    # one summary per body; the v2 batch holds 3 reports, the v3 search 1 file
    assert summaries == sum(len(p) for p in groups.values()) + 2


def test_map_files_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.json: not JSON"):
        map_files(MAPPINGS, "v2", "submit_ip", [bad], AddOptions())
    with pytest.raises(ValueError, match=r"missing\.json: cannot read"):
        map_files(MAPPINGS, "v2", "submit_ip", [tmp_path / "missing.json"], AddOptions())
    with pytest.raises(ValueError, match="action must be one of"):
        map_files(MAPPINGS, "v2", "submit_email", [bad], AddOptions())
    with pytest.raises(ValueError, match="api must be one of"):
        map_files(MAPPINGS, "v4", "submit_ip", [bad], AddOptions())
    with pytest.raises(ConfigError):
        map_files(tmp_path, "v2", "submit_ip", [bad], AddOptions())


def test_map_files_indicator_override(tmp_path: Path) -> None:
    body = tmp_path / "ip.json"
    body.write_text(json.dumps({"response_code": 1, "asn": 64500}), encoding="utf-8")
    (default,) = [e for e in map_files(MAPPINGS, "v2", "submit_ip", [body], AddOptions()) if e["kind"] == "attribute"]
    assert default["indicator"] == {"type": "ip", "value": "unknown"}  # a v2 IP report does not name its IP
    events = list(map_files(MAPPINGS, "v2", "submit_ip", [body], AddOptions(), indicator="192.0.2.1"))
    assert {e["indicator"]["value"] for e in events} == {"192.0.2.1"}


def test_submit_hash_is_submit_file_report(mappings: MappingSet) -> None:
    body = {"response_code": 1, "md5": "a" * 32, "sha1": "b" * 40, "sha256": "c" * 64, "positives": 1,
            "scans": {"E": {"detected": True, "result": "r", "update": "20190101", "version": "1"}}}
    ind = {"type": "md5", "value": "a" * 32}
    as_file = mappings.apply("v2", "submit_file", "report", body, indicator=ind, options=OPTS)
    as_hash = mappings.apply("v2", "submit_hash", "report", body, indicator=ind, options=OPTS)
    strip = [{k: v for k, v in e.items() if k not in ("event_id", "action", "enriched_at")} for e in as_file.events]
    assert strip == [{k: v for k, v in e.items() if k not in ("event_id", "action", "enriched_at")} for e in as_hash.events]
    assert as_file.summary == as_hash.summary
