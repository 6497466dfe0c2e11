"""The replay driver's view of the answers: requests counted, reservations released, records answered."""

from __future__ import annotations

import pytest

from pipeline.contracts.card import SummaryCard
from pipeline.contracts.events import SummaryEvent
from pipeline.contracts.indicator import Indicator
from pipeline.contracts.origin import Origin
from pipeline.contracts.wire import Status, VtRequest
from pipeline.kafka.replica import CacheCopy
from pipeline.replay.answers import Answers
from pipeline.replay.ledger import Ledger
from pipeline.rules.runs import Budget, UniqueCount
from pipeline.stages.lookup import OVERFLOW_REASON
from topics import ENRICHED, RESPONSES, changelog_name

pytestmark = pytest.mark.unit

URL = Indicator("url", "http://x.example.com/a")


def checked(positives: int, **flags: bool) -> SummaryCard:
    """The card of an answer VirusTotal gave: ``positives`` of 90 (cached / coalesced as ``flags`` say)."""
    card = SummaryCard.mapped_from(True, {"positives": positives, "total": 90}).checked_now()
    return card.with_fields(**flags) if flags else card


def origin(ref: str, run: str = "nov") -> Origin:
    return Origin(ref=ref, replay=run)


def response(ref: str, status: Status, requests: int, run: str = "nov") -> bytes:
    request = VtRequest(indicator=URL, action="submit_url", api="v3", origin=origin(ref, run))
    return request.respond(status, requests=requests).to_bytes()


def summary(ref: str, card: SummaryCard, run: str = "nov") -> bytes:
    return SummaryEvent.of(card, indicator=URL, action="submit_url", api="v3", origin=origin(ref, run)).to_bytes()


def answers(cap: int | None = 20, earlier: int = 0) -> tuple[Answers, Budget, list[int]]:
    budget, answered = Budget(cap), []
    ledger = Ledger("nov", 1, UniqueCount.of(b""))
    return Answers("nov", budget, ledger, CacheCopy(10), earlier, answered.append, lambda: 5.0), budget, answered


def test_a_scan_keeps_its_reservation_until_its_final_answer_and_every_request_counts():
    ans, budget, answered = answers()
    budget.reserve("a/0/1", 11)
    ans.expect("a/0/1", URL.key, reserved=True)
    ans.take(RESPONSES, None, response("a/0/1", "pending", 2))  # lookup + submission
    ans.take(ENRICHED, None, summary("a/0/1", SummaryCard.not_checked("scan submitted", pending=True)))
    assert (ans.vt_requests, budget.committed, ans.unanswered, URL.key in ans.covering) == (2, 11, 1, True)
    ans.take(RESPONSES, None, response("a/0/1", "found", 2))  # a poll and the report
    ans.take(ENRICHED, None, summary("a/0/1", checked(3)))
    assert (ans.vt_requests, budget.committed, ans.unanswered, answered) == (4, 4, 0, [1])
    assert URL.key not in ans.covering and ans.ledger.tallies[URL.key].positives == 3


@pytest.mark.parametrize("card", [checked(0, cached=True), checked(0, coalesced=True)])
def test_a_record_that_needed_no_request_gives_its_reservation_back(card):
    ans, budget, _ = answers()
    budget.reserve("a/0/1", 11)
    ans.expect("a/0/1", URL.key, reserved=True)
    ans.take(ENRICHED, None, summary("a/0/1", card))
    assert (budget.committed, ans.cache_hits, ans.unanswered) == (0, 1 if card.cached else 0, 0)


def test_answers_to_an_earlier_invocations_records_are_taken_once_each():
    ans, budget, answered = answers(earlier=2)
    ans.take(RESPONSES, None, response("a/0/7", "found", 1))  # its request counts against this budget too
    for _ in range(3):  # the third is a repeat of an answer already taken
        ans.take(ENRICHED, None, summary("a/0/7", checked(0)))
    assert (ans.vt_requests, budget.committed, ans.earlier, answered) == (1, 1, 0, [1, 1])


def test_an_overflow_answer_is_final_and_other_runs_are_not_ours():
    ans, budget, _ = answers()
    ans.expect("a/0/2", URL.key, reserved=False)
    ans.take(ENRICHED, None, summary("a/0/2", SummaryCard.not_checked(OVERFLOW_REASON, pending=True)))
    ans.take(RESPONSES, None, response("a/0/3", "found", 5, run="dec"))
    ans.take(ENRICHED, None, summary("a/0/3", checked(1), run="dec"))
    assert (ans.unanswered, ans.vt_requests) == (0, 0)


def test_the_changelog_feeds_the_runs_copy_of_the_cache():
    ans, _, _ = answers()
    ans.take(changelog_name("vtstream"), b"ip:1.1.1.1", b'{"state":"done","summary":{},"expires_at":10}')
    assert ans.copy.fresh(b"ip:1.1.1.1", 5.0) is not None
