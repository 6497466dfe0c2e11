"""The STIX builder's rules: deterministic ids, the highest TLP of the input, the indicator threshold."""

from __future__ import annotations

import pytest
import stix2

from pipeline.contracts.card import SummaryCard
from pipeline.contracts.origin import Origin
from pipeline.outputs.publish import sighting_labels
from pipeline.outputs.stix import (REPLAY_EXTENSION, REPLAY_PROPERTY, TLP_MARKINGS, StixOptions, build_bundle,
                                   gui_url, tlp_level)

pytestmark = pytest.mark.unit

DOMAIN = {"type": "domain", "value": "evil.example"}
FOUND = SummaryCard(found=True, positives=7, total=70, scan_date="2026-01-02T03:04:05Z")
RESOLUTION = {"kind": "relation", "relation": {"type": "IP Address", "value": "203.0.113.9",
                                               "attributes": [{"name": "Last Resolved", "value": "2026-01-01T00:00:00Z"}]}}
SCAN = {"kind": "attribute", "attribute": {"name": "Kaspersky Scan", "value": "Detected Trojan.Win32.X on 2026-01-01"}}


def bundle(labels=("TLP:GREEN",), summary=FOUND, now=1.8e9, replay=None, **options):
    return build_bundle(DOMAIN, [RESOLUTION, SCAN], summary, labels=list(labels), options=StixOptions(**options),
                        now=now, replay=replay)


def by_type(b, kind):
    return [o for o in b["objects"] if o["type"] == kind]


def test_the_same_answer_later_keeps_every_object_id():
    first, later = bundle(now=1.8e9), bundle(now=1.8e9 + 3600)
    assert [o["id"] for o in first["objects"]] == [o["id"] for o in later["objects"]]
    assert by_type(first, "indicator")[0]["modified"] != by_type(later, "indicator")[0]["modified"]
    # a new version keeps its created (STIX versioning): the analysis date, not the time of the run
    assert [o.get("created") for o in first["objects"]] == [o.get("created") for o in later["objects"]]


def test_the_highest_tlp_of_the_input_marks_every_object():
    b = bundle(labels=["TLP:GREEN", "TLP:AMBER", "ops"])
    amber = dict(TLP_MARKINGS)["amber"]
    assert all(o["object_marking_refs"] == [amber] for o in b["objects"] if o["type"] != "marking-definition")
    assert [o["id"] for o in by_type(b, "marking-definition")] == [amber]
    assert tlp_level(["TLP:WHITE"]) == "clear" and tlp_level(["tlp:amber+strict", "TLP:RED"]) == "red"


def test_the_marking_reads_labels_as_the_policy_gate_does():
    """TLP from tags and the tlp field, in any spelling, marks the bundle (the gate and the marking agree)."""
    origins = [Origin(tags=("TLP-AMBER",)), Origin(tlp=("green",)), Origin(labels=("ＴＬＰ：ＣＬＥＡＲ",))]
    assert tlp_level(sighting_labels(origins)) == "amber"
    assert tlp_level(sighting_labels([Origin(tlp=("clear",))])) == "clear"


def test_resolution_engine_and_indicator_objects():
    b = bundle(indicator_at=5)
    (rel,) = [r for r in by_type(b, "relationship") if r["relationship_type"] == "resolves-to"]
    assert rel["source_ref"] == by_type(b, "domain-name")[0]["id"] and rel["target_ref"].startswith("ipv4-addr--")
    assert "2026-01-01T00:00:00Z" in rel["description"]
    products = {a["product"]: a for a in by_type(b, "malware-analysis")}
    assert products["VirusTotal"]["result"] == "malicious"
    assert products["Kaspersky"]["result_name"] == "Trojan.Win32.X"
    (indicator,) = by_type(b, "indicator")
    assert indicator["pattern"] == "[domain-name:value = 'evil.example']"
    assert products["VirusTotal"]["external_references"][0]["url"] == gui_url(DOMAIN)
    assert not by_type(bundle(indicator_at=8), "indicator")


def test_not_found_is_an_unknown_verdict_without_indicator():
    b = bundle(summary=SummaryCard(found=False))
    (analysis,) = [a for a in by_type(b, "malware-analysis") if a["product"] == "VirusTotal"]
    assert analysis["result"] == "unknown" and not by_type(b, "indicator")


def test_a_replayed_enrichment_says_so_through_vtstreams_extension_and_stays_valid():
    from stix2validator import ValidationOptions, validate_instance

    replayed, live = bundle(replay="november"), bundle()
    marked = [o for o in replayed["objects"] if REPLAY_PROPERTY in o]
    assert {o["type"] for o in marked} == {"malware-analysis", "relationship", "indicator"}
    assert all(o[REPLAY_PROPERTY] == "november" and o["extensions"] == {
        REPLAY_EXTENSION: {"extension_type": "toplevel-property-extension"}} for o in marked)
    (definition,) = by_type(replayed, "extension-definition")
    assert definition["id"] == REPLAY_EXTENSION and definition["extension_properties"] == [REPLAY_PROPERTY]
    assert not any(REPLAY_PROPERTY in o or "extensions" in o and o["type"] != "marking-definition"
                   for o in live["objects"]) and not by_type(live, "extension-definition")
    for each in (replayed, live):
        results = validate_instance(each, ValidationOptions(version="2.1"))
        assert results.is_valid, [str(e) for e in results.errors]
        stix2.parse(each, allow_custom=False)  # the extension declares the property: no custom content
    assert [o["id"] for o in live["objects"]] == [o["id"] for o in replayed["objects"]][:len(live["objects"])]
