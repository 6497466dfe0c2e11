"""Quota governor and fault tolerance against the emulator's limits and fault injection."""

from __future__ import annotations

import time

import pytest
from tests.support.kafka import collect, finals, produce, summaries, wait_finals
from tests.support.settings import fast_retries

from pipeline.devtools.rig import wait_until
from topics import DEAD, ENRICHED, RAW

pytestmark = pytest.mark.integration




def ips(n, base="151.101"):
    """n distinct, globally routable addresses (the policy gate never sends documentation ranges)."""
    return [f"{base}.{i // 200}.{i % 200 + 1}" for i in range(n)]


def test_no_call_above_the_configured_rate(kafka, emulator_factory, worker_factory):
    emulator = emulator_factory("--rate-per-minute", "120")
    worker_factory(kafka, emulator.url, vt_rate_per_minute="120")
    produce(kafka, RAW, ips(30))
    wait_finals(kafka, 30)
    stats = emulator.stats()
    assert stats["rejected_quota"] == 0
    assert stats["accepted"] == 30 and stats["max_accepted_in_any_60s"] <= 120


@pytest.mark.parametrize("api", ["v3", "v2"])
def test_quota_exceeded_parks_and_pauses_instead_of_looping(kafka, emulator_factory, worker_factory, api):
    emulator = emulator_factory()
    emulator.control("/_emulator/config", {"retry_after_s": 1.5})
    emulator.control("/_emulator/faults", {"mode": "429", "count": 2})
    worker_factory(kafka, emulator.url, vt_api_version=api, **fast_retries())
    produce(kafka, RAW, ips(5))
    events = wait_finals(kafka, 5)
    assert all(e["summary"]["found"] is True for e in finals(events))
    stats = emulator.stats()
    assert stats["faults_injected"] == 2  # two answers of 429/204, then calls waited: no tight loop
    assert stats["accepted"] == 5


@pytest.mark.parametrize("mode", ["500", "503", "timeout", "reset"])
def test_transient_faults_are_retried_through_the_tiers(kafka, emulator_factory, worker_factory, mode):
    emulator = emulator_factory()
    emulator.control("/_emulator/faults", {"mode": mode, "count": 2, "match": "8.8.4.4"})
    worker_factory(kafka, emulator.url, vt_read_timeout="1", **fast_retries())
    produce(kafka, RAW, ["8.8.4.4", "9.9.9.9"])
    events = wait_finals(kafka, 2)
    assert all(e["summary"]["found"] is True for e in finals(events))
    assert collect(kafka, DEAD, lambda recs: False, timeout=1) == []


@pytest.mark.parametrize("mode", ["truncated", "malformed"])
def test_persistent_garbage_ends_in_dead_letters_after_the_attempts(kafka, emulator_factory, worker_factory, mode):
    emulator = emulator_factory()
    emulator.control("/_emulator/faults", {"mode": mode, "match": "8.8.4.4"})
    worker_factory(kafka, emulator.url, retry_max_attempts="3", **fast_retries())
    produce(kafka, RAW, ["8.8.4.4", "9.9.9.9"])
    events = wait_finals(kafka, 2)
    by_value = {e["indicator"]["value"]: e["summary"] for e in finals(events)}
    assert by_value["9.9.9.9"]["found"] is True
    assert by_value["8.8.4.4"]["checked"] is False and "MalformedResponse" in by_value["8.8.4.4"]["reason"]
    (dead,) = collect(kafka, DEAD, lambda recs: len(recs) >= 1, timeout=10)
    assert dead["stage"] == "gateway" and dead["attempts"] == 3 and dead["error"]


def test_connection_refused_is_retried_then_dead_lettered(kafka, worker_factory):
    worker_factory(kafka, "http://127.0.0.1:1", retry_max_attempts="2", vt_connect_timeout="1", **fast_retries())
    produce(kafka, RAW, ["8.8.4.4"])
    (final,) = finals(wait_finals(kafka, 1))
    assert final["summary"]["checked"] is False and "TransportError" in final["summary"]["reason"]
    (dead,) = collect(kafka, DEAD, lambda recs: len(recs) >= 1, timeout=10)
    assert dead["attempts"] == 2


def test_wrong_key_stops_calls_holds_records_and_resumes(kafka, emulator_factory, worker_factory):
    emulator = emulator_factory()
    emulator.control("/_emulator/faults", {"mode": "401"})
    worker = worker_factory(kafka, emulator.url, **fast_retries())
    produce(kafka, RAW, ips(3))
    wait_until(lambda: emulator.stats()["faults_injected"] >= 1, what="the worker calling VirusTotal")
    first_try_seen = time.monotonic()
    wait_until(lambda: emulator.stats()["faults_injected"] >= 6, what="six tries of the rejected key")
    # One try per one-second hold, not a loop: five holds lie between the first try and the sixth
    # (a lower bound, less 2 s for noticing the first try late on a loaded machine).
    assert time.monotonic() - first_try_seen >= 3.0
    events = collect(kafka, ENRICHED, lambda evs: False, timeout=1)
    assert finals(events) == [] and collect(kafka, DEAD, lambda r: False, timeout=1) == []
    emulator.control("/_emulator/faults", {"mode": "none"})
    wait_finals(kafka, 3, timeout=60)
    log = worker.output()
    assert log.count("VirusTotal rejected the API key") == 1
    assert "calls resume" in log


def test_daily_quota_parks_until_reset_and_says_not_checked(kafka, emulator, worker_factory):
    worker_factory(kafka, emulator.url, vt_daily_quota="3", **fast_retries())
    produce(kafka, RAW, ips(5))
    events = collect(kafka, ENRICHED, lambda evs: len(summaries(evs)) >= 5, timeout=60)
    found = [e for e in finals(events) if e["summary"].get("checked")]
    deferred = [e["summary"] for e in summaries(events) if e["summary"].get("pending")]
    assert len(found) == 3 and emulator.stats()["accepted"] == 3
    assert len(deferred) == 2 and all("quota" in s["reason"] and "exhausted" in s["reason"] for s in deferred)
    assert len(finals(events)) == 3  # the other two stay parked until 00:00 UTC, not answered as clean


def test_per_source_cap_keeps_a_noisy_feed_from_draining_the_key(kafka, emulator, worker_factory):
    worker_factory(kafka, emulator.url, source_daily_caps="noisy=2", **fast_retries())
    produce(kafka, RAW, [{"value": v, "source": "noisy"} for v in ips(4)]
            + [{"value": v, "source": "quiet"} for v in ips(2, "104.16")])
    events = collect(kafka, ENRICHED, lambda evs: len(summaries(evs)) >= 6, timeout=60)
    by_source: dict[str, list] = {}
    for e in summaries(events):
        by_source.setdefault(e["origin"]["source"], []).append(e["summary"])
    assert sum(bool(s.get("checked")) for s in by_source["noisy"]) == 2
    assert sum("source 'noisy'" in (s.get("reason") or "") for s in by_source["noisy"]) == 2
    assert all(s.get("checked") for s in by_source["quiet"])


def test_daily_count_survives_a_worker_restart(kafka, emulator, worker_factory):
    """The governor's state is the vt.quota table: a restarted worker goes on counting, not from zero."""
    first = worker_factory(kafka, emulator.url, vt_daily_quota="3", **fast_retries())
    produce(kafka, RAW, ips(2))
    wait_finals(kafka, 2)
    first.stop()
    worker_factory(kafka, emulator.url, vt_daily_quota="3", **fast_retries())
    produce(kafka, RAW, ips(3, "104.16"))
    events = collect(kafka, ENRICHED, lambda evs: len(summaries(evs)) >= 5, timeout=90)
    deferred = [e["summary"] for e in summaries(events) if e["summary"].get("pending")]
    assert emulator.stats()["accepted"] == 3
    assert len(deferred) == 2 and all("exhausted" in s["reason"] for s in deferred)
