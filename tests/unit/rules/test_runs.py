"""The pure rules of replay runs: times, names, cost and duration, the budget, the report rows."""

from __future__ import annotations

import orjson
import pytest

from pipeline.cli.replay import render_report, report
from pipeline.contracts.indicator import Indicator
from pipeline.contracts.run_state import DetectedRow, RunState, SightingRow
from pipeline.errors import ConfigError
from pipeline.rules.runs import (Budget, RunTally, UniqueCount, default_run_name, duration_s, parse_time, report_rows,
                                 worst_case)
from pipeline.settings import RetrySettings, VtSettings

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


@pytest.mark.parametrize("action, kind, settings, upload, cost, polls", [
    ("submit_ip", "ip", {}, None, 1, 0),
    ("submit_domain", "domain", {"relationships": ("resolutions",)}, None, 2, 0),
    ("submit_hash", "sha256", {"relationships": ("resolutions", "contacted_ips"), "behaviour": True}, None, 4, 0),
    ("submit_hash", "md5", {"api_version": "v2", "relationships": ("resolutions",), "behaviour": True}, None, 1, 0),
    # a URL: lookup, submission, 8 polls, the report fetched again by the poll that finds it done
    ("submit_url", "url", {}, None, 1 + 1 + 8 + 1, 8),
    ("submit_url", "url", {"relationships": ("downloaded_files",)}, None, 2 + 1 + 8 + 2, 8),
    ("submit_url", "url", {"api_version": "v2"}, None, 1 + 1 + 8, 8),  # a v2 poll is the report
    ("submit_file", "sha256", {}, None, 1, 0),  # no upload label: looked up only
    ("submit_file", "sha256", {"behaviour": True}, 1000, 2 + 1 + 8 + 2, 8),
    ("submit_file", "sha256", {}, 40 * 1024 * 1024, 1 + 2 + 8 + 1, 8),  # over 32 MB: an upload URL first
])
def test_worst_case_follows_the_cost_table(action, kind, settings, upload, cost, polls):
    assert worst_case(action, kind, VtSettings(**settings), RetrySettings(), upload) == cost
    # every poll the retry tiers allow counts: 3 attempts instead of 8
    assert worst_case(action, kind, VtSettings(**settings), RetrySettings(max_attempts=3), upload) == \
        cost - polls + min(polls, 3)


def test_duration_at_the_pace_and_across_daily_quotas():
    assert duration_s(0, 4, 500) == 0.0
    assert duration_s(400, 4, 500) == 100 * 60  # 4 a minute
    assert duration_s(500, 4, 500) == 125 * 60
    assert duration_s(501, 4, 500) == 86400 + 15  # the 501st waits for the next day
    assert duration_s(1200, 4, 500) == 2 * 86400 + 200 * 15
    assert duration_s(10, 4, 500, used_today=495) == 86400 + 5 * 15


def test_budget_reserves_the_worst_case_and_releases_what_was_not_spent():
    budget = Budget(20)
    assert budget.reserve("r/0/1", 11) and not budget.reserve("r/0/2", 11)  # 22 would pass 20
    assert budget.reserve("r/0/3", 9) and budget.committed == 20
    budget.spend("r/0/1", 2)  # the scan step's answer: lookup + submission
    assert budget.committed == 20 and budget.holding  # still reserved: polls may follow
    budget.spend("r/0/1", 2)  # the report: a poll and the object
    budget.release("r/0/1")
    assert budget.committed == 4 + 9 and budget.fits(7) and not budget.fits(8)
    budget.release("r/0/3")  # joined another lookup: cost nothing
    assert (budget.committed, budget.spent, budget.holding) == (4, 4, False)


def test_budget_counts_spending_no_reservation_of_its_own_covers():
    budget = Budget(10)
    budget.reserve("r/0/1", 5)
    budget.spend("r/9/9", 3)  # an earlier invocation's poll answered now
    assert budget.committed == 8 and not budget.fits(3)
    budget.spend("r/0/1", 7)  # more than reserved (cannot happen with the gateway's allowance) still counts
    budget.release("r/0/1")
    assert budget.committed == 10
    assert Budget(None).reserve("x", 10**9)


def test_unique_count_adds_up_over_invocations_and_stays_small():
    first = UniqueCount.of(b"")
    for i in range(300):
        first.add(f"ip:10.0.{i // 256}.{i % 256}")
    second = UniqueCount.of(first.to_bytes())
    for i in range(200, 500):  # 100 seen before, 200 new
        second.add(f"ip:10.0.{i // 256}.{i % 256}")
    assert second.estimate() == 500
    big = UniqueCount.of(b"")
    for i in range(200_000):
        big.add(f"domain:h{i}.example")
    assert abs(big.estimate() - 200_000) < 200_000 * 0.03 and len(big.to_bytes()) < 12_000
    assert UniqueCount.of(b"not a sketch").estimate() == 0


def _row(invocation: int, sightings: int, first: float, last: float, sources: tuple[str, ...],
         positives: int | None, answered_at: float | None, value: str = "bad.example") -> SightingRow:
    return SightingRow("nov", invocation, Indicator("domain", value), sightings, first, last, sources, positives,
                       90 if positives is not None else None, answered_at)


def test_report_rows_add_up_every_invocation_with_the_newest_verdict():
    rows = [_row(1, 10, NOV1 + 60, NOV1 + 600, ("fw",), None, None),  # fed, interrupted before its answer
            _row(2, 0, None, None, (), 5, NOV1 + 7200),  # the answer, taken by the next invocation
            _row(3, 3, NOV1, NOV1 + 30, ("dns", "fw"), 7, NOV1 + 9000),  # seen again later: newer verdict
            _row(1, 4, NOV1, NOV1, (), 0, NOV1, value="clean.example"),
            _row(2, 2, NOV1, NOV1, (), None, None, value="never.example")]
    (bad,) = report_rows(rows, [], threshold=1)
    assert bad == DetectedRow(Indicator("domain", "bad.example"), sightings=13, first_seen="2026-11-01T00:00:00Z",
                              last_seen="2026-11-01T00:10:00Z", sources=("dns", "fw"), positives=7, total=90)
    assert report_rows(rows, [], threshold=8) == ()
    legacy = DetectedRow(Indicator("domain", "bad.example"), 2, "2026-10-31T00:00:00Z", "2026-10-31T00:00:00Z",
                         ("proxy",), 5, 90)
    (merged,) = report_rows(rows, [legacy], threshold=1)
    assert (merged.sightings, merged.first_seen, merged.sources) == (15, "2026-10-31T00:00:00Z",
                                                                     ("dns", "fw", "proxy"))


def test_a_run_tally_keeps_a_bounded_number_of_sources_and_says_when_a_row_is_needed():
    seen = RunTally(Indicator("ip", "1.2.3.4"))
    for i in range(100):
        seen.seen(NOV1 + i, f"source-{i}")
    assert len(seen.sources) == 16 and seen.sightings == 100 and seen.worth_keeping  # no verdict yet
    seen.answered(0, 90, NOV1)
    assert not seen.worth_keeping
    seen.answered(2, 90, NOV1)
    assert seen.worth_keeping and seen.row("r", 1).first_seen == NOV1


def test_report_has_the_issue_keys_and_renders_a_table():
    state = RunState("nov", "siem.archive", NOV1, NOV1 + 86400, state="finished", records=10, unique=4,
                     cache_hits=2, vt_requests=2, invocations=3)
    doc = report(state, (DetectedRow(Indicator("domain", "bad.example"), sightings=3,
                                     first_seen="2026-11-01T00:00:00Z", last_seen="2026-11-01T02:00:00Z",
                                     sources=("fw",), positives=5, total=90),))
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
