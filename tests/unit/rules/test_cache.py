import pytest

from pipeline.contracts.cache_entry import InFlight
from pipeline.contracts.card import SummaryCard
from pipeline.contracts.origin import Origin
from pipeline.rules import cache
from pipeline.settings import CacheSettings

pytestmark = pytest.mark.unit

S = CacheSettings(ttl_s=100, negative_ttl_s=10, inflight_timeout_s=50, max_waiters=2)


def test_first_sighting_requests_and_marks_in_flight():
    verdict = cache.decide(None, Origin(ref="a"), 1000.0, S)
    assert verdict.action == "request"
    assert verdict.entry == InFlight(since=1000.0, requester="a", waiters=(), overflow=0, lane="live")


def test_live_sighting_asks_in_the_live_lane_instead_of_waiting_behind_a_replay():
    replayed = cache.decide(None, Origin(ref="raw/0/1", replay="june"), 0.0, S)
    assert isinstance(replayed.entry, InFlight) and replayed.entry.lane == "replay"
    replay_repeat = cache.decide(replayed.entry, Origin(ref="raw/0/2", replay="june"), 1.0, S)
    assert replay_repeat.action == "wait"
    live = cache.decide(replayed.entry, Origin(ref="raw/0/3"), 1.0, S)
    assert live.action == "request" and isinstance(live.entry, InFlight) and live.entry.lane == "live"
    assert cache.decide(live.entry, Origin(ref="raw/0/4"), 2.0, S).action == "wait"


def test_replay_max_age_accepts_an_expired_entry_fetched_recently_enough():
    entry = cache.completed(SummaryCard.mapped_from(True, {"positives": 3}), True, 0.0, S)
    later = S.ttl_s + 10.0
    assert cache.decide(entry, Origin(ref="a"), later, S).action == "request"
    assert cache.decide(entry, Origin(ref="a"), later, S, max_age_s=S.ttl_s + 20.0).action == "hit"
    assert cache.decide(entry, Origin(ref="a"), later, S, max_age_s=S.ttl_s + 5.0).action == "request"


def test_duplicates_in_flight_wait_then_overflow():
    entry = cache.decide(None, Origin(ref="a"), 0.0, S).entry
    first = cache.decide(entry, Origin(ref="b"), 1.0, S)
    second = cache.decide(first.entry, Origin(ref="c"), 2.0, S)
    third = cache.decide(second.entry, Origin(ref="d"), 3.0, S)
    assert (first.action, second.action, third.action) == ("wait", "wait", "overflow")
    assert (first.waiter, second.waiter, third.waiter) == ((0, Origin(ref="b")), (1, Origin(ref="c")), None)
    assert isinstance(third.entry, InFlight) and third.entry.overflow == 1 and third.entry.waiting == 2


def test_a_new_waiter_writes_its_own_record_and_a_small_entry():
    """10,000 duplicates: no write grows with the number waiting (it was the whole list each time)."""
    settings = CacheSettings(max_waiters=10_000)
    entry = cache.decide(None, Origin(ref="raw/0/0"), 0.0, settings).entry
    written = []
    for offset in range(1, 10_001):
        verdict = cache.decide(entry, Origin(ref=f"raw/0/{offset}", labels=("TLP:GREEN",)), 1.0, settings)
        entry = verdict.entry
        written.append(len(entry.to_bytes()))
        assert cache.new_waiter_key(b"ip:1.2.3.4", verdict) == cache.waiter_keys(b"ip:1.2.3.4", entry)[-1]
    assert isinstance(entry, InFlight) and entry.waiting == 10_000
    assert max(written) < 2_000 and max(written) - min(written[100:]) < 100
    assert len(set(cache.waiter_keys(b"ip:1.2.3.4", entry))) == 10_000


def test_stale_in_flight_is_requested_again():
    entry = cache.decide(None, Origin(ref="a"), 0.0, S).entry
    assert cache.decide(entry, Origin(ref="b"), 49.0, S).action == "wait"
    assert cache.decide(entry, Origin(ref="b"), 50.0, S).action == "request"


@pytest.mark.parametrize("found, ttl", [(True, 100), (False, 10)])
def test_completed_entry_is_fresh_for_its_ttl(found, ttl):
    entry = cache.completed(SummaryCard(found=found), found, 1000.0, S)
    assert cache.decide(entry, Origin(), 1000.0 + ttl - 0.001, S).action == "hit"
    assert cache.decide(entry, Origin(), 1000.0 + ttl, S).action == "request"
    assert cache.waiters(entry) == ()


@pytest.mark.parametrize("raw", [None, b"", b"not json", b"[1,2]", b"\xff"])
def test_unreadable_entries_count_as_missing(raw):
    assert cache.decode(raw) is None


def test_round_trip():
    entry = cache.completed(SummaryCard.mapped_from(True, {"asn": "15169"}), True, 5.0, S)
    assert cache.decode(entry.to_bytes()) == entry


def test_replays_after_a_crash_resend_the_request_and_do_not_duplicate_waiters():
    entry = cache.decide(None, Origin(ref="a"), 0.0, S).entry
    assert cache.decide(entry, Origin(ref="a"), 1.0, S).action == "request"
    joined = cache.decide(entry, Origin(ref="b"), 1.0, S).entry
    again = cache.decide(joined, Origin(ref="b"), 2.0, S)
    assert again.action == "wait" and again.waiter is None and again.entry == joined


def test_a_new_request_never_reads_an_earlier_requests_waiters():
    first = cache.decide(None, Origin(ref="a"), 0.0, S).entry
    later = cache.decide(None, Origin(ref="z"), 0.0, S).entry
    assert cache.waiter_keys(b"k", cache.decide(first, Origin(ref="b"), 1.0, S).entry) != \
        cache.waiter_keys(b"k", cache.decide(later, Origin(ref="b"), 1.0, S).entry)


def test_the_requester_asks_again_after_a_crash_but_not_when_this_process_sent_its_request():
    """A crash may have lost the request (ask again); a redelivery after a lost commit, in the process
    that produced it, finds it sent (asking again paid VirusTotal twice, on Apache Kafka with a
    broker killed mid-stream)."""
    entry = cache.decide(None, Origin(ref="raw/0/7"), 0.0, S).entry
    assert isinstance(entry, InFlight)
    assert cache.decide(entry, Origin(ref="raw/0/7"), 1.0, S).action == "request"  # a restarted worker
    sent = cache.SentRequests()
    sent.add(entry.generation)
    again = cache.decide(entry, Origin(ref="raw/0/7"), 1.0, S, sent=sent)
    assert again.action == "wait" and again.entry == entry and again.waiter is None  # nothing new listed
    other = cache.decide(None, Origin(ref="raw/0/7"), 60.0, S).entry  # a later request: another generation
    assert cache.decide(other, Origin(ref="raw/0/7"), 61.0, S, sent=sent).action == "request"


def test_sent_requests_keep_the_newest_only():
    sent = cache.SentRequests(size=2)
    for generation in ("a", "b", "c"):
        sent.add(generation)
    assert "a" not in sent and "b" in sent and "c" in sent
