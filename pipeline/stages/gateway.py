"""Stage 3, gateway: vt.requests, vt.replay and vt.polls -> VirusTotal -> vt.responses.

All one-partition topics of the group land on one worker (faust assigns them
together), so exactly one gateway holds the key's pace and quotas (the
governor, persisted on vt.quota). It serves three lanes in order: fresh live
lookups (vt.requests), then replay lookups (vt.replay, fed by ``vtstream
replay``), then due work from the retry tiers (vt.polls: scan polls, retries).

One request record is one piece of work (``op``):

- ``lookup``: the report for an IP, domain, hash, URL or file hash. A URL
  VirusTotal does not know, or knows only from a report older than
  ``VTSTREAM_URL_MAX_AGE``, is submitted for scanning; so is an unknown file
  whose event carries an upload label (``VTSTREAM_UPLOAD_LABELS``), if its bytes
  still are what intake approved (:func:`pipeline.inputs.files.approved_upload`).

Before any call the request passes the privacy gate again (:func:`pipeline.rules.gate.at_edge`):
a record produced straight to vt.requests or vt.replay gets no further than intake would let it.
- ``poll``: a submitted scan. Queued: park it one tier further. Done: fetch
  and answer with the report.

Up to ``VTSTREAM_VT_MAX_IN_FLIGHT`` records per lane are worked on at once
(:mod:`pipeline.kafka.inflight`), each call still starting only when the
governor's pace allows; records are acknowledged in order once their outputs
are produced. With API v3 the key's allowances are read from VirusTotal at
start and every hour (:mod:`pipeline.vt.discovery`).

Every request the work of a record makes is counted as it passes the governor
(:class:`Spend`; every HTTP request of the client awaits its pace first), and
the next answer on vt.responses reports it (``requests``): a queued poll, a
retried failure or a 429 carries its count in the parked record until then.
A replay's record also carries an ``allowance``: the requests its run reserved
for it; the gateway never passes it (``vtstream replay --budget``).

Nothing waits in memory. A submitted scan answers at once with the scan step
(permalink, scan id) and is parked; 429/204 pauses every call and parks the
record; a spent daily, monthly or per-source quota parks it until the reset
and answers "not checked: quota exhausted" right away; timeouts, 5xx and
garbled bodies are parked one tier further each attempt and dead-lettered
after ``VTSTREAM_RETRY_MAX_ATTEMPTS``; a wrong key (401) stops all calls,
logs one clear error, and holds the record until the key works.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from topics import RESPONSES

from pipeline.contracts.quota import GOVERNOR_KEY, QuotaState
from pipeline.contracts.wire import Status, VtRequest
from pipeline.errors import AllowanceSpent, DailyQuotaExhausted, InputError, RecordError
from pipeline.inputs import files
from pipeline.kafka.inflight import run_in_flight
from pipeline.kafka.runtime import Context, Outbox, Received, fits, send_dead_letter
from pipeline.rules import gate
from pipeline.rules.labels import origin_labels
from pipeline.rules.policy import carries_any_label
from pipeline.stages import retry
from pipeline.vt.client import LookupResult, WaitTurn, Submission, Upload, VirusTotalClient, report_age
from pipeline.vt.discovery import AllowanceWatch
from pipeline.vt.errors import QuotaExceeded, VirusTotalError, WrongCredentials
from pipeline.vt.governor import Governor, Yielded

log = logging.getLogger("vtstream.stages.gateway")

QUOTA_BACKOFF_START, QUOTA_BACKOFF_CAP = 60.0, 900.0
#: The lanes in the governor's order: live lookups, replay lookups, then polls and retries.
LANES = (("requests", "gateway"), ("replay", "gateway_replay"), ("polls", "gateway_polls"))
NOT_UPLOADED = "not uploaded: the event has no label in VTSTREAM_UPLOAD_LABELS"


@dataclass
class Shared:
    """What the gateway lanes share: the governor, the allowance watch and the wrong-key flag."""

    governor: Governor
    watch: AllowanceWatch
    loaded: bool = False
    key_rejected: bool = False
    quota_backoff: float = QUOTA_BACKOFF_START
    #: While the key is rejected, one record at a time tries it (not every record in flight).
    key_probe: asyncio.Lock = field(default_factory=asyncio.Lock)


class Spend:
    """The VirusTotal requests of one request record's work: made now, carried in from earlier
    steps, reported by the next answer; and what the work may still spend (its allowance)."""

    def __init__(self, request: VtRequest) -> None:
        self.allowance = request.allowance
        self.made = 0
        self._unreported = request.spent

    def check(self) -> None:
        """Before a request: refuse it when the allowance is used up."""
        if self.allowance is not None and self.made >= self.allowance:
            raise AllowanceSpent("not checked: the VirusTotal requests the replay run reserved for this "
                                 "indicator are spent (vtstream replay --budget)")

    def count(self) -> None:
        """A request passed the governor and goes out."""
        self.made += 1
        self._unreported += 1

    def report(self) -> int:
        """The requests an answer reports now: every one not reported before."""
        reported, self._unreported = self._unreported, 0
        return reported

    def carried(self, request: VtRequest) -> VtRequest:
        """``request`` parked with what is still unreported and what is left of the allowance."""
        return request.carrying(self._unreported, self.made)


class Gateway:
    """Does one request record's VirusTotal work and says what happens next."""

    def __init__(self, ctx: Context, client: VirusTotalClient, shared: Shared, priority: int) -> None:
        self.ctx, self.client, self.shared, self.priority = ctx, client, shared, priority
        self.settings = ctx.settings

    async def handle(self, out: Outbox, record: Received) -> None:
        """Process one vt.requests / vt.polls record."""
        with self.shared.governor.serving(self.priority):
            await self._handle(out, record.key, record.value, record.ref)

    async def _handle(self, out: Outbox, key: bytes, value: bytes | None, ref: str) -> None:
        try:
            request, refused = gate.at_edge(VtRequest.from_bytes(value), self.settings.policy,
                                            self.settings.privacy)
        except RecordError as exc:
            await send_dead_letter(out, "gateway", key, value, ref, self.settings.privacy,
                                   reason="malformed request record", error=str(exc), error_type=type(exc).__name__)
            return
        spend = Spend(request)
        if refused is not None:
            await self._respond(out, key, request, spend, "error", reason=f"not checked: {refused}")
            return
        while True:
            try:
                async with AsyncExitStack() as probing:
                    if self.shared.key_rejected:
                        await probing.enter_async_context(self.shared.key_probe)
                    await self._work(out, key, request, spend)
                self.shared.quota_backoff = QUOTA_BACKOFF_START
                return
            except WrongCredentials as exc:
                if not await self._hold_for_key(out, key, request, spend, exc):
                    return
            except QuotaExceeded as exc:
                await self._park(out, key, request, spend, self._pause_for_quota(exc),
                                 f"VirusTotal quota exceeded ({exc.status})")
                return
            except DailyQuotaExhausted as exc:
                await self._respond(out, key, request, spend, "pending", reason=str(exc))
                await self._park(out, key, request, spend, exc.retry_after, str(exc))
                return
            except Yielded as exc:
                await self._park(out, key, request, spend, max(0.0, exc.until - self.ctx.clock()),
                                 "rebalance or shutdown")
                return
            except AllowanceSpent as exc:
                await self._respond(out, key, request, spend, "error", reason=str(exc))
                return
            except VirusTotalError as exc:
                await self._failed(out, key, request, spend, exc)
                return

    def _pause_for_quota(self, exc: QuotaExceeded) -> float:
        """Pause every call after a 429/204; the seconds until calls resume.

        Calls in flight when the first 429 came back answer 429 too: they join the
        pause already running instead of doubling the backoff once each.
        """
        governor = self.shared.governor
        if governor.paused and exc.retry_after is None:
            return (governor.blocked_until or 0.0) - self.ctx.clock()
        wait = exc.retry_after if exc.retry_after is not None else self.shared.quota_backoff
        self.shared.quota_backoff = min(QUOTA_BACKOFF_CAP, self.shared.quota_backoff * 2)
        governor.pause(wait, f"VirusTotal answered {exc.status}: quota exceeded")
        self._store_governor()
        log.warning("VirusTotal says the quota is exceeded; all calls pause for %.0f s", wait)
        return wait

    async def _work(self, out: Outbox, key: bytes, request: VtRequest, spend: Spend) -> None:
        api, indicator = request.api, request.indicator
        relationships = self.ctx.mappings.relationships(api, request.action)
        pace = self._pace(request, spend)
        if request.op == "poll" and request.analysis_id is not None:
            result = await self.client.poll(request.analysis_id, indicator, pace, api=api,
                                            relationships=relationships)
            if result is None:
                await self._still_queued(out, key, request, spend)
            else:
                await self._answer(out, key, request, spend, result)
            return
        result = await self.client.lookup(indicator, pace, api=api, relationships=relationships)
        submission = await self._submit_if_needed(request, result, pace)
        if not isinstance(submission, Submission):
            await self._answer(out, key, request, spend, result, not_uploaded=submission)
            return
        await self._respond(out, key, request, spend, "pending", body=submission.body, step="scan",
                            reason="scan submitted; the report follows when VirusTotal finishes")
        await self._park(out, key, request.poll(submission.analysis_id), spend,
                         retry.backoff(1, self.settings.retry.tiers), "scan queued")

    async def _submit_if_needed(self, request: VtRequest, result: LookupResult, pace: WaitTurn
                                ) -> Submission | str | None:
        """The scan submitted, or None, or (a file that may not be uploaded after all) why not."""
        api, action = request.api, request.action
        if action == "submit_url":
            age = report_age(result.body, api, self.ctx.clock()) if result.status == "found" else None
            if result.status == "found" and (age is None or age <= self.settings.vt.url_max_age_s):
                return None
            return await self.client.submit_url(request.indicator.value, pace, api=api)
        if action == "submit_file" and result.status == "not_found" and self._may_upload(request):
            try:
                upload = await asyncio.to_thread(_approved_upload, request, self.settings.policy.file_root)
            except InputError as exc:
                log.warning("file upload refused for %s: %s", request.indicator.value, exc)
                return f"not uploaded: {exc}"
            try:
                return await self.client.submit_file(upload, pace, api=api)
            except InputError as exc:  # the bytes changed while they streamed: the upload was cut short
                return f"not uploaded: {exc}"
            finally:
                upload.close()
        return None

    def _may_upload(self, request: VtRequest) -> bool:
        return carries_any_label(origin_labels(request.origin), self.settings.policy.upload_labels)

    def _pace(self, request: VtRequest, spend: Spend) -> WaitTurn:
        """The wait before each of this work's requests: its allowance, then the governor; every
        request that passes is counted."""
        source = request.origin.source

        async def pace() -> None:
            spend.check()
            shared = self.shared
            if not shared.loaded:
                stored = self.ctx.quota.get(GOVERNOR_KEY)
                if stored:
                    try:
                        shared.governor.load(QuotaState.from_bytes(stored))
                    except RecordError as exc:
                        log.warning("the governor's stored state is unreadable, starting afresh: %s", exc)
                shared.loaded = True
            await shared.governor.acquire(source, self.priority, should_yield=self.ctx.must_yield)
            spend.count()
            self._store_governor()

        return pace

    def _store_governor(self) -> None:
        """Write the governor's state to vt.quota: after each call, and when a pause starts,
        so `vtstream status` shows the pause."""
        self.ctx.quota[GOVERNOR_KEY] = self.shared.governor.state().to_bytes()

    async def _answer(self, out: Outbox, key: bytes, request: VtRequest, spend: Spend, result: LookupResult,
                      not_uploaded: str | None = None) -> None:
        if self.shared.key_rejected:
            log.info("VirusTotal accepts the API key again; calls resume")
            self.shared.key_rejected = False
        notes = list(result.notes)
        if not_uploaded is not None:
            notes.append(not_uploaded)
        elif request.action == "submit_file" and result.status == "not_found" and not self._may_upload(request):
            notes.append(NOT_UPLOADED)
        await self._respond(out, key, request, spend, result.status, body=result.body, notes=tuple(notes))

    async def _still_queued(self, out: Outbox, key: bytes, request: VtRequest, spend: Spend) -> None:
        polled = request.retried()
        if polled.attempt >= self.settings.retry.max_attempts:
            reason = f"not checked: VirusTotal did not finish the scan after {polled.attempt} polls"
            await send_dead_letter(out, "gateway", key, request, None, self.settings.privacy, reason=reason,
                                   attempts=polled.attempt)
            await self._respond(out, key, request, spend, "error", reason=reason)
            return
        await self._park(out, key, polled, spend, retry.backoff(polled.attempt + 1, self.settings.retry.tiers),
                         "scan still queued")

    async def _failed(self, out: Outbox, key: bytes, request: VtRequest, spend: Spend, exc: VirusTotalError) -> None:
        failed = request.retried()
        if exc.retryable and failed.attempt < self.settings.retry.max_attempts:
            log.warning("%s for %s (attempt %d of %d), parked: %s", type(exc).__name__, key.decode(errors="replace"),
                        failed.attempt, self.settings.retry.max_attempts, exc)
            await self._park(out, key, failed, spend, retry.backoff(failed.attempt, self.settings.retry.tiers),
                             f"{type(exc).__name__}: {exc}")
            return
        reason = f"not checked: {type(exc).__name__} from VirusTotal"
        await send_dead_letter(out, "gateway", key, request, None, self.settings.privacy, reason=reason,
                               error=str(exc), error_type=type(exc).__name__, attempts=failed.attempt)
        await self._respond(out, key, request, spend, "error", reason=reason)

    async def _hold_for_key(self, out: Outbox, key: bytes, request: VtRequest, spend: Spend,
                            exc: WrongCredentials) -> bool:
        """Wait, in slices, for the key to work again; False if the record was parked instead.

        Tries again every first-tier delay (30 s by default): one call per interval, no more.
        """
        hold = retry.backoff(1, self.settings.retry.tiers)
        if not self.shared.key_rejected:
            log.error("VirusTotal rejected the API key (HTTP %s). Calls stop; records are held, not dropped. "
                      "Fix VTSTREAM_VT_API_KEY and restart the workers; until then the gateway tries again "
                      "every %.0f s.", exc.status, hold)
            self.shared.key_rejected = True
        self.shared.governor.pause(hold, "VirusTotal rejected the API key")
        self._store_governor()
        deadline = self.ctx.clock() + hold
        while (now := self.ctx.clock()) < deadline:
            if self.ctx.must_yield():
                await self._park(out, key, request, spend, deadline - now, "API key rejected")
                return False
            await asyncio.sleep(min(deadline - now, self.settings.retry.slice_s))
        return True

    async def _park(self, out: Outbox, key: bytes, request: VtRequest, spend: Spend, wait_s: float,
                    reason: str) -> None:
        """Park ``request`` with the requests its work made and no answer reported yet."""
        topic, record = retry.parked(spend.carried(request), wait_s=wait_s, reason=reason, now=self.ctx.clock(),
                                     tiers=self.settings.retry.tiers)
        await out.send(topic, key, record)

    async def _respond(self, out: Outbox, key: bytes, request: VtRequest, spend: Spend, status: Status, *,
                       body: Any = None, step: str = "report", reason: str | None = None,
                       notes: tuple[str, ...] = ()) -> None:
        """Send the answer, reporting every request of this work not reported before; one whose body
        cannot travel (larger than a Kafka record, or not encodable) is answered "not checked" with the
        reason, so every sighting still hears."""
        requests = spend.report()
        response = request.respond(status, body=body, step=step, reason=reason, notes=notes, requests=requests)
        limit = self.settings.kafka.max_record_bytes
        try:
            encoded = response.to_bytes()
            problem = None if fits(key, encoded, limit) else (
                f"is {len(encoded):,} bytes, more than a Kafka record holds ({limit:,}, VTSTREAM_KAFKA_MAX_RECORD_BYTES)")
        except (TypeError, ValueError) as exc:  # nested deeper than orjson writes, and the like
            problem = f"cannot be encoded ({exc})"
        if problem is not None:
            log.warning("VirusTotal's answer for %s %s; answered as not checked", key.decode(errors="replace"), problem)
            response = request.respond("error", step=step, requests=requests,
                                       reason=f"not checked: VirusTotal's answer {problem}")
        await out.send(RESPONSES, key, response)


def _approved_upload(request: VtRequest, file_root: Path | None) -> Upload:
    """What may be uploaded for a submit_file request: only bytes that hash to the indicator looked up
    (:func:`pipeline.inputs.files.approved_upload`); InputError says why nothing may."""
    ref = request.file
    if ref is None:
        raise InputError("the request carries no file")
    if ref.sha256 != request.indicator.value:
        raise InputError("the request's file is not the one its indicator names")
    approved = files.approved_upload(ref, file_root)
    name = ref.name or "sample"
    if isinstance(approved, bytes):
        return Upload(name=name, size=len(approved), content=approved)
    return Upload(name=name, size=approved.size, stream=approved.chunks, closing=approved.close)


def install(ctx: Context) -> None:
    """Register one gateway agent per lane (live lookups, replay lookups, due work) on ctx.app."""
    s = ctx.settings
    governor = Governor(s.vt.rate_per_minute, s.vt.daily_quota, monthly_quota=s.vt.monthly_quota,
                        source_caps=dict(s.vt.source_daily_caps), clock=ctx.clock)
    shared = Shared(governor, AllowanceWatch(governor, s.vt.api_version))
    ctx.metrics.read_quota(lambda: shared.governor.readings() if shared.loaded else [])
    for priority, (topic, name) in enumerate(LANES):
        _install_one(ctx, shared, topic, name, priority)


def _install_one(ctx: Context, shared: Shared, topic: str, name: str, priority: int) -> None:
    @ctx.app.agent(ctx.topics[topic], name=name)
    async def gateway_agent(stream: Any) -> None:
        async with VirusTotalClient(ctx.settings, metrics=ctx.metrics) as client:
            gateway = Gateway(ctx, client, shared, priority)
            watching = await shared.watch.start(client)
            try:
                await run_in_flight(ctx, stream, name, gateway.handle, ctx.settings.vt.max_in_flight)
            finally:
                if watching is not None:
                    watching.cancel()
