from datetime import datetime, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

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


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
                     | st.text(max_size=12), lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


@given(mapped=st.dictionaries(st.text(max_size=8).filter(lambda k: k not in ("found", "checked")), _JSON, max_size=5),
       positives=st.none() | st.integers(0, 90), cached=st.none() | st.booleans(),
       ref=st.none() | st.text(max_size=20), run=st.none() | st.text(min_size=1, max_size=8),
       value=st.sampled_from(["8.8.8.8", "http://x.example/ä?q=\"1\""]))
def test_a_summary_published_from_its_cards_own_bytes_is_the_event_and_the_id_of_its_dict(
        mapped, positives, cached, ref, run, value):
    """The card is serialised once and spliced into the event and its id digest: byte for byte what
    serialising the whole event would give, and the id ``event_id`` gives over the same parts."""
    card = SummaryCard.mapped_from(True, {**mapped, "positives": positives}).checked_now().with_fields(cached=cached)
    indicator = Indicator("url" if value.startswith("http") else "ip", value)
    event = SummaryEvent.of(card, indicator=indicator, action="submit_x", api="v3",
                            origin=Origin(ref=ref, id="e1", replay=run))
    as_dict = event.to_dict()
    assert orjson.loads(event.to_bytes()) == orjson.loads(orjson.dumps(as_dict))
    identity = [ref or "e1"]
    base = event_id("summary", as_dict["indicator"], "submit_x", "v3", event.card.to_dict(), *identity)
    assert as_dict["event_id"] == (event_id(base, {"replay": run}) if run else base)
