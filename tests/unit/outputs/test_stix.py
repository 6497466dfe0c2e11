"""The STIX builder's rules: deterministic ids, the highest TLP of the input, the indicator threshold."""

from __future__ import annotations

import pytest
import stix2
from stix2validator import ValidationOptions, validate_instance

from pipeline.contracts.card import SummaryCard
from pipeline.contracts.origin import Origin
from pipeline.outputs.publish import sighting_labels
from pipeline.outputs.stix import (REPLAY_EXTENSION, REPLAY_PROPERTY, TLP_MARKINGS, StixOptions, build_bundle,
                                   gui_url, tlp_level)
from pipeline.rules.verdicts import Standing

pytestmark = pytest.mark.unit

DOMAIN = {"type": "domain", "value": "evil.example"}
FOUND = SummaryCard(found=True, positives=7, total=70, scan_date="2026-01-02T03:04:05Z")
RESOLUTION = {"kind": "relation", "relation": {"type": "IP Address", "value": "203.0.113.9",
                                               "attributes": [{"name": "Last Resolved", "value": "2026-01-01T00:00:00Z"}]}}
SCAN = {"kind": "attribute", "attribute": {"name": "Kaspersky Scan", "value": "Detected Trojan.Win32.X on 2026-01-01"}}


def bundle(labels=("TLP:GREEN",), summary=FOUND, now=1.8e9, replay=None, standing=None, **options):
    return build_bundle(DOMAIN, [RESOLUTION, SCAN], summary, labels=list(labels), options=StixOptions(**options),
                        now=now, replay=replay, standing=standing)


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


def test_the_verdict_rule_names_the_analysis_result():
    results = {p: [a["result"] for a in by_type(bundle(summary=SummaryCard(found=True, positives=p, total=70,
                                                                           scan_date=FOUND.scan_date)),
                                                    "malware-analysis") if a["product"] == "VirusTotal"][0]
               for p in (0, 2, 7)}
    assert results == {0: "benign", 2: "suspicious", 7: "malicious"}  # VTSTREAM_STIX_INDICATOR_AT 5


def analysis(positives, day, total=70):
    return SummaryCard(found=True, positives=positives, total=total, scan_date=f"2026-01-{day:02d}T03:04:05Z")


def test_one_malicious_period_is_one_indicator_and_its_end_revokes_it():
    start, now = 1.8e9, 1.8e9 + 86400
    first = bundle(summary=analysis(7, 2), now=start, standing=Standing(malicious_since=start))
    later = bundle(summary=analysis(9, 3), now=now, standing=Standing(malicious_since=start))  # a new analysis
    (one,), (two,) = by_type(first, "indicator"), by_type(later, "indicator")
    assert one["id"] == two["id"] and one["created"] == two["created"] and two["modified"] > one["modified"]
    assert "revoked" not in two
    ended = bundle(summary=analysis(0, 4), now=now + 86400, standing=Standing(withdrawn_since=start))
    (revoked,) = by_type(ended, "indicator")
    assert revoked["id"] == one["id"] and revoked["revoked"] is True and revoked["created"] == one["created"]
    assert revoked["modified"] > two["modified"] and revoked["pattern"] == one["pattern"]
    (based_on,) = [r for r in by_type(ended, "relationship") if r["relationship_type"] == "based-on"]
    assert based_on["source_ref"] == one["id"] and based_on["revoked"] is True
    for b in (first, later, ended):
        result = validate_instance(b, ValidationOptions(version="2.1"))
        assert result.is_valid, [str(e) for e in result.errors]
    # a revoked object is never versioned again: the next malicious period is another indicator
    again = bundle(summary=analysis(8, 5), now=now + 2 * 86400, standing=Standing(malicious_since=now + 2 * 86400))
    assert by_type(again, "indicator")[0]["id"] != one["id"]
    assert not by_type(bundle(summary=analysis(0, 4), now=now), "indicator")  # nothing ended: no indicator


def test_a_replayed_enrichment_says_so_through_vtstreams_extension_and_stays_valid():
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
