"""Coverage: every row of the vendor guides' tables is produced from at least one sample or fixture.

The rows are listed in ``mappings/guide_rows.yaml``; each names the events it must
produce. A row whose ``v3`` field is null is one VirusTotal v3 does not provide and
is checked for v2 only. The table in ``mappings/README.md`` is generated from the
same list (``VTSTREAM_REGEN_GOLDEN=1`` rewrites it) and must stay in sync.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from typing import Any

import pytest
import yaml

from tests.support.mapping_cases import GOLDEN_OPTIONS, MAPPINGS, all_cases
from pipeline.mapping import load_mappings

pytestmark = pytest.mark.unit

ROWS: list[dict[str, Any]] = yaml.safe_load((MAPPINGS / "guide_rows.yaml").read_text(encoding="utf-8"))["rows"]
CHECKS = [(row, api) for row in ROWS for api in ("v2", "v3") if row.get(api) is not None]
README = MAPPINGS / "README.md"
START, END = "<!-- guide-rows:start -->", "<!-- guide-rows:end -->"


@pytest.fixture(scope="module")
def produced() -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """Every event of every case, by (api, action) and by (api, action, step)."""
    mappings = load_mappings(MAPPINGS)
    out: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for case in all_cases():
        events = case.run(mappings)
        step = mappings.detect_step(case.api, case.action, case.body())
        out[(case.api, case.action)].extend(events)
        out[(case.api, case.action, step)].extend(events)
    return out


def satisfied(sig: dict[str, Any], events: list[dict[str, Any]]) -> bool:
    """Whether one expectation signature of guide_rows.yaml appears in ``events``."""
    if "attribute" in sig or "attribute_like" in sig:
        pattern = re.compile(sig.get("attribute_like") or re.escape(sig["attribute"]) + "$")
        return any(e["kind"] == "attribute" and pattern.match(e["attribute"]["name"]) for e in events)
    if "relation" in sig:
        return any(e["kind"] == "relation" and e["relation"]["type"] == sig["relation"] for e in events)
    if "relation_attribute" in sig:
        return any(e["kind"] == "relation" and e["relation"]["type"] == sig["type"]
                   and any(a["name"] == sig["relation_attribute"] for a in e["relation"]["attributes"])
                   for e in events)
    if "report" in sig:
        return any(e["kind"] == "report" and e["report"]["title"].startswith(sig["report"]) for e in events)
    if "report_attribute" in sig or "report_attribute_like" in sig:
        pattern = re.compile(sig.get("report_attribute_like") or re.escape(sig["report_attribute"]) + "$")
        return any(e["kind"] == "report" and any(pattern.match(a["name"]) for a in e["report"]["attributes"])
                   for e in events)
    if "summary" in sig:
        values = [e["summary"].get(sig["summary"]) for e in events if e["kind"] == "summary"]
        if "equals" in sig:
            return sig["equals"] in values
        return any(v not in (None, "", []) for v in values)
    if "summary_list" in sig:
        return any(row.get(sig["item"]) not in (None, "")
                   for e in events if e["kind"] == "summary"
                   for row in e["summary"].get(sig["summary_list"]) or [])
    if "relation_options" in sig:
        rels = [e["relation"] for e in events if e["kind"] == "relation"]
        return bool(rels) and all(
            (r["tags"], r["confidence"], r["rating"])
            == (list(GOLDEN_OPTIONS.tags), GOLDEN_OPTIONS.confidence, GOLDEN_OPTIONS.rating) for r in rels)
    raise AssertionError(f"unknown expectation {sig}")


@pytest.mark.parametrize("row, api", CHECKS, ids=[f"{api}:{row['id']}" for row, api in CHECKS])
def test_guide_row_is_produced(row: dict[str, Any], api: str,
                               produced: dict[tuple[str, ...], list[dict[str, Any]]]) -> None:
    events = produced[(api, row["action"], row["step"]) if "step" in row else (api, row["action"])]
    missing = [sig for sig in row.get(f"{api}_expect", row["expect"]) if not satisfied(sig, events)]
    assert not missing, f"{row['id']} ({row['guide']}): no {api} {row['action']} sample or fixture produces {missing}"


def test_rows_are_well_formed() -> None:
    ids = [r["id"] for r in ROWS]
    assert len(ids) == len(set(ids)), "duplicate row ids"
    actions = {"submit_ip", "submit_domain", "submit_url", "submit_file", "submit_hash"}
    for row in ROWS:
        assert {"id", "action", "section", "guide", "v2", "v3", "expect"} <= set(row), row.get("id")
        assert row["action"] in actions and row["expect"], row["id"]
        assert row.get("step", "scan") in ("scan", "report"), row["id"]
        if row["v3"] is None:
            assert row.get("note"), f"{row['id']}: say why v3 does not provide it"


def test_rows_cover_every_guide_section() -> None:
    sections = {r["section"] for r in ROWS}
    for needed in ("ThreatQ submit_ip", "ThreatQ submit_domain", "ThreatQ submit_url / scan",
                   "ThreatQ submit_url / report", "ThreatQ submit_file / scan", "ThreatQ submit_file / report",
                   "ThreatQ submit_hash", "ThreatConnect Address / Summary", "ThreatConnect Address / Resolutions",
                   "ThreatConnect Address / Detections", "ThreatConnect Host / Summary",
                   "ThreatConnect Host / Resolutions", "ThreatConnect Host / Detections",
                   "ThreatConnect File / Summary", "ThreatConnect URL / Summary",
                   "ThreatConnect Adding Indicators"):
        assert needed in sections


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def readme_table() -> str:
    lines = ["| Row | Guide row | v2 field | v3 field | Notes |", "| --- | --- | --- | --- | --- |"]
    for row in ROWS:
        v3 = "**not provided by v3**" if row["v3"] is None else f"`{_cell(row['v3'])}`"
        lines.append(f"| `{row['id']}` | {_cell(row['section'])}: {_cell(row['guide'])} | `{_cell(row['v2'])}` "
                     f"| {v3} | {_cell(row.get('note', ''))} |")
    return "\n".join(lines)


def test_readme_table_matches_guide_rows() -> None:
    text = README.read_text(encoding="utf-8")
    assert START in text and END in text, f"{README} lacks the {START} / {END} markers"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    wanted = f"{head}{START}\n{readme_table()}\n{END}{tail}"
    if os.environ.get("VTSTREAM_REGEN_GOLDEN") == "1":
        README.write_text(wanted, encoding="utf-8")
        assert text == wanted, "mappings/README.md was regenerated: review the diff, then run again without REGEN"
        return
    assert text == wanted, "mappings/README.md table is out of date: run VTSTREAM_REGEN_GOLDEN=1 pytest " + __file__


def test_signatures_fail_when_the_event_is_absent() -> None:
    """The coverage check itself: an expectation with no matching event is not satisfied."""
    rel = {"kind": "relation", "relation": {"type": "FQDN", "value": "a.example", "tags": [], "confidence": 1,
                                            "rating": 0.0, "attributes": [{"name": "Last Resolved", "value": "x"}]}}
    assert satisfied({"relation": "FQDN"}, [rel])
    assert not satisfied({"relation": "URL"}, [rel])
    assert not satisfied({"relation_attribute": "Last Resolved", "type": "IP Address"}, [rel])
    assert not satisfied({"attribute": "VirusTotal ASN"}, [rel])
    assert not satisfied({"relation_options": True}, [rel])
    assert not satisfied({"summary": "asn"}, [{"kind": "summary", "summary": {"asn": None}}])
