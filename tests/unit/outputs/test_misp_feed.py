"""The MISP feed's events, from enrichment records to what PyMISP loads (pure: no broker, no server).

Every test renders the feed as the server serves it (manifest, hashes.csv,
one JSON per event) and checks it with PyMISP (tests/misp_helpers.py).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event as note, given, settings
from hypothesis import strategies as st
from tests.support.misp import attribute, check_feed, objects_of, report_of, template, value_of

from pipeline.outputs.misp.feed import NAMESPACE, FeedState
from pipeline.outputs.misp.render import event, hash_lines, manifest_entry
from pipeline.outputs.misp.objects import TEMPLATES

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "mapping"
SHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"


def state(**kw: Any) -> FeedState:
    return FeedState(**{"app_id": "vtstream", "days": 30, "max_indicators": 1000, "indicator_at": 5, **kw})


def summary(kind: str, value: str, positives: int | None = 0, total: int | None = 70, labels: tuple[str, ...] = (),
            **card: Any) -> dict[str, Any]:
    card = {"checked": True, "found": True, "positives": positives, "total": total,
            "scan_date": "2026-11-20T10:00:00Z", **card}
    return {"kind": "summary", "indicator": {"type": kind, "value": value}, "summary": card,
            "origin": {"labels": list(labels)}}


def verdict_change(kind: str, value: str, previous: str, verdict: str, positives: int, total: int = 70
                   ) -> dict[str, Any]:
    return {"kind": "verdict_change", "indicator": {"type": kind, "value": value},
            "previous": {"verdict": previous, "positives": 0, "total": total, "checked_at": "2026-11-21T00:00:00Z"},
            "current": {"verdict": verdict, "positives": positives, "total": total,
                        "checked_at": "2026-11-22T00:00:00Z"}, "first_seen": "2026-11-21T00:00:00Z", "sightings": 3}


def fold(feed: FeedState, record: dict[str, Any] | bytes, at: datetime = NOW, now: datetime = NOW) -> bool:
    value = record if isinstance(record, bytes) else orjson.dumps(record)
    return feed.fold(value, int(at.timestamp() * 1000), now.timestamp())


def serve(feed: FeedState) -> tuple[dict[str, Any], str, dict[str, bytes]]:
    """The feed as the server renders it."""
    days = feed.served()
    manifest = {d.uuid: manifest_entry(d) for d in days}
    hashes = "".join(line for d in days for line in hash_lines(d, feed.indicator_at))
    return manifest, hashes, {d.uuid: orjson.dumps(event(d, feed.indicator_at)) for d in days}


def only_event(feed: FeedState) -> Any:
    (loaded,) = check_feed(*serve(feed)).values()
    return loaded


def observable(loaded: Any, name: str, relation: str, value: str) -> Any:
    return next(o for o in objects_of(loaded, name) if value_of(o, relation) == value)


def golden_records() -> list[dict[str, Any]]:
    """Every recorded answer's mapped events, summaries marked checked as the results stage sends them."""
    out = []
    for path in sorted(GOLDEN.glob("*.json")):
        for ev in json.loads(path.read_text()):
            if ev.get("kind") == "summary":
                ev = {**ev, "summary": {**ev["summary"], "checked": True}, "origin": {"labels": ["TLP:GREEN"]}}
            out.append(ev)
    return out


def test_every_recorded_answer_becomes_template_valid_objects_with_a_virustotal_report():
    feed = state()
    for record in golden_records():
        fold(feed, record)
    loaded = only_event(feed)  # PyMISP loads it; every object holds against its template
    kinds = {entry.obs.kind for entry in feed.served()[0].entries.values()}
    assert kinds == {"ip", "domain", "url", "md5", "sha256"}  # (no recorded answer asks by SHA-1)
    observables = [o for o in loaded.objects if o.name != "virustotal-report"]
    assert len(observables) == len(feed.served()[0].entries) == len(objects_of(loaded, "virustotal-report"))
    for obj in observables:
        report = report_of(loaded, obj)
        assert value_of(report, "permalink").startswith("https://www.virustotal.com/gui/")
    pe = observable(loaded, "file", "sha256", "01ba4719c80b6fe911b091a7c05124b64eeece964e09c058ef8f9805daca546b")
    assert value_of(pe, "md5") == "e2a1373f5a0024b81742be35880f9422"
    assert value_of(report_of(loaded, pe), "detection-ratio") == "57/72"
    assert value_of(report_of(loaded, pe), "community-score") is not None  # from the answer's attribute event
    assert str(value_of(report_of(loaded, pe), "last-submission")).startswith("2019-10-24 01:59:26")
    jppost = observable(loaded, "domain-ip", "domain", "jppost-ge.top")
    assert "193.148.69.9" in value_of(jppost, "ip")


def test_bundled_templates_are_the_ones_described():
    for name, described in TEMPLATES.items():
        bundled = template(name)
        assert described.uuid == bundled["uuid"] and described.meta_category == bundled["meta-category"]
        assert described.version <= bundled["version"]
        for relation, kind in described.relations.items():
            assert bundled["attributes"][relation]["misp-attribute"] == kind.type, (name, relation)


def test_one_event_per_utc_day_with_a_stable_uuid_and_the_contracted_info():
    feed = state()
    late = datetime(2026, 11, 21, 23, 59, 59, 999000, tzinfo=timezone.utc)
    fold(feed, summary("domain", "late.example"), at=late)
    fold(feed, summary("domain", "early.example"), at=late + timedelta(milliseconds=1))
    manifest, _, events = serve(feed)
    loaded = check_feed(manifest, serve(feed)[1], events)
    by_day = {e.date.isoformat(): e for e in loaded.values()}
    assert set(by_day) == {"2026-11-21", "2026-11-22"}
    for day, e in by_day.items():
        assert e.info == f"vtstream: VirusTotal enrichment {day}"
        assert e.uuid == str(uuid.uuid5(NAMESPACE, f"vtstream {day}"))
    # a restarted server folds the same records into the same uuids, down to every attribute
    again = state()
    fold(again, summary("domain", "late.example"), at=late)
    fold(again, summary("domain", "early.example"), at=late + timedelta(milliseconds=1))
    assert serve(again)[2] == events


def test_a_change_moves_the_version_and_a_repeat_does_not():
    feed = state()
    assert fold(feed, summary("domain", "a.example"))
    assert fold(feed, summary("ip", "198.51.100.7"))
    first = feed.served()[0].version
    assert not fold(feed, summary("domain", "a.example"), at=NOW + timedelta(minutes=5))  # same facts: no new version
    assert feed.served()[0].version == first
    before = only_event(feed)
    assert fold(feed, summary("domain", "a.example", positives=2))  # same second as the last change: still moves
    after = only_event(feed)
    assert after.timestamp > before.timestamp
    assert manifest_entry(feed.served()[0])["timestamp"] == int(after.timestamp.timestamp())
    changed = observable(after, "domain-ip", "domain", "a.example")
    assert attribute(changed, "domain").timestamp == after.timestamp
    unchanged = observable(after, "ip-port", "ip", "198.51.100.7")
    assert attribute(unchanged, "ip").timestamp == observable(before, "ip-port", "ip", "198.51.100.7").timestamp


def test_a_verdict_change_updates_the_object_and_moves_the_days_timestamp():
    feed = state()
    fold(feed, summary("domain", "turned.example", positives=0))
    before = only_event(feed)
    clean = observable(before, "domain-ip", "domain", "turned.example")
    assert attribute(clean, "domain").to_ids is False
    fold(feed, verdict_change("domain", "turned.example", "benign", "malicious", 12), at=NOW + timedelta(hours=3))
    after = only_event(feed)
    assert after.timestamp > before.timestamp
    flagged = observable(after, "domain-ip", "domain", "turned.example")
    assert flagged.uuid == clean.uuid and attribute(flagged, "domain").uuid == attribute(clean, "domain").uuid
    assert attribute(flagged, "domain").to_ids is True
    report = report_of(after, flagged)
    assert value_of(report, "detection-ratio") == "12/70"
    assert value_of(report, "comment") == "malicious: 12 of 70 engines flagged it (was benign)"
    assert attribute(report, "detection-ratio").uuid == attribute(report_of(before, clean), "detection-ratio").uuid


def test_to_ids_marks_what_reaches_the_indicator_threshold_only():
    feed = state(indicator_at=5)
    fold(feed, summary("domain", "few.example", positives=4))
    fold(feed, summary("domain", "enough.example", positives=5))
    loaded = only_event(feed)
    few = observable(loaded, "domain-ip", "domain", "few.example")
    assert attribute(few, "domain").to_ids is False
    assert value_of(report_of(loaded, few), "comment") == "suspicious: 4 of 70 engines flagged it"
    enough = observable(loaded, "domain-ip", "domain", "enough.example")
    assert attribute(enough, "domain").to_ids is True
    assert not any(a.to_ids for a in report_of(loaded, enough).attributes)


def test_a_domain_shows_at_most_ten_of_its_addresses():
    feed = state()
    resolutions = [{"ip": f"192.0.2.{i}", "last_resolved": "2026-11-01T00:00:00Z"} for i in range(50)]
    fold(feed, summary("domain", "busy.example", resolutions=[{"ip": "not an ip"}, *resolutions]))
    busy = observable(only_event(feed), "domain-ip", "domain", "busy.example")
    assert value_of(busy, "ip") == [f"192.0.2.{i}" for i in range(10)]
    assert not any(a.to_ids for a in busy.attributes if a.object_relation == "ip")


def test_to_ids_follows_the_latest_verdict_on_every_served_day():
    feed = state()
    yesterday = NOW - timedelta(days=1)
    fold(feed, summary("domain", "flip.example", positives=30), at=yesterday)
    old_day = feed.served()[0]
    stamped = old_day.version
    fold(feed, summary("domain", "flip.example", positives=0))  # today: clean again
    loaded = {e.date.isoformat(): e for e in check_feed(*serve(feed)).values()}
    for e in loaded.values():
        assert attribute(observable(e, "domain-ip", "domain", "flip.example"), "domain").to_ids is False
    assert old_day.version > stamped  # yesterday's event is a new version too, so MISP pulls it again
    yesterdays_report = report_of(loaded["2026-11-21"], observable(loaded["2026-11-21"], "domain-ip", "domain",
                                                                   "flip.example"))
    assert value_of(yesterdays_report, "detection-ratio") == "30/70"  # what was seen that day stays


def test_the_highest_marking_of_the_days_sightings_is_on_every_attribute():
    feed = state()
    fold(feed, summary("domain", "marked.example", labels=("TLP:GREEN",)))
    fold(feed, summary("domain", "marked.example", labels=("ops", "tlp:amber")))
    fold(feed, summary("domain", "marked.example", labels=("TLP:CLEAR",)))  # a lower one later lowers nothing
    fold(feed, summary("ip", "198.51.100.9"))
    loaded = only_event(feed)
    marked = observable(loaded, "domain-ip", "domain", "marked.example")
    for obj in (marked, report_of(loaded, marked)):
        for a in obj.attributes:
            assert [t.name for t in a.tags] == ["tlp:amber"], (obj.name, a.object_relation)
    plain = observable(loaded, "ip-port", "ip", "198.51.100.9")
    assert all(not a.tags for a in plain.attributes)
    assert [t.name for t in loaded.tags] == ["tlp:amber"]  # the event: the highest of the day


def test_only_days_inside_the_window_are_served():
    feed = state(days=3)
    assert not fold(feed, summary("domain", "old.example"), at=NOW - timedelta(days=3))
    assert not fold(feed, summary("domain", "future.example"), at=NOW + timedelta(days=2))
    assert fold(feed, summary("domain", "kept.example"), at=NOW - timedelta(days=2))
    assert len(feed.served()) == 1
    assert feed.window_start_ms(NOW.timestamp()) == int(datetime(2026, 11, 20, tzinfo=timezone.utc).timestamp() * 1000)
    feed.prune((NOW + timedelta(days=1)).timestamp())
    assert feed.served() == []


def test_a_full_day_keeps_its_detections_and_counts_what_it_left_out():
    feed = state(max_indicators=2, indicator_at=1)
    fold(feed, summary("domain", "clean1.example"))
    fold(feed, summary("domain", "clean2.example"))
    assert fold(feed, summary("domain", "bad.example", positives=3))  # takes the oldest clean one's place
    assert not fold(feed, summary("domain", "clean3.example"))
    day = feed.served()[0]
    assert list(day.entries) == ["clean2.example", "bad.example"] and day.left_out == 1
    assert fold(feed, summary("domain", "clean2.example", positives=4))  # known ones still update
    assert not fold(feed, summary("domain", "bad2.example", positives=3))  # nothing undetected left to replace
    assert day.left_out == 2


def test_a_url_is_shown_as_sent_to_virustotal_never_with_its_secrets():
    feed = state()
    seen = "https://alice:pw@bank.example/reset?token=s3cr3t&lang=en"
    fold(feed, summary("url", seen, sent_as="https://bank.example/reset?lang=en"))
    fold(feed, summary("url", "https://shop.example/?sid=abcdef&q=1"))  # no sent_as: the rule still applies
    # the worker's rule may be wider than the feed's (a parameter added to its list): what was sent wins
    fold(feed, summary("url", "https://h.example/p?ticket=t1ck3t&x=1", sent_as="https://h.example/p?x=1"))
    manifest, hashes, events = serve(feed)
    body = b"".join(events.values())
    assert b"s3cr3t" not in body and b"alice" not in body and b"abcdef" not in body and b"t1ck3t" not in body
    loaded = only_event(feed)
    assert {value_of(o, "url") for o in objects_of(loaded, "url")} == {
        "https://bank.example/reset?lang=en", "https://shop.example/?q=1", "https://h.example/p?x=1"}


def test_records_without_a_verdict_or_with_nonsense_yield_nothing():
    feed = state()
    unchecked = summary("domain", "pending.example")
    unchecked["summary"] = {"checked": False, "found": None, "reason": "scan queued", "pending": True}
    for record in (unchecked, b"not json", b"[]", b"", {"kind": "summary"},
                   summary("domain", "not a domain"), summary("sha256", "zz" * 32),
                   {"kind": "relation", "indicator": {"type": "domain", "value": "x.example"}},
                   verdict_change("domain", "x.example", "benign", "evil", 3)):
        assert not fold(feed, record)
    assert feed.served() == []


# Untrusted input: anything on indicators.enriched. Records are built from the real shapes with any
# JSON in any place, so most of them get past the first checks and reach the deeper ones.
_json = st.recursive(st.none() | st.booleans() | st.integers(-2, 10**7) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=4), max_leaves=12)
def mostly(usual: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` eight times in ten, else ``other``: most records get deep into the checks."""
    return st.integers(0, 9).flatmap(lambda n: usual if n < 8 else other)


_values = st.sampled_from(["8.8.8.8", "2001:db8::1", "example.com", "http://h.example/?token=x", SHA256,
                           "e2a1373f5a0024b81742be35880f9422", "", "..", "1.2.3"]) | st.text(max_size=30)
_valid = st.sampled_from([{"type": "ip", "value": "8.8.8.8"}, {"type": "ip", "value": "2001:db8::1"},
                          {"type": "domain", "value": "example.com"}, {"type": "domain", "value": "b.example"},
                          {"type": "url", "value": "http://h.example/?token=x"}, {"type": "sha256", "value": SHA256},
                          {"type": "md5", "value": "e2a1373f5a0024b81742be35880f9422"}])
_card = st.fixed_dictionaries(
    {"checked": mostly(st.just(True), _json), "found": st.booleans() | _json},
    optional={"positives": st.integers(-1, 100) | _json, "total": st.integers(0, 100) | _json,
              "scan_date": st.sampled_from(["2026-11-20T10:00:00Z", "2026-13-45T99:00:00Z", "1-1-1"]) | _json,
              "sent_as": mostly(st.just("http://h.example/?q=1"), _values | _json), "md5": _values | _json, "sha1": _values, "sha256": _values,
              "asn": _json, "country": _json, "resolutions": st.lists(st.fixed_dictionaries({"ip": _values}) | _json,
                                                                      max_size=15) | _json})
_origin = st.fixed_dictionaries({}, optional={"labels": st.lists(
    st.sampled_from(["TLP:GREEN", "TLP:AMBER+STRICT", "tlp:red", "TLP:WHITE"]) | _json, max_size=4) | _json})
_indicator = mostly(_valid, st.fixed_dictionaries(
    {"type": st.sampled_from(["ip", "domain", "url", "md5", "sha1", "sha256"]) | _json, "value": _values | _json}))
_summary = st.fixed_dictionaries({"kind": st.just("summary"), "indicator": _indicator, "summary": _card,
                                  "origin": _origin})
_record = mostly(_summary, st.one_of(
    st.fixed_dictionaries({"kind": st.just("verdict_change"), "indicator": _indicator,
                           "previous": st.fixed_dictionaries({"verdict": st.sampled_from(["benign", "x"])}) | _json,
                           "current": st.fixed_dictionaries({"verdict": st.sampled_from(["malicious", "unknown"]) | _json,
                                                             "positives": st.integers(0, 80) | _json,
                                                             "total": st.integers(0, 80) | _json}) | _json}),
    st.fixed_dictionaries({"kind": st.just("attribute"), "indicator": _indicator,
                           "attribute": st.fixed_dictionaries({"name": st.just("VirusTotal Community Reputation"),
                                                               "value": _json})}),
    _json, st.binary(max_size=40)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(st.tuples(_record, st.integers(-3 * 86400, 2 * 86400)), min_size=1, max_size=12))
def test_any_record_folds_without_error_and_what_is_served_stays_valid(records):
    feed = state(max_indicators=4, indicator_at=2)
    for record, offset_s in records:
        fold(feed, record if isinstance(record, bytes) else orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS),
             at=NOW + timedelta(seconds=offset_s))
    check_feed(*serve(feed))
    note(f"served {min(2, sum(len(d.entries) for d in feed.served()))}+ indicators")
    for day in feed.served():
        assert 0 < len(day.entries) <= 4
