"""The verdict memory, the sighting tally and the verdict_change event: round trips, shapes, faults named."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from pipeline.contracts.events import VerdictChange, iso_utc
from pipeline.contracts.indicator import Indicator
from pipeline.contracts.origin import Origin
from pipeline.contracts.verdict import Change, Seen, SightingTally, VerdictCheck, VerdictMemory
from pipeline.errors import RecordError

pytestmark = pytest.mark.unit

T = 1_790_000_000.0
BENIGN, MALICIOUS = VerdictCheck("benign", 0, 70, T), VerdictCheck("malicious", 12, 70, T + 86400)


def change(origin: Origin | None = Origin(ref="indicators.raw/0/7", source="proxy")) -> VerdictChange:
    return VerdictChange(Indicator("domain", "evil.example"), "submit_domain", "v3", previous=BENIGN,
                         current=MALICIOUS, sightings=3, first_seen=T + 3600, origin=origin,
                         enriched_at="2026-09-22T08:00:00Z")


def test_a_verdict_change_has_the_issue_shape_and_reads_back_as_written():
    event = change().to_dict()
    assert {"kind", "indicator", "previous", "current", "first_seen", "sightings", "origin"} <= set(event)
    assert "replay" not in event
    assert event["kind"] == "verdict_change" and event["indicator"] == {"type": "domain", "value": "evil.example"}
    assert event["previous"] == {"verdict": "benign", "positives": 0, "total": 70, "checked_at": iso_utc(T)}
    assert event["current"]["verdict"] == "malicious" and event["sightings"] == 3
    assert event["first_seen"] == iso_utc(T + 3600) and event["origin"]["ref"] == "indicators.raw/0/7"
    back = VerdictChange.from_bytes(orjson.dumps(event))
    assert back is not None and back.to_dict() == event


def test_its_id_is_the_change_not_the_moment_it_was_published_and_a_replay_marks_it():
    first, again = change().to_dict(), change(origin=Origin(ref="indicators.raw/0/9")).to_dict()
    assert first["event_id"] == again["event_id"]  # the same two checks of the same indicator
    replayed = change(origin=Origin(ref="siem.archive/0/1", replay="daily")).to_dict()
    assert replayed["replay"] == "daily" and replayed["event_id"] != first["event_id"]
    back = VerdictChange.from_dict(replayed)
    assert back is not None and back.replay == "daily" and back.to_dict() == replayed
    url = VerdictChange(Indicator("url", "https://x.test/?token=s3cret"), "submit_url", "v3", BENIGN, MALICIOUS,
                        sent_as="https://x.test/").to_dict()
    back = VerdictChange.from_dict(url)
    assert url["sent_as"] == "https://x.test/" and back is not None and back.to_dict() == url
    no_sightings = VerdictChange(Indicator("ip", "1.2.3.4"), "submit_ip", "v3", BENIGN, MALICIOUS).to_dict()
    assert no_sightings["first_seen"] is None and no_sightings["sightings"] == 0 and "sent_as" not in no_sightings
    assert VerdictChange.from_dict({"kind": "summary"}) is None


@pytest.mark.parametrize("field, value, named", [
    ("previous", {"verdict": "evil", "positives": 0, "total": 1, "checked_at": "2026-01-01T00:00:00Z"},
     "previous.verdict"),
    ("current", {"verdict": "benign", "positives": 0, "total": 1, "checked_at": "yesterday"}, "current.checked_at"),
    ("sightings", -1, "sightings"),
    ("indicator", {"type": "email", "value": "x"}, "indicator.type"),
])
def test_a_malformed_verdict_change_names_the_field(field, value, named):
    with pytest.raises(RecordError, match=named):
        VerdictChange.from_dict({**change().to_dict(), field: value})


def test_the_verdict_memory_round_trips_and_stays_compact():
    plain = VerdictMemory(BENIGN, since=T - 86400, ref="vt.responses/2/41")
    assert VerdictMemory.from_bytes(plain.to_bytes()) == plain
    assert len(plain.to_bytes()) < 100
    counted = VerdictMemory(MALICIOUS, since=T + 86400, seen=Seen(4, T + 10), ref="vt.responses/2/97",
                            change=Change(BENIGN, T - 86400, Seen(3, T + 3600)))
    assert VerdictMemory.from_bytes(counted.to_bytes()) == counted
    assert len(counted.to_bytes()) < 256  # only right after a change


@pytest.mark.parametrize("doc, named", [
    ({"v": 1, "last": ["benign", 0, 70], "since": 1.0}, "last"),
    ({"v": 1, "last": ["evil", 0, 70, 1.0], "since": 1.0}, "last"),
    ({"v": 1, "last": ["benign", 0, 70, 1.0]}, "since"),
    ({"v": 1, "last": ["benign", 0, 70, 1.0], "since": 1.0, "seen": [-1, None]}, "seen"),
    ({"v": 1, "last": ["benign", 0, 70, 1.0], "since": 1.0, "change": {"was": [], "was_since": 1.0}}, "change.was"),
])
def test_a_malformed_memory_names_the_field(doc, named):
    with pytest.raises(RecordError, match=named):
        VerdictMemory.from_bytes(orjson.dumps(doc))


def test_a_sighting_tally_round_trips_and_refuses_an_empty_count():
    tally = SightingTally(5, T)
    assert SightingTally.from_bytes(tally.to_bytes()) == tally
    with pytest.raises(RecordError, match="count"):
        SightingTally.from_bytes(orjson.dumps({"v": 1, "count": 0, "first": T}))


#: Keys of the records read here, so generated documents often come close to a real one.
_KEYS = st.sampled_from(["v", "last", "since", "seen", "ref", "change", "was", "was_since", "count", "first", "kind",
                         "indicator", "type", "value", "previous", "current", "verdict", "positives", "total",
                         "checked_at", "sightings", "first_seen", "origin", "replay"]) | st.text(max_size=6)
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.sampled_from(["verdict_change", "benign", "malicious", "ip", "2026-01-01T00:00:00Z"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5), max_leaves=20)


@given(st.binary(max_size=200) | st.dictionaries(_KEYS, _VALUES, max_size=8).map(orjson.dumps))
def test_untrusted_bytes_are_read_or_refused_by_name_never_anything_else(raw):
    for read in (VerdictMemory.from_bytes, SightingTally.from_bytes, VerdictChange.from_bytes):
        try:
            read(raw)
        except RecordError:
            pass


#: Mostly plausible numbers, sometimes anything: a record that is nearly right reaches the later fields.
_NUMBERS = st.integers(0, 100) | st.floats(0, 2e9) | st.none() | _VALUES
_CHECKS = st.just(["benign", 0, 70, T]) | st.tuples(st.sampled_from(["benign", "malicious", "evil"]), _NUMBERS,
                                                    _NUMBERS, _NUMBERS).map(list)


@given(st.fixed_dictionaries({"last": _CHECKS, "since": st.just(T) | _NUMBERS},
                             optional={"v": _VALUES, "seen": st.tuples(_NUMBERS, _NUMBERS).map(list) | _VALUES,
                                       "ref": _VALUES, "change": st.fixed_dictionaries(
                                           {"was": _CHECKS, "was_since": st.just(T) | _NUMBERS, "seen": _VALUES})}
                             ).map(orjson.dumps))
@settings(max_examples=300, deadline=None)
def test_a_memory_close_to_a_real_one_is_read_or_refused_by_name(raw):
    try:
        VerdictMemory.from_bytes(raw)
    except RecordError:
        pass
