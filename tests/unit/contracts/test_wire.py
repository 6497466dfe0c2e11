"""Wire records: round trips, the previous version (the dict shapes of 1822a84), unknown fields, faults named."""

from __future__ import annotations

import orjson
import pytest

from pipeline.contracts.cache_entry import CachedResult, InFlight, cache_entry_from_bytes, is_finished
from pipeline.contracts.card import SummaryCard
from pipeline.contracts.indicator import FileRef, Indicator
from pipeline.contracts.origin import Origin
from pipeline.contracts.version import RECORD_VERSION
from pipeline.contracts.wire import DEAD_LETTER_VERSION, DeadLetter, LookupRequest, ParkedRecord, VtRequest, VtResponse
from pipeline.errors import InputError, RecordError

pytestmark = pytest.mark.unit

IND = {"type": "ip", "value": "8.8.8.8"}
ORIGIN_DOC = {"id": "e1", "source": "siem", "labels": ["TLP:CLEAR"], "ref": "indicators.raw/0/5"}
ORIGIN = Origin(id="e1", source="siem", labels=("TLP:CLEAR",), ref="indicators.raw/0/5")
FILE = {"name": "x.bin", "size": 3, "sha256": "a" * 64, "content_b64": "YWJj"}

# Records exactly as the code at 1822a84 wrote them (version 0: no "v").
V0_LOOKUP = {"indicator": IND, "action": "submit_ip", "origin": ORIGIN_DOC}
V0_FILE_LOOKUP = {"indicator": {"type": "sha256", "value": "a" * 64}, "action": "submit_file", "origin": ORIGIN_DOC,
                  "file": FILE}
V0_REQUEST = {"key": "ip:8.8.8.8", "indicator": IND, "action": "submit_ip", "api": "v3", "origin": ORIGIN_DOC,
              "requested_at": 1700000000.0, "op": "lookup", "attempt": 0}
V0_POLL = {**V0_REQUEST, "op": "poll", "analysis_id": "u-1", "attempt": 3}  # retry.hold's due_request
V0_RESPONSE = {"key": "ip:8.8.8.8", "indicator": IND, "action": "submit_ip", "api": "v3", "origin": ORIGIN_DOC,
               "status": "found", "step": "report", "body": {"data": {"id": "8.8.8.8"}}, "reason": None,
               "error": None, "notes": ["n"], "requests": 2, "fetched_at": "2026-11-30T19:00:00Z"}
V0_PARKED = {"not_before": 1700000060000, "parked_at": 1700000030000, "attempt": 0, "reason": "scan queued",
             "analysis_id": "u-1", "request": {**V0_REQUEST, "op": "poll", "attempt": 0}}
V0_DONE = {"state": "done", "found": True, "summary": {"found": True, "positives": 1}, "fetched_at": 1700000000.0,
           "expires_at": 1700086400.0}
V0_INFLIGHT = {"state": "inflight", "since": 1700000000.0, "requester": "indicators.raw/0/5",
               "waiters": [ORIGIN_DOC], "overflow": 2}
V0_DEAD = {"original": {"record": V0_POLL}, "stage": "gateway", "reason": "not checked: x", "error": "boom",
           "attempts": 8, "failed_at": "2026-11-30T19:00:00Z"}


def test_version_0_lookups_are_read():
    lookup = LookupRequest.from_bytes(orjson.dumps(V0_LOOKUP))
    assert (lookup.indicator, lookup.action, lookup.origin, lookup.file, lookup.v) == \
        (Indicator("ip", "8.8.8.8"), "submit_ip", ORIGIN, None, 0)
    assert LookupRequest.from_bytes(orjson.dumps(V0_FILE_LOOKUP)).file == FileRef("a" * 64, 3, "x.bin", "YWJj")


def test_version_0_requests_and_polls_are_read():
    request = VtRequest.from_bytes(orjson.dumps(V0_REQUEST))
    assert (request.op, request.attempt, request.analysis_id, request.api) == ("lookup", 0, None, "v3")
    assert (request.spent, request.allowance) == (0, None)  # nothing carried, no limit
    poll = VtRequest.from_bytes(orjson.dumps(V0_POLL))
    assert (poll.op, poll.attempt, poll.analysis_id) == ("poll", 3, "u-1")


def test_version_0_responses_are_read():
    response = VtResponse.from_bytes(orjson.dumps(V0_RESPONSE))
    assert (response.status, response.step, response.body, response.notes) == \
        ("found", "report", {"data": {"id": "8.8.8.8"}}, ("n",))


def test_version_0_parked_records_move_attempt_and_analysis_id_into_the_request():
    parked = ParkedRecord.from_bytes(orjson.dumps(V0_PARKED))
    assert (parked.request.op, parked.request.attempt, parked.request.analysis_id) == ("poll", 0, "u-1")
    assert (parked.not_before, parked.due(10.0), parked.reason) == (1700000060.0, 1700000040.0, "scan queued")
    assert b'"attempt"' not in orjson.dumps({k: v for k, v in orjson.loads(parked.to_bytes()).items()
                                             if k != "request"})


def test_version_0_cache_entries_are_read():
    done = cache_entry_from_bytes(orjson.dumps(V0_DONE))
    assert done == CachedResult(SummaryCard.mapped_from(True, {"positives": 1}), 1700000000.0, 1700086400.0, v=0)
    inflight = cache_entry_from_bytes(orjson.dumps(V0_INFLIGHT))
    assert inflight == InFlight(1700000000.0, "indicators.raw/0/5", (ORIGIN,), 2, v=0)
    assert is_finished(orjson.dumps(V0_DONE)) and not is_finished(orjson.dumps(V0_INFLIGHT))


def test_version_0_and_1_dead_letters_are_read():
    dead = DeadLetter.from_bytes(orjson.dumps(V0_DEAD))
    assert (dead.stage, dead.attempts, dead.original["record"]["analysis_id"]) == ("gateway", 8, "u-1")
    v1 = DeadLetter.from_bytes(orjson.dumps({**V0_DEAD, "v": 1}))
    assert (v1.v, v1.original_length, v1.original_sha256, v1.truncated, v1.ref) == (1, None, None, False, None)


REQUEST = VtRequest(indicator=Indicator("sha256", "a" * 64), action="submit_file", api="v3", origin=ORIGIN,
                    op="poll", attempt=2, analysis_id="f-1", file=FileRef("a" * 64, 3, "x.bin", "YWJj"))
RECORDS = [
    LookupRequest(Indicator("ip", "8.8.8.8"), "submit_ip", ORIGIN),
    LookupRequest(Indicator("url", "http://x.example/"), "submit_url", ORIGIN, max_age_s=60.0, allowance=11),
    REQUEST,
    VtRequest(indicator=Indicator("url", "http://x.example/"), action="submit_url", api="v3", origin=ORIGIN,
              op="poll", attempt=1, analysis_id="u-1", spent=3, allowance=7),
    REQUEST.respond("pending", body={"data": {}}, step="scan", reason="scan submitted", notes=("a",)),
    ParkedRecord(REQUEST, not_before_ms=2000, parked_at_ms=1000, reason="scan queued"),
    CachedResult(SummaryCard(found=False), 1.0, 2.0),
    InFlight(1.0, "r/0/1", (Origin(ref="r/0/2", tags=("ops",), tlp=("amber",)),), 0),
    DeadLetter({"text": "x"}, "intake", "bad", None, 1, "2026-11-30T19:00:00Z"),
    DeadLetter({}, "intake", "unexpected error", None, 1, "2026-11-30T19:00:00Z", original_length=3,
               original_sha256="ab" * 32, truncated=True, ref="indicators.raw/0/7", error_type="RecursionError"),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_round_trip_and_version(record):
    raw = record.to_bytes()
    assert orjson.loads(raw)["v"] == (DEAD_LETTER_VERSION if isinstance(record, DeadLetter) else RECORD_VERSION)
    read = cache_entry_from_bytes(raw) if isinstance(record, (CachedResult, InFlight)) else \
        type(record).from_bytes(raw)
    assert read == record


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_unknown_fields_from_a_later_version_are_ignored(record):
    doc = {**orjson.loads(record.to_bytes()), "v": RECORD_VERSION + 1, "added_later": {"x": 1}}
    read = cache_entry_from_bytes(orjson.dumps(doc)) if isinstance(record, (CachedResult, InFlight)) else \
        type(record).from_bytes(orjson.dumps(doc))
    assert read.v == RECORD_VERSION + 1 and type(read) is type(record)


def test_fields_never_read_are_not_written():
    request = orjson.loads(REQUEST.to_bytes())
    response = orjson.loads(REQUEST.respond("found").to_bytes())
    done = orjson.loads(RECORDS[6].to_bytes())
    assert not {"key", "requested_at", "spent", "allowance"} & request.keys()  # 0 and no limit: left out
    assert not {"key", "error", "fetched_at"} & response.keys()  # requests: a replay run's budget reads it
    assert "found" not in done  # the summary card says it


@pytest.mark.parametrize("cls, doc, message", [
    (LookupRequest, b"[1]", "malformed vt.lookups record: (record) must be a JSON object, not list"),
    (LookupRequest, b"{", "malformed vt.lookups record: (record) is not JSON"),
    (LookupRequest, {"indicator": IND, "origin": {}}, "malformed vt.lookups record: action is missing"),
    (LookupRequest, {"indicator": {"type": "ip"}, "action": "a", "origin": {}},
     "malformed vt.lookups record: indicator.value is missing"),
    (VtRequest, {**V0_REQUEST, "indicator": {"type": "mac", "value": "x"}},
     "malformed request record: indicator.type indicator type 'mac' is not one of"),
    (VtRequest, {**V0_REQUEST, "op": "poll"}, "malformed request record: analysis_id is missing"),
    (VtRequest, {**V0_REQUEST, "attempt": "1"}, "malformed request record: attempt must be an integer, not str"),
    (VtRequest, {**V0_REQUEST, "file": {"name": "x"}}, "malformed request record: file.sha256 is missing"),
    (VtRequest, {**V0_REQUEST, "spent": -1}, "malformed request record: spent must not be negative"),
    (VtRequest, {**V0_REQUEST, "allowance": -2}, "malformed request record: allowance must not be negative"),
    (LookupRequest, {**V0_LOOKUP, "allowance": "3"}, "malformed vt.lookups record: allowance must be an integer"),
    (VtResponse, {**V0_RESPONSE, "status": "ok"}, "malformed vt.responses record: status must be one of"),
    (ParkedRecord, {**V0_PARKED, "request": {**V0_REQUEST, "api": 3}},
     "malformed parked record: request.api must be a string, not int"),
    (DeadLetter, {**V0_DEAD, "original": "x"}, "malformed vt.dead record: original must be an object, not str"),
])
def test_a_malformed_record_names_the_field(cls, doc, message):
    raw = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    with pytest.raises(RecordError) as caught:
        cls.from_bytes(raw)
    assert str(caught.value).startswith(message) and isinstance(caught.value, InputError)


@pytest.mark.parametrize("doc", [{**V0_DONE, "state": "gone"}, {**V0_DONE, "summary": None},
                                 {**V0_INFLIGHT, "waiters": "all"}])
def test_a_malformed_cache_entry_names_the_field(doc):
    with pytest.raises(RecordError, match=r"malformed cache entry: (state|summary|waiters) "):
        cache_entry_from_bytes(orjson.dumps(doc))


def test_a_cache_entry_read_as_the_other_state_is_refused():
    assert CachedResult.from_bytes(RECORDS[6].to_bytes()) == RECORDS[6]
    with pytest.raises(RecordError, match="malformed cache entry: state must be inflight"):
        InFlight.from_bytes(RECORDS[6].to_bytes())
    with pytest.raises(RecordError, match="malformed cache entry: state must be done"):
        CachedResult.from_bytes(RECORDS[7].to_bytes())
