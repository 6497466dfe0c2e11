"""`vtstream status` rendering from hand-made snapshots: no broker, a fixed clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import pytest

from pipeline.cli.status import StatusSnapshot, render, summarize
from pipeline.contracts.quota import QuotaState
from pipeline.contracts.run_state import RunState
from topics import DEAD, LOOKUPS, RAW, retry_topic

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 22, 18, 48, 0, tzinfo=timezone.utc).timestamp()


def _snap(**fields: Any) -> StatusSnapshot:
    tiers = retry_topic("30s"), retry_topic("2m")
    base = StatusSnapshot(now=NOW, bootstrap="kafka1:9092", group="vtstream", daily_quota=500,
                          parked={tiers[0]: 3, tiers[1]: 0}, dead=17,
                          lag={RAW: 0, LOOKUPS: 12, tiers[0]: 3, tiers[1]: 0})
    return replace(base, **fields)


def _governor(**fields: Any) -> QuotaState:
    rec: dict[str, Any] = {
        "day": "2026-11-22", "used_today": 123, "daily_quota": 500, "month": "2026-11", "used_month": 4021,
        "monthly_quota": 0, "rate_per_minute": 4, "last_call_at": NOW - 12, "blocked_until": None,
        "blocked_reason": None, "updated_at": NOW - 12}
    rec.update(fields)
    return QuotaState(**rec)


def test_render_a_busy_day() -> None:
    text = render(_snap(governor=_governor(by_source={"proxy": 43, "siem": 80}), source_caps={"siem": 300}))
    assert text.splitlines() == [
        "VirusTotal quota   used today 123 / 500 (377 left, resets 00:00 UTC in 5h12m); "
        "this month 4021 / unlimited; pace 4/min; last call 12s ago",
        "allowances         configured 4/min, 500/day, unlimited/month; VirusTotal's: not reported (not asked yet)",
        "blocked            no",
        "per source         siem 80 / 300, proxy 43 / -",
        "parked             vt.retry.30s 3, vt.retry.2m 0",
        "dead letters       17 on vt.dead",
        "consumer lag       indicators.raw 0, vt.lookups 12 (group vtstream)",
    ]


def test_render_before_any_call_uses_the_settings() -> None:
    text = render(_snap(daily_quota=1000, monthly_quota=20000, rate_per_minute=30, source_caps={"siem": 300}))
    first = text.splitlines()[0]
    assert first == ("VirusTotal quota   used today 0 / 1000 (1000 left, resets 00:00 UTC in 5h12m); "
                     "this month 0 / 20000 (20000 left); pace 30/min (local setting); no calls recorded yet")
    assert "per source         siem 0 / 300" in text


def test_counters_from_an_earlier_day_count_as_zero() -> None:
    snap = _snap(governor=_governor(day="2026-11-21", used_today=500, month="2026-10", used_month=9000,
                                    monthly_quota=10000, last_call_at=NOW - 5 * 3600, by_source={"siem": 300}),
                 source_caps={"siem": 300})
    q = summarize(snap)["quota"]
    assert (q["used_today"], q["remaining_today"], q["used_month"], q["remaining_month"]) == (0, 500, 0, 10000)
    text = render(snap)
    assert "used today 0 / 500 (500 left" in text and "last call 5h00m ago" in text
    assert "(counter last written on 2026-11-21)" in text
    assert "siem 0 / 300" in text


def test_blocked_until_shows_when_and_why_and_expires() -> None:
    midnight = datetime(2026, 11, 23, tzinfo=timezone.utc).timestamp()
    blocked = _snap(governor=_governor(used_today=500, blocked_until=midnight,
                                       blocked_reason="daily quota exhausted"))
    assert "blocked            until 2026-11-23T00:00:00Z: daily quota exhausted" in render(blocked)
    assert summarize(blocked)["blocked"] == {"blocked": True, "until": "2026-11-23T00:00:00Z",
                                             "reason": "daily quota exhausted"}
    expired = _snap(governor=_governor(blocked_until=NOW - 1, blocked_reason="429 from VirusTotal"))
    assert "blocked            no" in render(expired)


def test_missing_topics_and_bad_records_are_reported_not_fatal() -> None:
    text = render(_snap(parked={retry_topic("30s"): None}, dead=None, lag={LOOKUPS: None},
                        missing_topics=(retry_topic("30s"), DEAD, LOOKUPS),
                        notes=("vt.quota record b'governor' is not a JSON object; ignored",)))
    assert "parked             vt.retry.30s missing" in text
    assert "dead letters       vt.dead missing" in text
    assert "consumer lag       vt.lookups missing (group vtstream)" in text
    assert "missing topics     vt.retry.30s, vt.dead, vt.lookups (run 'vtstream topics create')" in text
    assert "note               vt.quota record b'governor' is not a JSON object; ignored" in text


def test_a_spent_daily_quota_shows_as_blocked_until_midnight() -> None:
    spent = _snap(governor=_governor(used_today=500))
    assert "blocked            until 2026-11-23T00:00:00Z: daily quota of 500 requests spent" in render(spent)
    assert "blocked            no" in render(_snap(governor=_governor(used_today=499)))


def test_replay_runs_show_range_position_records_requests_and_state() -> None:
    run = RunState(run="nov", topic="siem.archive", since=NOW - 86400, until=NOW, state="budget spent",
                   position={"1": 40, "0": 37}, records=77, vt_requests=50, updated_at=NOW)
    snap = _snap(governor=_governor(), replay_runs=(run,))
    (shown,) = summarize(snap)["replay_runs"]
    assert (shown["from"], shown["to"], shown["records"], shown["vt_requests"]) == (
        "2026-11-21T18:48:00Z", "2026-11-22T18:48:00Z", 77, 50)
    assert ("replay nov         siem.archive [2026-11-21T18:48:00Z, 2026-11-22T18:48:00Z) at p0@37, p1@40; "
            "77 records, 50 requests, 0 unanswered; budget spent") in render(snap).splitlines()


def test_both_views_of_the_allowances() -> None:
    """Configured, and what VirusTotal reported (used / allowed), as the governor recorded them."""
    gov = _governor(rate_per_minute=600, configured={"per_minute": 1200, "daily": 5000, "monthly": 0},
                    virustotal={"hourly": 36000, "daily": 4000, "monthly": None, "hourly_used": 120,
                                "daily_used": 900, "monthly_used": None})
    line = next(x for x in render(_snap(governor=gov)).splitlines() if x.startswith("allowances"))
    assert line == ("allowances         configured 1200/min, 5000/day, unlimited/month; VirusTotal's: hourly "
                    "120 / 36000, daily 900 / 4000, monthly - (used / allowed; the smaller of the two views counts)")
    fallback = _governor(configured={"per_minute": 4, "daily": 500, "monthly": 0}, virustotal=None,
                         virustotal_note="API v2 has no quota endpoint")
    assert summarize(_snap(governor=fallback))["allowances"]["virustotal_note"] == "API v2 has no quota endpoint"
    assert "VirusTotal's: not reported (API v2 has no quota endpoint)" in render(_snap(governor=fallback))
