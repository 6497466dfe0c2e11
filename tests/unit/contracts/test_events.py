from datetime import datetime, timezone

import pytest

from pipeline.contracts.card import SummaryCard
from pipeline.contracts.events import SummaryEvent
from pipeline.contracts.events import event_id, iso_utc, make_event
from pipeline.contracts.indicator import Indicator
from pipeline.contracts.origin import Origin
from pipeline.rules.deadletter import dead_letter
from pipeline.rules.privacy import UrlPrivacy

pytestmark = pytest.mark.unit

IND = {"type": "ip", "value": "8.8.8.8"}


def test_event_shape_and_deterministic_id():
    a = make_event("attribute", {"name": "VirusTotal ASN", "value": "15169"}, indicator=IND,
                   action="submit_ip", api="v3", enriched_at="2026-01-01T00:00:00Z")
    b = make_event("attribute", {"value": "15169", "name": "VirusTotal ASN"}, indicator=IND,
                   action="submit_ip", api="v3", enriched_at="2027-01-01T00:00:00Z")
    assert a["event_id"] == b["event_id"]
    assert set(a) == {"event_id", "kind", "indicator", "action", "api", "enriched_at", "attribute"}
    other = make_event("attribute", {"name": "VirusTotal ASN", "value": "15170"}, indicator=IND,
                       action="submit_ip", api="v3")
    assert other["event_id"] != a["event_id"]


def test_summary_ids_differ_per_sighting_and_repeat_per_replay():
    def summary(ref):
        return SummaryEvent.of(SummaryCard(found=True), indicator=Indicator("ip", "8.8.8.8"), action="submit_ip",
                               api="v3", origin=Origin(ref=ref, source="fw")).to_dict()
    assert summary("raw/0/1")["event_id"] == summary("raw/0/1")["event_id"]
    assert summary("raw/0/1")["event_id"] != summary("raw/0/2")["event_id"]


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown event kind"):
        make_event("verdict", {}, indicator=IND, action="submit_ip", api="v3")


def test_iso_utc_forms():
    assert iso_utc(0) == "1970-01-01T00:00:00Z"
    assert iso_utc(datetime(2020, 5, 1, 12, 0, tzinfo=timezone.utc)) == "2020-05-01T12:00:00Z"
    assert iso_utc(datetime(2020, 5, 1, 12, 0)) == "2020-05-01T12:00:00Z"


def test_event_id_is_order_insensitive_for_mappings_only():
    assert event_id({"a": 1, "b": 2}) == event_id({"b": 2, "a": 1})
    assert event_id(1, 2) != event_id(2, 1)


def test_dead_letter_keeps_binary_and_text():
    assert dead_letter(b"\xff\xfe", stage="intake", reason="x", privacy=UrlPrivacy()).original == {"base64": "//4="}
    assert dead_letter(b"abc", stage="intake", reason="x", privacy=UrlPrivacy()).original == {"text": "abc"}
    record = dead_letter({"k": 1}, stage="gateway", reason="y", error="boom", attempts=3, privacy=UrlPrivacy())
    assert record.original == {"record": {"k": 1}} and record.attempts == 3
