"""Run states and sighting rows: round trips, the previous version's bytes, bounded size, faults named."""

from __future__ import annotations

import orjson
import pytest

from pipeline.contracts.indicator import Indicator
from pipeline.contracts.run_state import FINISHED, WAITING, DetectedRow, RunState, SightingRow
from pipeline.contracts.version import RECORD_VERSION
from pipeline.errors import RecordError
from pipeline.rules.runs import UniqueCount

pytestmark = pytest.mark.unit

NOV1 = 1793491200.0
#: A run state exactly as the version before vt.replay.sightings wrote it (detected rows inside it).
PREVIOUS = {"v": 1, "run": "nov", "topic": "siem.archive", "since": NOV1, "until": NOV1 + 86400, "state": "finished",
            "lookup": "scan", "position": {"0": 12, "1": 9}, "records": 21, "unique": 7, "cache_hits": 3,
            "vt_requests": 4, "skipped": 1, "dead": 1, "updated_at": NOV1 + 99.5,
            "detected": [{"indicator": {"type": "domain", "value": "bad.example"}, "sightings": 3,
                          "first_seen": "2026-11-01T00:00:00Z", "last_seen": "2026-11-01T02:00:00Z",
                          "sources": ["fw"], "positives": 5, "total": 90}]}


def test_the_previous_versions_state_is_read_with_its_detected_rows():
    state = RunState.from_bytes(orjson.dumps(PREVIOUS))
    assert (state.state, state.records, state.unique, state.vt_requests, dict(state.position)) == \
        (FINISHED, 21, 7, 4, {"0": 12, "1": 9})
    assert state.detected == (DetectedRow(Indicator("domain", "bad.example"), 3, "2026-11-01T00:00:00Z",
                                          "2026-11-01T02:00:00Z", ("fw",), 5, 90),)
    assert (state.unique_sketch, state.invocations, dict(state.answers_from), state.unanswered) == (b"", 0, {}, 0)
    assert RunState.from_bytes(state.to_bytes()) == state  # the legacy rows survive a save


def test_a_state_round_trips_with_its_sketch_and_answer_positions():
    unique = UniqueCount.of(b"")
    unique.add("ip:1.1.1.1")
    state = RunState("nov", "siem.archive", NOV1, NOV1 + 86400, state=WAITING, position={"0": 5}, records=5,
                     unique=1, unique_sketch=unique.to_bytes(), invocations=2,
                     answers_from={"indicators.enriched/0": 40, "vt.responses/3": 7}, unanswered=2)
    raw = state.to_bytes()
    assert orjson.loads(raw)["v"] == RECORD_VERSION and "detected" not in orjson.loads(raw)
    assert RunState.from_bytes(raw) == state
    assert RunState.from_bytes(orjson.dumps({**orjson.loads(raw), "added_later": [1]})) == state


def test_a_state_stays_small_however_many_indicators_the_run_saw():
    """A million unique indicators: the state is the same few kilobytes (the Kafka record limit is 1 MB)."""
    unique = UniqueCount.of(b"")
    for i in range(1_000_000):
        unique.add(f"url:{i}")
    state = RunState("month", "siem.archive", NOV1, NOV1 + 30 * 86400, records=100_000_000,
                     unique=unique.estimate(), unique_sketch=unique.to_bytes(),
                     position={str(p): 10**9 for p in range(64)},
                     answers_from={f"indicators.enriched/{p}": 10**9 for p in range(64)})
    assert len(state.to_bytes()) < 20_000
    assert abs(RunState.from_bytes(state.to_bytes()).unique - 1_000_000) < 20_000


@pytest.mark.parametrize("change, message", [
    ({"answers_from": {"indicators.enriched/0": "x"}}, "answers_from must map partitions to offsets"),
    ({"position": {"0": True}}, "position must map partitions to offsets"),
    ({"unique_sketch": "%%%"}, "unique_sketch must be base64"),
    ({"state": "paused"}, "state must be one of"),
    ({"unanswered": "2"}, "unanswered must be an integer"),
])
def test_a_malformed_state_names_the_field(change, message):
    with pytest.raises(RecordError, match=f"malformed vt.replay.runs record: {message}"):
        RunState.from_bytes(orjson.dumps({**PREVIOUS, **change}))


def test_a_sighting_row_round_trips_keeps_few_sources_and_is_keyed_per_invocation():
    row = SightingRow("nov", 2, Indicator("url", "http://x.example/a"), 4, NOV1, NOV1 + 60,
                      tuple(f"s{i:02d}" for i in range(20)), 3, 90, NOV1 + 61)
    read = SightingRow.from_bytes(row.to_bytes())
    assert read.sources == row.sources[:16] and read.sightings == 4 and read.answered_at == NOV1 + 61
    assert orjson.loads(row.key) == ["nov", Indicator("url", "http://x.example/a").key, 2]
    unanswered = SightingRow("nov", 1, Indicator("ip", "1.1.1.1"), 1, NOV1, NOV1)
    assert SightingRow.from_bytes(unanswered.to_bytes()) == unanswered
    with pytest.raises(RecordError, match="malformed vt.replay.sightings record: invocation is missing"):
        SightingRow.from_bytes(orjson.dumps({"run": "nov", "indicator": {"type": "ip", "value": "1.1.1.1"}}))
