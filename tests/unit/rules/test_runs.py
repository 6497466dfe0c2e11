"""The pure rules of replay runs: times, names, cost and duration, the budget, the report rows."""

from __future__ import annotations

import orjson
import pytest

from pipeline.cli.replay import render_report, report
from pipeline.contracts.indicator import Indicator
from pipeline.contracts.run_state import DetectedRow, RunState
from pipeline.errors import ConfigError
from pipeline.rules.runs import (Budget, Sighting, default_run_name, detected, duration_s, parse_time)
from pipeline.settings import VtSettings

pytestmark = pytest.mark.unit

NOV1 = 1793491200.0  # 2026-11-01T00:00:00Z


def test_times_are_iso_8601_or_a_span_back_from_now():
    assert parse_time("2026-11-01T00:00:00Z", 0.0) == NOV1
    assert parse_time("2026-11-01T01:00:00+01:00", 0.0) == NOV1
    assert parse_time("2026-11-01T00:00:00", 0.0) == NOV1  # no zone: UTC
    assert parse_time("7d", NOV1) == NOV1 - 7 * 86400
    assert parse_time("12h", NOV1) == NOV1 - 12 * 3600
    with pytest.raises(ConfigError, match="ISO 8601"):
        parse_time("last tuesday", NOV1)


def test_default_run_name_is_the_same_for_the_same_command():
    assert default_run_name("siem.archive", "7d", None) == default_run_name("siem.archive", "7d", None)
    assert default_run_name("siem.archive", "7d", None) != default_run_name("siem.archive", "8d", None)
    assert default_run_name("a", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z") == \
        "a_2026-11-01T000000Z_2026-12-01T000000Z"


def test_requests_per_lookup_follow_the_readme_table():
    assert VtSettings().requests_per_lookup == 1
    assert VtSettings(relationships=("resolutions",)).requests_per_lookup == 2
    assert VtSettings(relationships=("resolutions", "communicating_files")).requests_per_lookup == 3
    assert VtSettings(api_version="v2", relationships=("resolutions",)).requests_per_lookup == 1


def test_duration_at_the_pace_and_across_daily_quotas():
    assert duration_s(0, 4, 500) == 0.0
    assert duration_s(400, 4, 500) == 100 * 60  # 4 a minute
    assert duration_s(500, 4, 500) == 125 * 60
    assert duration_s(501, 4, 500) == 86400 + 15  # the 501st waits for the next day
    assert duration_s(1200, 4, 500) == 2 * 86400 + 200 * 15
    assert duration_s(10, 4, 500, used_today=495) == 86400 + 5 * 15


def test_budget_reserves_estimates_and_replaces_them_with_what_answers_cost():
    budget = Budget(3, per_lookup=1)
    assert [budget.reserve(k) for k in ("a", "b", "c", "d")] == [True, True, True, False]
    budget.answered("a", 2)  # a URL scan cost two
    assert budget.committed == 4 and not budget.reserve("d")
    budget.settled("b")  # joined another lookup: free
    budget.settled("c")
    assert budget.committed == 2 and budget.reserve("d") and not budget.reserve("e")
    assert Budget(None, per_lookup=5).reserve("x")


def test_detected_rows_list_exactly_the_detected_and_merge_an_earlier_invocation():
    bad = Sighting(Indicator("domain", "bad.example"))
    bad.seen(NOV1 + 60, "fw")
    bad.seen(NOV1, "proxy")
    bad.positives, bad.total = 5, 90
    clean = Sighting(Indicator("ip", "8.8.8.8"))
    clean.seen(NOV1, None)
    clean.positives, clean.total = 0, 90
    unanswered = Sighting(Indicator("ip", "1.1.1.1"))
    unanswered.seen(NOV1, None)
    rows = detected({"b": bad, "c": clean, "u": unanswered}, [], threshold=1)
    assert rows == (DetectedRow(Indicator("domain", "bad.example"), sightings=2, first_seen="2026-11-01T00:00:00Z",
                                last_seen="2026-11-01T00:01:00Z", sources=("fw", "proxy"), positives=5, total=90),)
    assert detected({"b": bad}, [], threshold=6) == ()
    again = Sighting(Indicator("domain", "bad.example"))
    again.seen(NOV1 + 7200, "dns")
    again.positives, again.total = 7, 90
    (merged,) = detected({"b": again}, rows, threshold=1)
    assert (merged.sightings, merged.positives, merged.last_seen, merged.sources) == \
        (3, 7, "2026-11-01T02:00:00Z", ("dns", "fw", "proxy"))


def test_report_has_the_issue_keys_and_renders_a_table():
    state = RunState("nov", "siem.archive", NOV1, NOV1 + 86400, state="finished", records=10, unique=4,
                     cache_hits=2, vt_requests=2, detected=(DetectedRow(
                         Indicator("domain", "bad.example"), sightings=3, first_seen="2026-11-01T00:00:00Z",
                         last_seen="2026-11-01T02:00:00Z", sources=("fw",), positives=5, total=90),))
    doc = report(state)
    assert {"run", "topic", "from", "to", "records", "unique", "cache_hits", "vt_requests", "detected"} <= set(doc)
    assert (doc["from"], doc["to"]) == ("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z")
    text = render_report(doc)
    assert "records 10  unique 4  cache hits 2  VirusTotal requests 2" in text
    assert "domain bad.example" in text and "5/90" in text
    assert RunState.from_bytes(orjson.dumps({**orjson.loads(state.to_bytes()), "unknown": 1})) == state


def test_a_run_name_with_the_date_resumes_the_same_day_and_starts_anew_the_next():
    from pipeline.rules.runs import run_name

    morning, evening, next_day = 1_790_000_000.0, 1_790_000_000.0 + 5 * 3600, 1_790_000_000.0 + 86400
    assert run_name("retrohunt-{date}", morning) == run_name("retrohunt-{date}", evening) == "retrohunt-2026-09-21"
    assert run_name("retrohunt-{date}", next_day) == "retrohunt-2026-09-22"
    assert run_name("november", morning) == "november"
    with pytest.raises(ConfigError, match="only placeholder"):
        run_name("retrohunt-{hour}", morning)


@pytest.mark.parametrize("text, requests", [("400", 400), ("15%", 75), ("0.15", 75), ("100%", 500), ("0.0001", 1)])
def test_a_budget_is_requests_or_a_share_of_the_daily_quota(text, requests):
    from pipeline.rules.runs import budget_requests

    assert budget_requests(text, 500) == requests


@pytest.mark.parametrize("text", ["0", "150%", "-1", "lots", "0%"])
def test_a_budget_that_is_neither_is_refused_with_the_forms_named(text):
    from pipeline.rules.runs import budget_requests

    with pytest.raises(ConfigError, match="--budget"):
        budget_requests(text, 500)
