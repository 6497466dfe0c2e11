"""The whole flow over a real broker and the emulator: indicators.raw in, indicators.enriched out."""

from __future__ import annotations

import base64

import pytest
from aiokafka.partitioner import murmur2
from tests.support.kafka import collect, produce, summaries

from pipeline.devtools.rig import wait_until
from topics import DEAD, ENRICHED, LOOKUPS, RAW

pytestmark = pytest.mark.integration

PARTITIONS = 4  # VTSTREAM_PARTITIONS' default: vt.lookups' partition count
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


@pytest.mark.both_brokers
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


def beside(key: str, tag: str) -> str:
    """A never-seen domain whose vt.lookups record lands on the same partition as ``key``'s."""
    def slot(k: str) -> int:
        return (murmur2(k.encode()) & 0x7FFFFFFF) % PARTITIONS
    return next(d for d in (f"{tag}-{j}.example.net" for j in range(10_000)) if slot(f"domain:{d}") == slot(key))


def lookups_sent_for(kafka, records, sentinels):
    """Produce ``records``, then never-seen ``sentinels``, on one input partition; the origin ids
    on vt.lookups once every sentinel's lookup is there.

    Intake handles an input partition in order and each sentinel shares a vt.lookups partition
    with the indicators it guards, so a lookup sent for one of ``records`` is read before it.
    """
    produce(kafka, RAW, [*records, *({"value": s, "id": s} for s in sentinels)], key=b"one partition")
    ids = [r["origin"].get("id") for r in collect(kafka, LOOKUPS, lambda recs: set(sentinels) <= {
        r["origin"].get("id") for r in recs})]
    assert set(sentinels) <= set(ids), f"sentinels missing on vt.lookups: {sorted(set(sentinels) - set(ids))}"
    return ids


def test_repeats_of_a_finished_lookup_are_answered_at_intake(kafka, emulator, worker_factory):
    """One hop for cache hits: once the result is in the cache, repeats never reach vt.lookups."""
    worker_factory(kafka, emulator.url)
    produce(kafka, RAW, ["9.9.9.9", "quad9.net"])
    wait_summaries(kafka, 2)
    # The worker's copy follows the cache changelog on its own: probe until it answers a repeat.
    probes = iter(range(1000))

    def copy_answers_a_repeat() -> bool:
        n = next(probes)
        ids = lookups_sent_for(kafka, [{"value": "9.9.9.9", "id": f"probe{n}"}], [beside("ip:9.9.9.9", f"s{n}")])
        return f"probe{n}" not in ids
    wait_until(copy_answers_a_repeat, what="the worker's cache copy answering a repeat")
    sentinels = next(probes)
    repeats = [{"value": v, "id": f"repeat{i}"} for i, v in enumerate(["9.9.9.9", "quad9.net"] * 25)]
    ids = lookups_sent_for(kafka, repeats, [beside("ip:9.9.9.9", "last"), beside("domain:quad9.net", "last")])
    assert not [i for i in ids if i and i.startswith("repeat")], "a repeat of a finished lookup took the second hop"
    events = wait_summaries(kafka, 2 + 2 * sentinels + 50 + 2)
    answered = [e for e in summaries(events) if str(e["origin"].get("id")).startswith("repeat")]
    assert len(answered) == 50 and all(e["summary"].get("cached") for e in answered)
    assert emulator.stats()["lookups"] == 2 + sentinels + 2  # the two first sightings and each sentinel


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
