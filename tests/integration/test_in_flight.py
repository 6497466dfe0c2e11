"""Calls in flight under a strict pace, and the key's allowances read from VirusTotal.

The emulator answers every request ``--latency-ms`` late and concurrently, and
counts what a burst or a serial gateway would show: accepted requests in any
1 s (starts), requests answered at once (in flight), 429s.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from tests.support.emulator import received
from tests.support.kafka import collect, finals, produce, wait_finals
from tests.support.settings import fast_retries

from pipeline.cli.status import gather_status, summarize
from pipeline.contracts.indicator import Indicator
from pipeline.contracts.origin import Origin
from pipeline.contracts.wire import LookupRequest
from pipeline.devtools.rig import group_members, wait_until
from pipeline.settings import DEMO_API_KEY, Settings
from topics import LOOKUPS, RAW, retry_topic

pytestmark = pytest.mark.integration



def ips(n: int, base: str = "151.101") -> list[str]:
    return [f"{base}.{i // 200}.{i % 200 + 1}" for i in range(n)]


def found_values(events: list[dict]) -> set[str]:
    return {e["indicator"]["value"] for e in finals(events) if e["summary"]["found"] is True}


def test_calls_in_flight_never_exceed_the_pace(kafka, emulator_factory, worker_factory):
    """120/min and 1.5 s answers: a serial gateway would have one call open at a time; calls in
    flight overlap, yet start one pace interval (0.5 s) apart: at most 2 in any 1 s, 3 with the
    emulator's timer jitter; a burst of the 8 in flight would show 8."""
    emulator = emulator_factory("--rate-per-minute", "120", "--latency-ms", "1500")
    worker_factory(kafka, emulator.url, vt_rate_per_minute="120", vt_max_in_flight="8")
    values = ips(14)
    produce(kafka, RAW, values)
    assert found_values(wait_finals(kafka, 14)) == set(values)
    stats = emulator.stats()
    assert stats["rejected_quota"] == 0 and stats["accepted"] == 14
    assert stats["max_in_flight"] >= 2, stats  # calls overlapped
    assert stats["max_accepted_in_any_1s"] <= 3, stats  # and still started one pace interval apart


def test_a_429_storm_with_calls_in_flight(kafka, emulator_factory, worker_factory):
    """Four answers in a row are 429 while other calls are in flight: every call pauses, the records
    are parked and come back, nothing is lost, and no burst follows the pause."""
    emulator = emulator_factory("--latency-ms", "400")
    emulator.control("/_emulator/config", {"retry_after_s": 1})
    emulator.control("/_emulator/faults", {"mode": "429", "count": 4})
    worker_factory(kafka, emulator.url, vt_rate_per_minute="120", vt_max_in_flight="8", **fast_retries())
    values = ips(8, base="151.102")
    produce(kafka, RAW, values)
    assert found_values(wait_finals(kafka, 8)) == set(values)
    stats = emulator.stats()
    assert stats["faults_injected"] == 4 and stats["accepted"] == 8  # one good answer each, no retry loop
    assert stats["max_accepted_in_any_1s"] <= 3, stats  # 2 per second, and jitter


def test_a_stop_with_calls_in_flight_loses_nothing(kafka, emulator_factory, worker_factory):
    """SIGTERM while several 3-second calls are open; the next worker finishes what was left."""
    emulator = emulator_factory("--latency-ms", "3000")
    first = worker_factory(kafka, emulator.url, vt_rate_per_minute="600", vt_max_in_flight="8", **fast_retries())
    values = ips(12, base="151.103")
    produce(kafka, RAW, values)
    wait_until(lambda: emulator.stats()["max_in_flight"] >= 4, timeout=120)
    first.stop()
    worker_factory(kafka, emulator.url, vt_rate_per_minute="600", vt_max_in_flight="8", **fast_retries())
    assert found_values(wait_finals(kafka, 12, timeout=120)) == set(values)


def _status(kafka: str) -> dict:
    return summarize(asyncio.run(gather_status(Settings.of(kafka_bootstrap=kafka))))


def test_the_allowances_vt_reports_bind_when_smaller(kafka, emulator_factory, worker_factory):
    """The emulator's key allows 60/min (3,600/hour) and 700/day; the worker is configured for
    6,000/min: it paces at 60/min (one start a second), and status shows both views."""
    emulator = emulator_factory("--rate-per-minute", "60", "--daily-quota", "700")
    worker = worker_factory(kafka, emulator.url, vt_max_in_flight="8")
    values = ips(5, base="151.104")
    produce(kafka, RAW, values)
    assert found_values(wait_finals(kafka, 5)) == set(values)
    stats = emulator.stats()
    assert stats["rejected_quota"] == 0 and stats["max_accepted_in_any_1s"] <= 2, stats  # 1/s, and jitter
    view = _status(kafka)
    assert view["quota"]["rate_per_minute"] == 60 and view["quota"]["daily_quota"] == 700
    assert view["allowances"]["configured"] == {"per_minute": 6000, "daily": 1000000, "monthly": 0}
    assert view["allowances"]["virustotal"]["hourly"] == 3600
    assert view["allowances"]["virustotal"]["daily"] == 700
    assert DEMO_API_KEY not in worker.output()


def test_without_overall_quotas_the_settings_alone_count_said_once(kafka, emulator_factory, worker_factory):
    emulator = emulator_factory()
    emulator.control("/_emulator/config", {"overall_quotas": False})
    worker = worker_factory(kafka, emulator.url, vt_max_in_flight="8")
    produce(kafka, RAW, ips(3, base="151.105"))
    wait_finals(kafka, 3)
    view = _status(kafka)
    assert view["quota"]["rate_per_minute"] == 6000
    assert view["allowances"]["virustotal"] is None
    assert "404" in view["allowances"]["virustotal_note"]
    assert worker.output().count("not available from VirusTotal") == 1
    assert DEMO_API_KEY not in worker.output()


def test_a_rebalance_with_calls_in_flight_loses_nothing(kafka, emulator_factory, worker_factory):
    """A second worker joins while A holds 8 records: at 120/min and 1.5 s answers about 3 calls are
    open and the rest wait for their start. The open calls finish, the waiting records re-park, the
    gateway lanes stay or move, and every IP is answered with exactly one call: a re-parked record
    had not called yet, and faust commits what was acknowledged before it hands a partition over.
    48 IPs take 24 s at 2 calls a second: time enough for the second worker to join on a loaded box."""
    COUNT = 48
    emulator = emulator_factory("--rate-per-minute", "120", "--latency-ms", "1500")
    settings = {"vt_rate_per_minute": "120", "vt_max_in_flight": "8", **fast_retries()}
    worker_factory(kafka, emulator.url, **settings)
    values = ips(COUNT, base="151.106")
    produce(kafka, RAW, values)
    wait_until(lambda: emulator.stats()["max_in_flight"] >= 2, timeout=120, what="calls in flight")
    worker_factory(kafka, emulator.url, **settings)
    wait_until(lambda: asyncio.run(group_members(kafka, "vtstream")) == 2, timeout=120, what="a group of 2")
    accepted_at_join = emulator.stats()["accepted"]
    assert found_values(wait_finals(kafka, COUNT)) == set(values)
    assert accepted_at_join < COUNT, "all calls were done before the rebalance: nothing was tested"
    parked = collect(kafka, retry_topic("1s"), lambda evs: any(e.get("reason") == "rebalance or shutdown" for e in evs),
                     timeout=5)
    assert any(e.get("reason") == "rebalance or shutdown" for e in parked)  # records in hand when it came
    stats = emulator.stats()
    assert stats["accepted"] == COUNT and stats["max_lookups_per_indicator"] == 1, stats  # no call twice
    assert stats["rejected_quota"] == 0 and stats["max_accepted_in_any_1s"] <= 3, stats  # 2 per second, and jitter


def test_a_lookup_delivered_again_while_its_request_is_out_asks_virustotal_once(kafka, emulator_factory,
                                                                               worker_factory):
    """What a broker that lost a commit does (the group seeks back; the records are delivered again
    to the same worker): the requester's sighting arrives twice while its call is under way. The
    worker whose request the broker acknowledged knows it is on Kafka and does not pay VirusTotal again."""
    emulator = emulator_factory("--latency-ms", "3000")
    worker_factory(kafka, emulator.url)
    indicator = Indicator("ip", "151.101.7.7")
    record = LookupRequest(indicator, indicator.action, Origin(ref="indicators.raw/0/42", id="s1")).to_bytes()
    produce(kafka, LOOKUPS, [record], key=indicator.key.encode())
    wait_until(lambda: "151.101.7.7" in received(emulator), timeout=60)  # the call arrived: it was acknowledged
    produce(kafka, LOOKUPS, [record], key=indicator.key.encode())  # delivered again, its answer 3 s away
    events = wait_finals(kafka, 1, timeout=60)
    assert {e["origin"]["id"] for e in finals(events)} == {"s1"}
    time.sleep(1.5)  # a second call would have arrived seconds ago (the emulator counts it when it answers)
    assert emulator.stats()["lookups"] == 1
