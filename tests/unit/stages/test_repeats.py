"""Plain repeats (:class:`~pipeline.stages.intake.Repeats`) publish what the full path publishes:
intake's the same record, byte for byte, the same sighting counted and the same metrics, a replay's
the same replay-marked record; or they leave the record to the full path."""

import asyncio
import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.contracts.cache_entry import CachedResult
from pipeline.contracts.card import SummaryCard
from pipeline.kafka.replica import CacheCopy
from pipeline.kafka.runtime import Outbox, Received
from pipeline.rules.indicators import classify
from pipeline.settings import Settings
from pipeline.contracts.events import SummaryEvent
from pipeline.stages.intake import PLAIN_BYTES, Accepted, LiveRepeats, Repeats, handle, parse
from tests.support.stages import stage_context
from topics import ENRICHED

pytestmark = pytest.mark.unit

NOW = 1_796_000_000.25
SETTINGS = Settings.of(policy_internal_domains=("corp.example",))
#: In the cache copy (by their normalised forms), each type once; a URL whose query the gate redacts.
CACHED = [("8.8.8.8", "ip"), ("evil.example.com", "domain"), ("http://evil.example.com/a?b=1", "url"),
          ("44d88612fea8a8f36de82e1278abb02f", "md5"), ("https://x.example.org/login?password=hunter2", "url"),
          ("wiki.corp.example", "domain")]
VALUES = [v for v, _ in CACHED] + ["HXXP://Evil[.]example.com/a?b=1", "EVIL.example.com.", "1.1.1.1", "not an ind",
                                   "", "http://evil.example.com/a?b=1#frag"]


def cache_copy() -> CacheCopy:
    copy = CacheCopy(1000)
    card = SummaryCard(found=True, positives=3, total=70)
    for value, kind in CACHED:
        entry = CachedResult(card, fetched_at=NOW - 60, expires_at=NOW + 3600)
        copy.apply(classify(value, kind).key.encode(), entry.to_bytes())
    return copy


class Sent(Outbox):
    """Keeps the (topic, key, bytes) of every record, as the producer gets them."""

    def __init__(self, watch: Any) -> None:
        self.records: list[tuple[str, bytes | None, bytes]] = []

        async def send(topic: str, key: bytes | None, value: bytes) -> asyncio.Future[None]:
            self.records.append((topic, key, value))
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

        super().__init__(send, watch, stage="intake")


def both_ways(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """(the repeat's answer, what the full path sent) for ``raw``, each with its own context: the
    answer, the sightings counted and the cache-hit metrics."""
    monkeypatch.setattr(time, "time", lambda: NOW)  # enriched_at: the same second either way
    copy, ref = cache_copy(), "indicators.raw/3/1234"
    quick, full = stage_context(SETTINGS, clock=lambda: NOW), stage_context(SETTINGS, clock=lambda: NOW)
    answer = LiveRepeats(quick, copy).answer(raw, ref, NOW)
    out = Sent(full.metrics.watcher("intake", full.clock))

    async def full_path() -> None:
        await handle(full, copy, out, Received(b"", raw, ref, NOW))
        await out.flush()

    asyncio.run(full_path())
    return ((answer, quick.sightings.take(), quick.metrics.exposition()),
            (out.records, full.sightings.take(), full.metrics.exposition()))


_TEXT = st.one_of(st.none(), st.text(max_size=12), st.integers(-3, 3), st.floats(allow_nan=False),
                  st.booleans(), st.lists(st.text(max_size=3), max_size=2), st.just("x" * 1100))
_RECORD = st.fixed_dictionaries(
    {"value": st.one_of(st.sampled_from(VALUES), st.integers(0, 9), st.none())},
    optional={"type": st.one_of(st.sampled_from(["ip", "domain", "url", "md5", "sha256", "hash", ""]), st.none(),
                                st.integers(0, 2)),
              "id": _TEXT, "source": _TEXT, "observed_at": _TEXT,
              "labels": st.sampled_from([["TLP:RED"], ["ok"], "TLP:AMBER"]), "tlp": st.sampled_from(["red", "clear"]),
              "x": st.integers(0, 2)})


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(doc=_RECORD, lead=st.sampled_from([b"", b" "]))
def test_a_repeat_is_answered_as_the_full_path_answers_it_or_left_to_it(doc, lead, monkeypatch):
    """Whatever the record holds: when the repeat answers, its record, the sighting counted and the
    cache-hit metrics are the full path's; when it does not, the full path takes the record."""
    raw = lead + orjson.dumps(doc)
    (answer, counted, metrics), (sent, full_counted, full_metrics) = both_ways(raw, monkeypatch)
    assert len(sent) == 1  # the full path answers every record with one record
    if answer is None:
        return
    assert [answer] == sent
    assert counted == full_counted
    assert metrics == full_metrics


@pytest.mark.parametrize("value, kind", CACHED[:4])
def test_a_plain_repeat_of_each_type_is_answered_in_one_step(value, kind, monkeypatch):
    """The case the shortcut exists for: a cached value with the fields a SIEM sends."""
    raw = orjson.dumps({"value": value, "type": kind, "id": "e1", "source": "siem", "observed_at": "2026-12-07"})
    (answer, counted, _), (sent, _, _) = both_ways(raw, monkeypatch)
    assert answer is not None and answer[0] == ENRICHED
    assert [answer] == sent
    assert [count for _, count in counted][0].count == 1


@pytest.mark.parametrize("doc", [
    {"value": "https://x.example.org/login?password=hunter2"},  # redacted by the gate: its note must travel
    {"value": "wiki.corp.example"},  # skipped by policy
    {"value": "1.1.1.1"},  # not in the cache copy
    {"value": "8.8.8.8", "labels": ["ok"]},  # labels: the gate decides with them
    {"value": "8.8.8.8", "id": 7},  # a number: the full path keeps it as text
    {"value": "8.8.8.8", "source": "x" * PLAIN_BYTES},  # longer than a plain record
])
def test_what_is_not_a_plain_repeat_takes_the_full_path(doc, monkeypatch):
    (answer, _, _), (sent, _, _) = both_ways(orjson.dumps(doc), monkeypatch)
    assert answer is None and len(sent) == 1


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(doc=_RECORD, run=st.sampled_from(["june", "r\u00e9play 2"]))
def test_a_replayed_repeat_is_the_summary_the_replay_driver_would_build(doc, run, monkeypatch):
    """``vtstream replay`` answers a plain record from the cache with :meth:`Repeats.encode`: the
    bytes of the full path's summary (replay-marked id, the run at the top level, no received_at)."""
    monkeypatch.setattr(time, "time", lambda: NOW)
    raw, ref, copy = orjson.dumps(doc), "archive/1/77", cache_copy()
    sighting = Repeats(SETTINGS, "v3").read(raw)
    outcome = parse(raw, ref, SETTINGS, run)
    if sighting is None:
        return
    assert isinstance(outcome, Accepted)
    entry = copy.finished(outcome.indicator.key.encode())
    if entry is None:
        return
    full = SummaryEvent.of(entry.hit_card(), indicator=outcome.indicator, action=outcome.action, api="v3",
                           origin=outcome.origin).to_bytes()
    assert Repeats(SETTINGS, "v3").encode(sighting, entry, ref, None, run) == full
    assert orjson.loads(full)["replay"] == run


def test_a_repeat_the_shortcut_fails_on_is_not_counted_before_the_full_path_takes_it(monkeypatch):
    """The direct stage hands a record the answerer raised on to the full path, which counts it: the
    shortcut must not have counted it already."""
    ctx = stage_context(SETTINGS, clock=lambda: NOW)

    def broken(*args: Any) -> bytes:
        raise RuntimeError("a bug in the shortcut")

    monkeypatch.setattr(Repeats, "encode", broken)
    with pytest.raises(RuntimeError):
        LiveRepeats(ctx, cache_copy()).answer(orjson.dumps({"value": "8.8.8.8"}), "indicators.raw/0/1", NOW)
    assert ctx.sightings.take() == []
    assert b'vtstream_cache_hits_total{path="one-hop"} 0.0' in ctx.metrics.exposition()
