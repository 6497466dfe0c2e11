"""The gateway's decisions, driven through the real Gateway with a fake client, clock and outbox.

Each test sends one request record and reads what the gateway produced: an
answer on vt.responses, a parked record on a retry tier, a dead letter, or a
pause of every call.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, cast

import pytest

from pipeline.contracts.indicator import FileRef
from pipeline.contracts.indicator import Indicator
from pipeline.contracts.origin import Origin
from pipeline.contracts.wire import DeadLetter, Op, ParkedRecord, VtRequest, VtResponse
from pipeline.kafka.runtime import Received
from pipeline.mapping import load_mappings
from pipeline.settings import Settings
from pipeline.stages.gateway import NOT_UPLOADED, Gateway, Shared
from pipeline.vt.client import LookupResult, Submission, Upload, VirusTotalClient
from pipeline.vt.discovery import AllowanceWatch
from pipeline.vt.errors import BadRequest, QuotaExceeded, ServerError, WrongCredentials
from pipeline.vt.governor import Governor
from tests.support.fakes import T0, Clock, RecordingOutbox
from tests.support.stages import FakeApp, stage_context
from topics import DEAD, RESPONSES, RETRY_PREFIX, retry_topic

pytestmark = pytest.mark.unit

KEY = b"ip:8.8.8.8"
FOUND = LookupResult("found", {"data": {"id": "8.8.8.8"}})
NOT_FOUND = LookupResult("not_found", None)
SETTINGS = Settings.of(retry_max_attempts=3, retry_slice_s=0.001)  # the key hold sleeps a slice per clock step
MAPPINGS = load_mappings(SETTINGS.mappings_dir)


class Costing:
    """A scripted outcome that took ``requests`` HTTP requests (each waits its turn at the pace)."""

    def __init__(self, outcome: Any, requests: int) -> None:
        self.outcome, self.requests = outcome, requests


class FakeClient:
    """Scripted VirusTotal: each call takes the next outcome (a result or an error) of its method;
    ``paced`` counts the requests it made, as the real client does: one pace per request."""

    def __init__(self, **script: list[Any]) -> None:
        self.script = script
        self.calls: list[tuple[str, Any]] = []
        self.paced = 0

    async def _next(self, method: str, arg: Any, pace: Any) -> Any:
        await pace()  # the first request waits its turn before anything is known
        self.paced += 1
        outcome = self.script[method].pop(0)
        if isinstance(outcome, Costing):
            for _ in range(outcome.requests - 1):
                await pace()
                self.paced += 1
            outcome = outcome.outcome
        self.calls.append((method, arg))
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def lookup(self, indicator: Indicator, pace: Any, **_: Any) -> Any:
        return await self._next("lookup", indicator.value, pace)

    async def poll(self, analysis_id: str, indicator: Indicator, pace: Any, **_: Any) -> Any:
        return await self._next("poll", analysis_id, pace)

    async def submit_url(self, url: str, pace: Any, **_: Any) -> Any:
        return await self._next("submit_url", url, pace)

    async def submit_file(self, upload: Upload, pace: Any, **_: Any) -> Any:
        return await self._next("submit_file", upload, pace)


def request(op: Op = "lookup", *, action: str = "submit_ip", value: str = "8.8.8.8", attempt: int = 0,
            labels: list[str] | None = None, file: FileRef | None = None, spent: int = 0,
            allowance: int | None = None) -> VtRequest:
    kind = {"submit_ip": "ip", "submit_url": "url", "submit_file": "sha256"}[action]
    origin = Origin(ref="indicators.raw/0/1", id="e1", labels=tuple(labels or ()))
    return VtRequest(indicator=Indicator(kind, value), action=action, api="v3", origin=origin, op=op,
                     attempt=attempt, analysis_id="an-1" if op == "poll" else None, file=file, spent=spent,
                     allowance=allowance)


def gateway(client: FakeClient, clock: Clock, settings: Settings = SETTINGS,
            app: FakeApp | None = None) -> Gateway:
    sleeps: list[float] = []

    async def no_sleep(seconds: float) -> None:  # the governor waits on the fake clock, never the wall clock
        sleeps.append(seconds)
        clock.now += seconds

    governor = Governor(600_000, 1000, clock=clock, sleep=no_sleep)
    ctx = stage_context(settings, app=app, mappings=MAPPINGS, clock=clock)
    real = cast(VirusTotalClient, client)  # the fake has the four calls the gateway makes
    return Gateway(ctx, real, Shared(governor, AllowanceWatch(governor, "v3")), 0)  # lane 0: live lookups


def run(gw: Gateway, record: VtRequest | bytes) -> RecordingOutbox:
    (out,) = run_each(gw, [record])
    return out


def run_each(gw: Gateway, records: list[VtRequest | bytes]) -> list[RecordingOutbox]:
    """Hand the gateway one record after the other (in one event loop, as its agent does)."""
    async def scenario() -> list[RecordingOutbox]:
        outs = []
        for record in records:
            out = RecordingOutbox()
            value = record if isinstance(record, bytes) else record.to_bytes()
            await gw.handle(out, Received(KEY, value, "vt.requests/0/1", gw.ctx.clock()))
            outs.append(out)
        return outs

    return asyncio.run(scenario())


def test_a_found_report_is_answered_and_nothing_else():
    out = run(gateway(FakeClient(lookup=[FOUND]), Clock()), request())
    assert out.topics() == [RESPONSES]
    answer = out.one(RESPONSES)
    assert isinstance(answer, VtResponse)
    assert (answer.status, answer.step, answer.body) == ("found", "report", FOUND.body)
    assert answer.origin == Origin(ref="indicators.raw/0/1", id="e1")


def test_an_unknown_url_is_submitted_answered_with_the_scan_and_parked_as_a_poll():
    clock = Clock()
    client = FakeClient(lookup=[NOT_FOUND], submit_url=[Submission("u-123", {"data": {"id": "u-123"}})])
    out = run(gateway(client, clock), request(action="submit_url", value="http://evil.example.com/"))
    assert [name for name, _ in client.calls] == ["lookup", "submit_url"]
    assert out.topics() == [RESPONSES, retry_topic("30s")]
    answer = out.one(RESPONSES)
    assert (answer.status, answer.step, answer.body) == ("pending", "scan", {"data": {"id": "u-123"}})
    parked = out.one(retry_topic("30s"))
    assert isinstance(parked, ParkedRecord)
    assert (parked.request.op, parked.request.analysis_id, parked.request.attempt) == ("poll", "u-123", 0)
    assert parked.not_before_ms == int((clock.now + 30) * 1000)


def test_a_retryable_failure_is_parked_one_tier_further_per_attempt():
    out = run(gateway(FakeClient(lookup=[ServerError("503", status=503)]), Clock()), request(attempt=1))
    assert out.topics() == [retry_topic("2m")]
    parked = out.one(retry_topic("2m"))
    assert parked.request.attempt == 2 and parked.reason.startswith("ServerError")


def test_the_last_retryable_failure_is_dead_lettered_and_answered_not_checked():
    out = run(gateway(FakeClient(lookup=[ServerError("503", status=503)]), Clock()), request(attempt=2))
    assert sorted(out.topics()) == sorted([DEAD, RESPONSES])
    dead = out.one(DEAD)
    assert isinstance(dead, DeadLetter) and dead.attempts == 3 and dead.stage == "gateway"
    assert dead.original["record"]["attempt"] == 2
    answer = out.one(RESPONSES)
    assert answer.status == "error" and answer.reason == "not checked: ServerError from VirusTotal"


def test_a_refused_argument_is_dead_lettered_at_once():
    out = run(gateway(FakeClient(lookup=[BadRequest("bad", status=400)]), Clock()), request())
    assert sorted(out.topics()) == sorted([DEAD, RESPONSES]) and out.one(DEAD).attempts == 1


def test_a_scan_still_queued_is_re_parked_then_dead_lettered_after_the_last_poll():
    queued = run(gateway(FakeClient(poll=[None]), Clock()), request("poll", attempt=1))
    parked = queued.one(retry_topic("10m"))
    assert (parked.request.attempt, parked.request.analysis_id) == (2, "an-1")
    last = run(gateway(FakeClient(poll=[None]), Clock()), request("poll", attempt=2))
    assert last.one(DEAD).original["record"]["analysis_id"] == "an-1"
    assert "did not finish the scan after 3 polls" in last.one(RESPONSES).reason


def test_a_finished_poll_is_answered_with_the_report():
    out = run(gateway(FakeClient(poll=[FOUND]), Clock()), request("poll", attempt=1))
    assert out.topics() == [RESPONSES] and out.one(RESPONSES).status == "found"


def test_429_pauses_every_call_and_parks_the_record_for_the_wait():
    clock = Clock()
    gw = gateway(FakeClient(lookup=[QuotaExceeded("429", status=429, retry_after=120.0)]), clock)
    out = run(gw, request())
    assert out.topics() == [retry_topic("2m")]
    assert out.one(retry_topic("2m")).not_before_ms == int((clock.now + 120) * 1000)
    assert gw.shared.governor.blocked_until == pytest.approx(clock.now + 120)


def test_429_without_retry_after_backs_off_doubling():
    clock = Clock()
    gw = gateway(FakeClient(lookup=[QuotaExceeded("429", status=429)] * 2), clock)
    first, second = run_each(gw, [request(), request()])
    assert first.one(retry_topic("30s")).not_before_ms == int((T0 + 60) * 1000)
    assert second.topics() == [retry_topic("2m")] and gw.shared.quota_backoff == 240.0


def test_a_spent_daily_quota_parks_and_answers_pending():
    gw = gateway(FakeClient(lookup=[]), Clock())
    gw.shared.governor.used_today = gw.shared.governor.daily_quota
    out = run(gw, request())
    assert sorted(out.topics()) == sorted([retry_topic("1h"), RESPONSES])
    assert out.one(RESPONSES).status == "pending" and "daily quota" in out.one(RESPONSES).reason


def test_a_rejected_key_holds_the_record_until_the_key_works():
    clock = Clock(step=5.0)  # the hold loop reads the clock once per slice
    client = FakeClient(lookup=[WrongCredentials("401", status=401), FOUND])
    gw = gateway(client, clock)
    out = run(gw, request())
    assert [name for name, _ in client.calls] == ["lookup", "lookup"]
    assert out.topics() == [RESPONSES] and out.one(RESPONSES).status == "found"
    assert gw.shared.key_rejected is False


def test_a_rejected_key_parks_the_record_when_the_partition_must_be_handed_over():
    app = FakeApp()
    client = FakeClient(lookup=[WrongCredentials("401", status=401)])
    gw = gateway(client, Clock(), app=app)
    app.rebalancing = True  # the first call still happens; the hold sees the rebalance
    out = run(gw, request())
    assert out.topics() == [retry_topic("30s")] and out.one(retry_topic("30s")).reason == "API key rejected"
    assert gw.shared.key_rejected is True and gw.shared.governor.blocked_until is not None


ABC = hashlib.sha256(b"abc").hexdigest()
FILE = FileRef(sha256=ABC, size=3, name="x.bin", content_b64="YWJj")


@pytest.mark.parametrize("labels, uploaded", [(["TLP: CLEAR"], True), (["tlp:clear"], True),
                                              (["TLP:AMBER"], False), ([], False)])
def test_an_unknown_file_is_uploaded_only_with_an_upload_label(labels, uploaded):
    """'TLP: CLEAR' is the label TLP:CLEAR for the upload check as for the policy gate."""
    settings = Settings.of(policy_upload_labels=("TLP:CLEAR",), retry_max_attempts=3)
    script = {"lookup": [NOT_FOUND], "submit_file": [Submission("f-1", {"data": {"id": "f-1"}})]}
    client = FakeClient(**script)
    out = run(gateway(client, Clock(), settings), request(action="submit_file", value=ABC, labels=labels,
                                                          file=FILE))
    assert [name for name, _ in client.calls] == (["lookup", "submit_file"] if uploaded else ["lookup"])
    answer = out.one(RESPONSES)
    if uploaded:
        assert client.calls[1][1].content == b"abc" and answer.step == "scan"
    else:
        assert answer.status == "not_found" and NOT_UPLOADED in answer.notes


@pytest.mark.parametrize("value, file, needle", [
    (ABC, FileRef(ABC, 3, "x.bin", content_b64="eHl6"), "does not hash to the SHA-256 intake recorded"),
    ("b" * 64, FILE, "not the one its indicator names"),
    (ABC, None, "carries no file"),
    (ABC, FileRef(ABC, 3, "x.bin", path="/proc/self/environ"), "no VTSTREAM_FILE_ROOT"),
])
def test_a_crafted_upload_request_uploads_nothing_and_says_why(value, file, needle):
    settings = Settings.of(policy_upload_labels=("TLP:CLEAR",))
    client = FakeClient(lookup=[NOT_FOUND], submit_file=[Submission("f-1", {"data": {"id": "f-1"}})])
    out = run(gateway(client, Clock(), settings), request(action="submit_file", value=value, labels=["TLP:CLEAR"],
                                                          file=file))
    assert [name for name, _ in client.calls] == ["lookup"]
    answer = out.one(RESPONSES)
    assert answer.status == "not_found" and any(needle in note and "not uploaded" in note for note in answer.notes)


@pytest.mark.parametrize("value", [b"not json", b'{"indicator": {"type": "ip", "value": "8.8.8.8"}}',
                                   b'{"indicator": {"type": "nope", "value": "x"}, "action": "a", "api": "v3",'
                                   b' "origin": {}}'])
def test_a_malformed_request_is_dead_lettered_with_the_field_named(value):
    client = FakeClient()
    out = run(gateway(client, Clock()), value)
    dead = out.one(DEAD)
    assert out.topics() == [DEAD] and client.calls == []
    assert dead.reason == "malformed request record" and dead.error.startswith("malformed request record: ")
    assert dead.original == {"text": value.decode()}


def test_a_url_secret_that_reaches_the_gateway_is_redacted_before_virustotal_sees_it():
    """A request that did not pass intake's redaction (parked before the rules changed, replayed)."""
    client = FakeClient(lookup=[FOUND])
    out = run(gateway(client, Clock()), request(action="submit_url", value="https://bob:pw@evil.com/a?token=t1"))
    assert client.calls == [("lookup", "https://evil.com/a")]
    answer = out.one(RESPONSES)
    assert answer.indicator == Indicator("url", "https://evil.com/a")
    assert answer.origin.as_seen is not None and answer.origin.as_seen.value == "https://bob:pw@evil.com/a?token=t1"


def test_a_url_the_privacy_rules_refuse_is_answered_not_checked_without_a_call():
    client = FakeClient()
    out = run(gateway(client, Clock(), Settings.of(privacy_mode="skip")),
              request(action="submit_url", value="https://evil.com/a?token=t1"))
    assert client.calls == [] and out.topics() == [RESPONSES]
    assert out.one(RESPONSES).status == "error" and out.one(RESPONSES).reason.startswith("not checked: ")


# ---------------------------------------------------------------- what every answer reports it cost


def _steps(gw: Gateway, first: VtRequest) -> tuple[list[VtResponse], list[ParkedRecord]]:
    """Drive one piece of work to its end as the tiers would: every parked record is handed back."""
    answers: list[VtResponse] = []
    parked: list[ParkedRecord] = []
    pending: list[VtRequest] = [first]
    while pending:
        (out,) = run_each(gw, [pending.pop()])
        for topic, value in out.sent:
            if topic == RESPONSES:
                assert isinstance(value, VtResponse)
                answers.append(value)
            elif topic.startswith(RETRY_PREFIX):
                assert isinstance(value, ParkedRecord)
                parked.append(value)
                pending.append(value.request)
    return answers, parked


def test_a_url_scan_reports_every_request_it_made_lookup_submission_polls_and_report():
    """The server saw 1 lookup + 1 submission + 2 queued polls + (1 poll + 1 report): 6 requests."""
    client = FakeClient(lookup=[NOT_FOUND], submit_url=[Submission("u-1", {"data": {"id": "u-1"}})],
                        poll=[None, None, Costing(FOUND, 2)])
    settings = Settings.of(retry_max_attempts=5, retry_slice_s=0.001)
    answers, parked = _steps(gateway(client, Clock(), settings), request(action="submit_url", value="http://x.example.com/"))
    assert [(a.status, a.requests) for a in answers] == [("pending", 2), ("found", 4)]
    assert [p.request.spent for p in parked] == [0, 1, 2]  # queued polls carry their count to the answer
    assert sum(a.requests for a in answers) == client.paced == 6


def test_retried_failures_and_429s_are_counted_in_the_final_answer():
    client = FakeClient(lookup=[ServerError("503", status=503), QuotaExceeded("429", status=429, retry_after=1.0),
                                Costing(FOUND, 2)])
    answers, parked = _steps(gateway(client, Clock()), request())
    assert [p.request.spent for p in parked] == [1, 2]
    assert [(a.status, a.requests) for a in answers] == [("found", 4)] and client.paced == 4


def test_a_replay_allowance_is_never_passed_and_what_was_spent_is_reported():
    """Reserved 3: the lookup and the submission (2), one queued poll (1); the next poll is refused."""
    client = FakeClient(lookup=[NOT_FOUND], submit_url=[Submission("u-1", {"data": {"id": "u-1"}})],
                        poll=[None, FOUND])
    answers, parked = _steps(gateway(client, Clock()), request(action="submit_url", value="http://x.example.com/",
                                                                allowance=3))
    assert [p.request.allowance for p in parked] == [1, 0]
    assert client.paced == 3 and [name for name, _ in client.calls] == ["lookup", "submit_url", "poll"]
    assert [(a.status, a.requests) for a in answers] == [("pending", 2), ("error", 1)]
    assert "requests the replay run reserved for this indicator are spent" in (answers[-1].reason or "")
