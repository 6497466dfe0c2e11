"""The metrics' reading of a run, readiness bookkeeping and the JSON log format (pure, no broker)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.contracts.card import SummaryCard
from pipeline.contracts.events import SummaryEvent
from pipeline.contracts.events import make_event
from pipeline.contracts.indicator import Indicator
from pipeline.contracts.origin import Origin
from pipeline.contracts.quota import QuotaState
from pipeline.contracts.wire import DeadLetter
from pipeline.observe.logs import JsonFormatter, handling
from pipeline.observe.metrics import Metrics, QuotaReading
from pipeline.observe.probes import Readiness
from pipeline.vt.governor import Governor
from topics import DEAD, ENRICHED, LOOKUPS, POLLS, retry_topic

pytestmark = pytest.mark.unit

IND = {"type": "ip", "value": "151.101.0.1"}

#: issue 16's metrics and their labels
ISSUE_METRICS = {
    "vtstream_records_total": {"stage"}, "vtstream_cache_hits_total": {"path"}, "vtstream_coalesced_total": set(),
    "vtstream_policy_skips_total": {"rule"}, "vtstream_vt_requests_total": {"endpoint", "status"},
    "vtstream_vt_request_seconds_count": set(), "vtstream_quota_used": {"window"},
    "vtstream_quota_remaining": {"window"}, "vtstream_parked_records": {"tier"},
    "vtstream_dead_letters_total": {"stage"}, "vtstream_consumer_lag": {"topic"},
    "vtstream_enrich_seconds_count": set(),
}
#: What intake sends to vt.dead (the record a dead letter is: pipeline.contracts.wire.DeadLetter).
DEAD_LETTER = DeadLetter({"text": "x"}, "intake", "bad", None, 1, "2026-11-30T20:00:00Z")


def summary(received_at: float | None = 100.0, **card: Any) -> SummaryEvent:
    return SummaryEvent.of(SummaryCard(**{"checked": True, **card}), indicator=Indicator("ip", "8.8.8.8"),
                           action="submit_ip", api="v3",
                           origin=Origin(ref="indicators.raw/0/1", received_at=received_at))


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_outputs_are_counted_by_what_they_say() -> None:
    m = Metrics()
    clock = lambda: 102.5  # noqa: E731
    m.watcher("intake", clock)(ENRICHED, summary(cached=True))
    m.watcher("intake", clock)(ENRICHED, summary(cached=True))
    m.watcher("lookup", clock)(ENRICHED, summary(cached=True))
    results = m.watcher("results", clock)
    results(ENRICHED, summary(cached=False, coalesced=True))
    results(ENRICHED, summary(cached=False))
    results(ENRICHED, summary(pending=True, checked=False))  # interim: no latency yet
    results(ENRICHED, make_event("attribute", {"name": "a", "value": 1}, indicator=IND,
                                              action="submit_ip", api="v3"))
    m.watcher("intake", clock)(ENRICHED, summary(skipped=True, rule="internal_domain", checked=False))
    m.watcher("intake", clock)(DEAD, DEAD_LETTER)
    m.watcher("intake", clock)(LOOKUPS, b"raw bytes are not looked into")
    s = samples(m)
    assert s[("vtstream_cache_hits_total", (("path", "one-hop"),))] == 2
    assert s[("vtstream_cache_hits_total", (("path", "lookup"),))] == 1
    assert s[("vtstream_coalesced_total", ())] == 1
    assert s[("vtstream_policy_skips_total", (("rule", "internal_domain"),))] == 1
    assert s[("vtstream_dead_letters_total", (("stage", "intake"),))] == 1
    assert s[("vtstream_enrich_seconds_count", ())] == 6  # every final summary, not the interim one
    assert s[("vtstream_enrich_seconds_sum", ())] == pytest.approx(6 * 2.5)
    assert s[("vtstream_enrich_seconds_bucket", (("le", "2.5"),))] == 6  # 2.5 s is within le=2.5 ...
    assert s[("vtstream_enrich_seconds_bucket", (("le", "1.0"),))] == 0  # ... and above le=1
    assert s[("vtstream_enrich_seconds_bucket", (("le", "+Inf"),))] == 6


def test_vt_requests_are_labelled_without_the_indicator() -> None:
    m = Metrics()
    m.vt_request("GET", "/api/v3/ip_addresses/151.101.0.1", 200, 0.2)
    m.vt_request("GET", "/api/v3/ip_addresses/151.101.0.2", 200, 0.3)
    m.vt_request("GET", "/api/v3/analyses/u-abc-1", None, 5.0)
    s = samples(m)
    assert s[("vtstream_vt_requests_total", (("endpoint", "GET /api/v3/ip_addresses/{id}"), ("status", "200")))] == 2
    assert s[("vtstream_vt_requests_total", (("endpoint", "GET /api/v3/analyses/{id}"), ("status", "error")))] == 1
    assert s[("vtstream_vt_request_seconds_count", ())] == 3


def test_lag_parked_and_quota_are_read_at_scrape_time() -> None:
    m = Metrics()
    offsets = {(LOOKUPS, 0): (10, 7), (LOOKUPS, 1): (5, 5), (retry_topic("30s"), 0): (4, 1),
               (POLLS, 0): (2, None)}
    m.read_offsets(lambda: offsets)
    m.read_quota(lambda: [QuotaReading("day", 3, 497), QuotaReading("month", 3, None)])
    s = samples(m)
    assert s[("vtstream_consumer_lag", (("topic", LOOKUPS),))] == 3
    assert s[("vtstream_consumer_lag", (("topic", POLLS),))] == 2  # never committed: from offset 0
    assert s[("vtstream_parked_records", (("tier", "30s"),))] == 3
    assert s[("vtstream_quota_used", (("window", "day"),))] == 3
    assert s[("vtstream_quota_remaining", (("window", "day"),))] == 497
    assert ("vtstream_quota_remaining", (("window", "month"),)) not in s  # no monthly quota, nothing left to count
    offsets[(LOOKUPS, 0)] = (10, 10)
    assert samples(m)[("vtstream_consumer_lag", (("topic", LOOKUPS),))] == 0


def test_quota_readings_follow_the_governor() -> None:

    governor = Governor(60, 500, monthly_quota=1000, clock=lambda: 1_790_000_000.0)
    governor.load(QuotaState(day=governor.day, used_today=20, month=governor.month, used_month=300))
    assert governor.readings() == [QuotaReading("day", 20, 480), QuotaReading("month", 300, 700)]


def test_every_metric_of_the_issue_is_exposed_with_its_labels() -> None:
    m = Metrics()
    clock = lambda: 1.0  # noqa: E731
    m.records.labels("intake").inc()
    m.watcher("intake", clock)(ENRICHED, summary(cached=True))
    m.watcher("results", clock)(ENRICHED, summary(coalesced=True))
    m.watcher("intake", clock)(ENRICHED, summary(skipped=True, rule="blocked_label"))
    m.watcher("intake", clock)(DEAD, DEAD_LETTER)
    m.vt_request("GET", "/api/v3/domains/example.org", 200, 0.1)
    m.read_offsets(lambda: {(retry_topic("30s"), 0): (1, 0)})
    m.read_quota(lambda: [QuotaReading("day", 1, 499)])
    found: dict[str, set[str]] = {}
    for (name, labels), _ in samples(m).items():
        found.setdefault(name, set()).update(k for k, _ in labels if k != "le")
    for name, labels in ISSUE_METRICS.items():
        assert found.get(name) == labels, name


def test_ready_once_every_condition_is_met() -> None:
    readiness = Readiness()
    topics_missing = ["topics in the cluster metadata: vt.lookups"]
    readiness.expect_group("vtstream")
    readiness.check(lambda: topics_missing)
    assert readiness.waiting_for() == ["consumer group vtstream: first partition assignment",
                                       "topics in the cluster metadata: vt.lookups"]
    readiness.done("vtstream")
    topics_missing.clear()
    assert readiness.waiting_for() == []


def test_json_log_lines_carry_the_stage_and_indicator_key() -> None:
    record = logging.LogRecord("vtstream.gateway", logging.WARNING, __file__, 1, "parked: %s", ("500",), None)
    handling("gateway", b"ip:151.101.0.1")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        handling("gateway", None)
    assert line["message"] == "parked: 500" and line["level"] == "WARNING"
    assert (line["stage"], line["key"]) == ("gateway", "ip:151.101.0.1")
    assert json.loads(JsonFormatter().format(record))["key"] is None


def test_verdict_changes_are_counted_from_and_to() -> None:
    from pipeline.contracts.events import VerdictChange
    from pipeline.contracts.verdict import VerdictCheck

    m = Metrics()
    watch = m.watcher("results", lambda: 1.0)
    for before, after in (("benign", "malicious"), ("benign", "malicious"), ("malicious", "suspicious")):
        watch(ENRICHED, VerdictChange(Indicator("ip", "8.8.8.8"), "submit_ip", "v3",
                                                   VerdictCheck(before, 0, 70, 1.0), VerdictCheck(after, 9, 70, 2.0)))
    s = samples(m)
    assert s[("vtstream_verdict_changes_total", (("from", "benign"), ("to", "malicious")))] == 2
    assert s[("vtstream_verdict_changes_total", (("from", "malicious"), ("to", "suspicious")))] == 1
