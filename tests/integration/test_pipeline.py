"""The whole flow over a real broker and the emulator: indicators.raw in, indicators.enriched out."""

from __future__ import annotations

import base64
import time

import pytest
from kafka_helpers import collect, produce, summaries

from topics import changelog_name

pytestmark = pytest.mark.integration

RAW, ENRICHED, DEAD, LOOKUPS = "indicators.raw", "indicators.enriched", "vt.dead", "vt.lookups"
SHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"


def by_value(events, value):
    return [e for e in events if e["indicator"]["value"] == value]


def wait_summaries(kafka, n, timeout=90.0):
    events = collect(kafka, ENRICHED, lambda evs: len(summaries(evs)) >= n, timeout=timeout)
    assert len(summaries(events)) >= n, f"only {len(summaries(events))} of {n} summaries arrived"
    return events


@pytest.mark.parametrize("api", ["v3", "v2"])
def test_each_lookup_action_is_enriched(kafka, emulator, worker_factory, api):
    worker_factory(kafka, emulator.url, vt_api_version=api, url_max_age="3650d")  # serve stored URL reports
    produce(kafka, RAW, ["8.8.8.8", "example.com", SHA256.upper(), "http://www.google.com/",
                         '{"value": "unknown-notfound.example.org", "type": "domain"}'])
    events = wait_summaries(kafka, 5)
    for value, action in [("8.8.8.8", "submit_ip"), ("example.com", "submit_domain"),
                          (SHA256, "submit_hash"), ("http://www.google.com/", "submit_url")]:
        mine = by_value(events, value)
        kinds = {e["kind"] for e in mine}
        assert {"summary", "attribute"} <= kinds, (value, kinds)
        assert all(e["action"] == action and e["api"] == api for e in mine)
        (summary,) = summaries(mine)
        assert summary["summary"]["found"] is True and summary["summary"]["checked"] is True
    ip_attrs = {e["attribute"]["name"] for e in by_value(events, "8.8.8.8") if e["kind"] == "attribute"}
    assert {"VirusTotal ASN", "VirusTotal AS Owner", "VirusTotal Country"} <= ip_attrs
    assert any(e["kind"] == "relation" for e in by_value(events, "example.com"))
    (unknown,) = summaries(by_value(events, "unknown-notfound.example.org"))
    assert unknown["summary"]["found"] is False and unknown["summary"]["checked"] is True
    assert len({e["event_id"] for e in events}) == len(events)


def test_cache_hits_and_coalescing_cost_one_call_per_indicator(kafka, emulator_factory, worker_factory):
    emulator = emulator_factory("--latency-ms", "400")
    worker_factory(kafka, emulator.url)
    produce(kafka, RAW, ["1.1.1.1"] * 60 + ["github.com"] * 40)
    events = wait_summaries(kafka, 100)
    assert len(summaries(events)) == 100
    assert emulator.stats()["lookups"] == 2
    refs = {e["origin"]["ref"] for e in summaries(events)}
    assert len(refs) == 100  # every sighting answered once
    produce(kafka, RAW, ["1.1.1.1", "github.com"])
    events = wait_summaries(kafka, 102)
    cached = [e for e in summaries(events) if e["summary"].get("cached")]
    assert len(cached) == 2
    assert emulator.stats()["lookups"] == 2


def test_repeats_of_a_finished_lookup_are_answered_at_intake(kafka, emulator, worker_factory):
    """One hop for cache hits: once the result is in the cache, repeats never reach vt.lookups."""
    worker_factory(kafka, emulator.url)
    produce(kafka, RAW, ["9.9.9.9", "quad9.net"])
    wait_summaries(kafka, 2)
    collect(kafka, changelog_name("vtstream"), lambda recs: sum(r.get("state") == "done" for r in recs) >= 2)
    time.sleep(3.0)  # the worker's copy follows the same changelog (slack for a loaded machine)
    produce(kafka, RAW, ["9.9.9.9", "quad9.net"] * 25)
    events = wait_summaries(kafka, 52)
    assert sum(bool(e["summary"].get("cached")) for e in summaries(events)) == 50
    lookups = collect(kafka, LOOKUPS, lambda recs: False, timeout=2.0)
    assert len(lookups) == 2, "a repeat of a finished lookup took the second hop"
    assert emulator.stats()["lookups"] == 2


def test_policy_gate_never_sends_and_says_why(kafka, emulator, worker_factory):
    worker_factory(kafka, emulator.url, internal_domains="corp.example", allow_labels="TLP:GREEN,TLP:CLEAR")
    produce(kafka, RAW, [
        {"value": "10.0.0.8", "labels": ["TLP:GREEN"]},
        {"value": "fe80::1", "labels": ["TLP:GREEN"]},
        {"value": "hr.corp.example", "labels": ["TLP:GREEN"]},
        {"value": "8.8.4.4", "labels": ["TLP:GREEN", "TLP:RED"]},
        {"value": "8.8.4.4", "labels": ["TLP:AMBER"]},
        {"value": "9.9.9.9"},
        {"value": "9.9.9.9", "labels": ["tlp:green"]},
    ])
    events = wait_summaries(kafka, 7)
    skipped = [e["summary"] for e in summaries(events) if e["summary"].get("skipped")]
    assert sorted(s["rule"] for s in skipped) == sorted(
        ["private_address", "private_address", "internal_domain", "blocked_label", "not_in_allow_list",
         "not_in_allow_list"])
    assert all(s["reason"] and s["checked"] is False for s in skipped)
    assert emulator.stats()["lookups"] == 1  # only the allowed 9.9.9.9


def test_malformed_input_goes_to_dead_letters_and_the_worker_carries_on(kafka, emulator, worker_factory):
    worker = worker_factory(kafka, emulator.url)
    bad = [b"\x00\x01\x02\xff binary", b"\xc3\x28 invalid utf-8", b"{" * 100_000, b"[" * 3000 + b"]" * 3000,
           b'{"value": "' + b"x" * (1024 * 1024) + b'"}', b"", b"   ", b"\n\n", b'{"value": null}',
           b"not an indicator at all", b'{"value": "8.8.8.8", "labels": 5}']
    good = [b"8.8.8.8", b"example.com"]
    produce(kafka, RAW, [good[0], *bad, good[1]])
    dead = collect(kafka, DEAD, lambda recs: len(recs) >= len(bad), timeout=60)
    assert len(dead) == len(bad)
    assert all(d["stage"] == "intake" and d["reason"] for d in dead)
    kept = [base64.b64decode(d["original"]["base64"]) for d in dead if "base64" in d["original"]]
    assert sorted(kept) == sorted([bad[0], bad[1]])  # undecodable records kept byte for byte
    events = wait_summaries(kafka, 2)
    assert {e["indicator"]["value"] for e in summaries(events)} == {"8.8.8.8", "example.com"}
    assert worker.proc.poll() is None


def test_api_key_never_leaves_the_worker(kafka, emulator_factory, worker_factory):
    key = "k3y-" + "s3cr3t" * 8
    emulator = emulator_factory("--api-key", key)
    worker = worker_factory(kafka, emulator.url, vt_api_key=key, vt_api_version="v2", log_level="DEBUG")
    produce(kafka, RAW, ["8.8.8.8", "not an ioc", "example.com"])
    events = wait_summaries(kafka, 2)
    dead = collect(kafka, DEAD, lambda recs: len(recs) >= 1, timeout=30)
    worker.stop()
    blob = repr(events) + repr(dead) + worker.output()
    assert key not in blob
    assert "s3cr3t" not in blob
