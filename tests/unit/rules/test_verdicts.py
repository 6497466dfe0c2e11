"""The verdict rule and the verdict memory's rules: classes, changes, crash replays, expiry, sighting counts."""

from __future__ import annotations

import pytest

from pipeline.contracts.card import SummaryCard
from pipeline.contracts.verdict import Seen, SightingTally, VerdictCheck, VerdictMemory
from pipeline.rules.verdicts import Standing, Tallies, counted, decode_memory, remember, verdict_of

pytestmark = pytest.mark.unit

DAY = 86400.0
T = 1_790_000_000.0
MEMORY = 90 * DAY


def card(positives: int | None, total: int | None = 70, suspicious: int | None = None, found: bool = True):
    return SummaryCard(found=found, positives=positives, total=total,
                       mapped={"suspicious": suspicious} if suspicious is not None else {})


@pytest.mark.parametrize("answer, at, verdict", [
    (card(12), 5, "malicious"), (card(5), 5, "malicious"), (card(4), 5, "suspicious"), (card(1), 1, "malicious"),
    (card(0, suspicious=2), 5, "suspicious"), (card(0, suspicious=0), 5, "benign"), (card(0), 5, "benign"),
    (card(None, None, found=False), 5, "unknown"), (card(0, 0), 5, "unknown"), (card(None, None), 5, "unknown"),
])
def test_the_verdict_classes(answer, at, verdict):
    assert verdict_of(answer, at) == verdict


def check(verdict: str, at: float, positives: int = 0) -> VerdictCheck:
    return VerdictCheck(verdict, positives, 70, at)


def test_the_first_answer_is_remembered_and_changes_nothing():
    got = remember(None, check("benign", T), "vt.responses/0/1", [T - 5], MEMORY)
    assert got.change is None and got.memory == VerdictMemory(check("benign", T), since=T, ref="vt.responses/0/1")


def test_a_change_of_class_is_told_once_with_the_sightings_since_the_previous_check():
    first = remember(None, check("benign", T), "vt.responses/0/1", [], MEMORY).memory
    assert first is not None
    seen = counted(counted(first, SightingTally(4, T + 3600)), SightingTally(2, T + 600))
    later = remember(seen, check("malicious", T + DAY, 12), "vt.responses/0/9", [T + DAY - 1], MEMORY)
    assert later.change is not None and later.change.was == check("benign", T)
    assert later.change.seen == Seen(7, T + 600)  # four and two from the cache, one that asked
    assert later.current == check("malicious", T + DAY, 12)
    assert later.memory is not None and later.memory.seen == Seen() and later.memory.since == T + DAY
    assert later.standing == Standing(malicious_since=T + DAY)
    again = remember(later.memory, check("malicious", T + 2 * DAY, 14), "vt.responses/0/20", [], MEMORY)
    assert again.change is None and again.standing == Standing(malicious_since=T + DAY)  # the same period


def test_an_answer_handled_again_after_a_crash_tells_the_same_change_and_writes_nothing():
    first = remember(None, check("benign", T), "vt.responses/1/1", [], MEMORY).memory
    changed = remember(first, check("malicious", T + DAY, 9), "vt.responses/1/5", [T + 10], MEMORY)
    replayed = remember(changed.memory, check("malicious", T + DAY + 30, 9), "vt.responses/1/5", [T + 10], MEMORY)
    assert replayed.memory is None
    assert replayed.change == changed.change and replayed.current == changed.current
    older = remember(changed.memory, check("benign", T + DAY + 30), "vt.responses/1/3", [], MEMORY)
    assert older.memory is None and older.change is None  # superseded by the record the memory holds


def test_leaving_malicious_names_the_period_to_revoke():
    memory = VerdictMemory(check("malicious", T + DAY, 9), since=T, ref="vt.responses/0/3")
    got = remember(memory, check("benign", T + 2 * DAY), "vt.responses/0/4", [], MEMORY)
    assert got.change is not None and got.standing == Standing(malicious_since=None, withdrawn_since=T)
    to_suspicious = remember(memory, check("suspicious", T + 2 * DAY, 2), "vt.responses/0/4", [], MEMORY)
    assert to_suspicious.standing.withdrawn_since == T  # a move below VTSTREAM_STIX_INDICATOR_AT ends it too


def test_a_memory_older_than_the_setting_is_forgotten():
    memory = VerdictMemory(check("benign", T), since=T, ref="vt.responses/0/3")
    assert remember(memory, check("malicious", T + 91 * DAY, 9), "vt.responses/0/4", [], MEMORY).change is None
    assert remember(memory, check("malicious", T + 89 * DAY, 9), "vt.responses/0/4", [], MEMORY).change is not None


def test_an_unchanged_verdict_starts_counting_again():
    memory = counted(VerdictMemory(check("benign", T), since=T - DAY, ref="vt.responses/0/3"), SightingTally(9, T))
    got = remember(memory, check("benign", T + DAY), "vt.responses/0/4", [T + 5], MEMORY)
    assert got.change is None and got.memory is not None
    assert got.memory.seen == Seen() and got.memory.since == T - DAY


def test_unreadable_memory_counts_as_none():
    assert decode_memory(b"not json") is None and decode_memory(None) is None


def test_tallies_count_per_indicator_and_stay_bounded():
    tallies = Tallies(max_keys=2)
    for key, at in (("ip:1.1.1.1", 5.0), ("ip:1.1.1.1", 2.0), ("ip:2.2.2.2", 9.0), ("ip:3.3.3.3", 1.0)):
        tallies.saw(key, at)
    assert dict(tallies.take()) == {"ip:1.1.1.1": SightingTally(2, 2.0), "ip:2.2.2.2": SightingTally(1, 9.0)}
    assert tallies.missed == 1 and tallies.take() == []
