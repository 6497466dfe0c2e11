"""Replay driver: a past time range of a raw-indicator topic -> the pipeline, at replay priority.

``vtstream replay`` drives it. A run reads its source topic as consumer group
``<app id>.replay.<run>`` (:func:`topics.replay_group`): the group's committed
offsets are the resume point, and the run's range, position, counts and state
live on the compacted topic ``vt.replay.runs`` for ``vtstream status``.

Where a run starts: the broker's ``offsets_for_times`` for ``--from``, when
the record at the answered offset carries the answered timestamp (Kafka's
contract); otherwise, as on the embedded broker, which answers offset 0 for
any time, the partition is scanned from its beginning. Either way every record
is filtered by its own timestamp, since an archive's timestamps need not be
monotonic: the looked-up offset is only a place to start.

Each in-range record goes through intake's parsing with ``replay: <run>`` in
its origin: bad records to vt.dead, policy skips straight to a summary, the
rest to vt.lookups (with ``max_age_s`` for ``--max-age``), where the lookup
stage sends cache misses to the replay lane ``vt.replay``. Forward first, then
commit: a batch's outputs are acknowledged before its offsets are committed.

While it feeds, the stage reads vt.responses (what each answer cost, for the
budget) and indicators.enriched (each replayed record's final summary, for the
report and to know when the run is answered).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from topics import ENRICHED, LOOKUPS, REPLAY_RUNS, RESPONSES, changelog_name, replay_group

from pipeline.contracts.cache_entry import CachedResult
from pipeline.contracts.events import SummaryEvent
from pipeline.contracts.run_state import BUDGET_SPENT, FINISHED, INTERRUPTED, READING, RunState
from pipeline.contracts.wire import VtResponse
from pipeline.errors import ConfigError, RecordError
from pipeline.kafka.acls import required, used_topics
from pipeline.kafka.admin import ensure_topics, make_producer, start_with_retry, topic_catalog
from pipeline.kafka.reading import drain, latest_by_key, partitions, reader, start_offsets, whole_topic
from pipeline.kafka.runtime import Outbox, limits, send_dead_letter
from pipeline.rules import cache
from pipeline.rules.runs import Budget, Sighting, detected
from pipeline.settings import Settings
from pipeline.stages.intake import Accepted, Rejected, Skipped, lookup_record, parse, skip_summary

log = logging.getLogger("vtstream.replay.driver")

@dataclass(frozen=True)
class ReplayOptions:
    """One invocation of ``vtstream replay``: the run, its range (epoch seconds) and its limits."""

    run: str
    topic: str
    since: float
    until: float
    budget: int | None = None
    max_age_s: float | None = None
    detected_at: int = 1
    wait: bool = True


@dataclass
class Progress:
    """Callbacks for the command line's progress bars; the defaults show nothing."""

    reading: Callable[[int], None] = lambda total: None
    read: Callable[[int], None] = lambda n: None
    waiting: Callable[[int], None] = lambda total: None
    answered: Callable[[int], None] = lambda n: None


@dataclass
class DryRun:
    """What a run over the range would do, read without calling anything."""

    records: int = 0
    valid: int = 0
    unique: int = 0
    answered: int = 0
    to_request: int = 0
    requests: int = 0
    lookup: str = ""
    #: Where reading started, per partition (the time index's answer, or 0 after a scan's start).
    starts: dict[str, int] = field(default_factory=dict)


@dataclass
class Result:
    """How an invocation ended: the run's stored state, where it stopped, and this invocation's counts."""

    state: RunState
    stopped_at: dict[str, int] = field(default_factory=dict)
    already_finished: bool = False
    unanswered: int = 0


# ------------------------------------------------------------------ reading


async def load_runs(settings: Settings) -> dict[str, RunState]:
    """Every run's last state on vt.replay.runs (empty when the topic does not exist yet);
    a record that is not a run state is logged and left out."""
    runs: dict[str, RunState] = {}
    for key, value in (await latest_by_key(settings, REPLAY_RUNS)).items():
        try:
            runs[key.decode(errors="replace")] = RunState.from_bytes(value)
        except RecordError as exc:
            log.warning("%s: %s", REPLAY_RUNS, exc)
    return runs


async def cache_snapshot(settings: Settings) -> dict[str, CachedResult]:
    """The finished cache entries, read from the cache changelog: what a run would not pay for."""
    entries: dict[str, CachedResult] = {}
    async for record in whole_topic(settings, changelog_name(settings.app_id)):
        entry = cache.decode(record.value)
        if isinstance(entry, CachedResult):
            entries[record.key.decode()] = entry
        else:
            entries.pop(record.key.decode(), None)
    return entries


def in_range(timestamp_ms: int, since: float, until: float) -> bool:
    """The run's filter, per record: its own Kafka timestamp in ``[since, until)``."""
    return since * 1000 <= timestamp_ms < until * 1000


# ------------------------------------------------------------------ dry run


async def dry_run(settings: Settings, options: ReplayOptions, now: float) -> DryRun:
    """Read the run's (remaining) range and count what it would cost; no call, no write."""
    entries = await cache_snapshot(settings)
    consumer = reader(settings, replay_group(settings.app_id, options.run))
    await start_with_retry(consumer, settings)
    counts = DryRun()
    valid: set[str] = set()
    accepted: set[str] = set()
    try:
        tps = await partitions(consumer, options.topic)
        starts, counts.lookup = await _resume_or_start(consumer, tps, options.since)
        counts.starts = {str(tp.partition): offset for tp, offset in starts.items()}
        async for tp, records in drain(consumer, starts):
            for record in records:
                if not in_range(record.timestamp, options.since, options.until):
                    continue
                counts.records += 1
                outcome = parse(record.value, f"{tp.topic}/{tp.partition}/{record.offset}", settings)
                if isinstance(outcome, Rejected):
                    continue
                counts.valid += 1
                valid.add(outcome.indicator.key)
                if isinstance(outcome, Accepted):
                    accepted.add(outcome.indicator.key)
    finally:
        await consumer.stop()
    counts.unique = len(valid)
    counts.answered = sum(1 for key in accepted if cache.answers(entries.get(key), now, options.max_age_s))
    counts.to_request = len(accepted) - counts.answered
    counts.requests = counts.to_request * settings.vt.requests_per_lookup
    return counts


async def _resume_or_start(consumer: AIOKafkaConsumer, tps: list[TopicPartition], since: float
                           ) -> tuple[dict[TopicPartition, int], str]:
    """The group's committed offsets where it has them (a resumed run), else the start for ``since``."""
    committed = {tp: await consumer.committed(tp) for tp in tps}
    if all(offset is not None for offset in committed.values()):
        return {tp: int(offset) for tp, offset in committed.items() if offset is not None}, "resumed"
    starts, method = await start_offsets(consumer, tps, since)
    return {tp: committed[tp] if committed[tp] is not None else starts[tp] for tp in tps}, method


# ------------------------------------------------------------------ the run


class _Answers:
    """Follows vt.responses and indicators.enriched for the run's own records."""

    def __init__(self, run: str, budget: Budget, sightings: dict[str, Sighting], progress: Progress) -> None:
        self.run, self.budget, self.sightings, self.progress = run, budget, sightings, progress
        self.awaiting: dict[str, str] = {}  # ref -> indicator key, fed and not finally answered
        self.fed: set[str] = set()
        self.cache_hits = self.vt_requests = self.dead = 0

    def expect(self, ref: str, key: str) -> None:
        self.awaiting[ref] = key
        self.fed.add(ref)

    def take(self, topic: str, value: bytes | None) -> None:
        if not value:
            return
        if topic == RESPONSES:
            try:
                answer = VtResponse.from_bytes(value)
            except RecordError:
                return
            if answer.origin.replay == self.run and answer.origin.ref in self.fed:
                self.vt_requests += answer.requests
                self.budget.answered(answer.indicator.key, answer.requests)
                if answer.status == "error":
                    self.dead += 1
            return
        try:
            event = SummaryEvent.from_bytes(value)
        except RecordError:
            return
        if event is None or event.replay != self.run or event.origin is None:
            return
        card, ref = event.card, event.origin.ref
        if card.pending or ref not in self.awaiting:
            return
        key = self.awaiting.pop(ref)
        self.budget.settled(key)
        if card.cached:
            self.cache_hits += 1
        sighting = self.sightings.get(key)
        if sighting is not None and card.checked:
            sighting.positives, sighting.total = card.positives, card.total
        self.progress.answered(1)


@dataclass
class _Tally:
    """The run as this invocation goes: the stored state's counts plus what it did so far."""

    state: RunState
    records: int = 0
    skipped: int = 0
    dead: int = 0

    def snapshot(self, answers: "_Answers", **changes: Any) -> RunState:
        s = self.state
        return replace(s, records=s.records + self.records, skipped=s.skipped + self.skipped,
                       dead=s.dead + self.dead + answers.dead, cache_hits=s.cache_hits + answers.cache_hits,
                       vt_requests=s.vt_requests + answers.vt_requests, **changes)


async def run_replay(settings: Settings, options: ReplayOptions, *, clock: Callable[[], float] = time.time,
                     stop: asyncio.Event | None = None, progress: Progress | None = None) -> Result:
    """Feed the run's range (from where it stopped) into the pipeline; wait for the answers unless told not to."""
    stop = stop or asyncio.Event()
    progress = progress or Progress()
    needs = required("replay", settings, topic=options.topic, run=options.run)
    await ensure_topics(settings, used_topics(topic_catalog(settings), needs))  # vt.replay.runs compacted, 1 partition
    runs = await load_runs(settings)
    state = runs.get(options.run) or RunState(options.run, options.topic, options.since, options.until)
    if state.topic != options.topic:
        raise ConfigError(f"run {options.run!r} replays {state.topic}, not {options.topic}; pick another --run")
    if state.state == FINISHED:
        return Result(state, already_finished=True)
    entries = await cache_snapshot(settings)
    budget = Budget(options.budget, settings.vt.requests_per_lookup)
    sightings: dict[str, Sighting] = {}
    answers = _Answers(options.run, budget, sightings, progress)
    producer = make_producer(settings)
    source = reader(settings, replay_group(settings.app_id, options.run))
    follower = reader(settings)
    for client in (producer, source, follower):
        await start_with_retry(client, settings)
    try:
        out_tps = [*await partitions(follower, ENRICHED), *await partitions(follower, RESPONSES)]
        follower.assign(out_tps)
        await follower.seek_to_end(*out_tps)
        for tp in out_tps:
            await follower.position(tp)
        reading_done = asyncio.Event()
        following = asyncio.ensure_future(_follow(follower, answers, reading_done, stop, options.wait))
        tally = _Tally(state)
        try:
            result = await _feed(settings, options, clock, tally, entries, budget, answers, sightings, producer,
                                 source, progress, stop)
        finally:
            reading_done.set()
        if options.wait and not stop.is_set():
            progress.waiting(len(answers.fed))
        await following
        ended = tally.state.state
        if stop.is_set() and ended == READING:
            ended = INTERRUPTED
        final = tally.snapshot(answers, state=ended,
                               detected=detected(sightings, tally.state.detected, options.detected_at))
        result = replace(result, state=await _save(producer, final, clock()), unanswered=len(answers.awaiting))
        return result
    finally:
        for client in (follower, source, producer):
            await client.stop()


async def _follow(follower: AIOKafkaConsumer, answers: _Answers, reading_done: asyncio.Event,
                  stop: asyncio.Event, wait: bool) -> None:
    """Take answers until reading is over and (when waiting) every fed record is answered."""
    while not stop.is_set():
        if reading_done.is_set() and (not wait or not answers.awaiting):
            return
        batch = await follower.getmany(timeout_ms=200, max_records=2000)
        for tp, records in batch.items():
            for record in records:
                answers.take(tp.topic, record.value)


async def _feed(settings: Settings, options: ReplayOptions, clock: Callable[[], float], tally: _Tally,
                entries: dict[str, CachedResult], budget: Budget, answers: _Answers, sightings: dict[str, Sighting],
                producer: AIOKafkaProducer, source: AIOKafkaConsumer, progress: Progress,
                stop: asyncio.Event) -> Result:
    out = Outbox(lambda topic, key, value: producer.send(topic, value, key=key), **limits(settings, "replay"))
    now = clock()
    state = tally.state
    tps = await partitions(source, options.topic)
    starts, method = await _resume_or_start(source, tps, state.since)
    tally.state = await _save(producer, replace(state, lookup=state.lookup or method, state=READING), now)
    listed = await source.end_offsets(tps)
    progress.reading(sum(max(0, listed[tp] - starts[tp]) for tp in tps))
    stopped_at: dict[str, int] = {}
    seen: set[str] = set()  # indicator keys this invocation fed (repeats cost nothing)
    async for tp, records in drain(source, starts, stop.is_set):
        position = records[0].offset
        for record in records:
            ref = f"{tp.topic}/{tp.partition}/{record.offset}"
            if in_range(record.timestamp, state.since, state.until):
                if not await _feed_one(settings, options, now, out, record, ref, entries, budget, answers,
                                       sightings, seen, tally):
                    stopped_at = {f"{tp.topic}/{tp.partition}": record.offset}
                    break
            position = record.offset + 1
        progress.read(position - records[0].offset)
        await out.flush()  # forward first, then commit
        await source.commit({tp: position})
        spent = bool(stopped_at)
        tally.state = replace(tally.state, position={**tally.state.position, str(tp.partition): position},
                              state=BUDGET_SPENT if spent else tally.state.state)
        await _save(producer, tally.snapshot(answers), clock())
        if spent:
            break
    if tally.state.state == READING and not stop.is_set():
        tally.state = replace(tally.state, state=FINISHED)
    tally.state = replace(tally.state, unique=tally.state.unique + len(seen))
    return Result(tally.state, stopped_at=stopped_at)


async def _feed_one(settings: Settings, options: ReplayOptions, now: float, out: Outbox, record: Any, ref: str,
                    entries: dict[str, CachedResult], budget: Budget, answers: _Answers,
                    sightings: dict[str, Sighting], seen: set[str], tally: _Tally) -> bool:
    """Route one in-range record; False (nothing sent) when the budget cannot pay for it."""
    outcome = parse(record.value, ref, settings)
    if isinstance(outcome, Rejected):
        await send_dead_letter(out, "replay", record.key, record.value, ref, settings.privacy, reason=outcome.reason)
        tally.records += 1
        tally.dead += 1
        return True
    outcome = replace(outcome, origin=replace(outcome.origin, replay=options.run))
    key = outcome.indicator.key
    if isinstance(outcome, Skipped):
        await out.send(ENRICHED, key, skip_summary(outcome, settings.vt.api_version))
        tally.records += 1
        tally.skipped += 1
        seen.add(key)
        return True
    paid = key in seen or cache.answers(entries.get(key), now, options.max_age_s)
    if not paid and not budget.reserve(key):
        return False
    seen.add(key)
    tally.records += 1
    sighting = sightings.setdefault(key, Sighting(outcome.indicator))
    sighting.seen(record.timestamp / 1000, outcome.origin.source)
    answers.expect(ref, key)
    await out.send(LOOKUPS, key, lookup_record(outcome, options.max_age_s))
    return True


async def _save(producer: AIOKafkaProducer, state: RunState, now: float) -> RunState:
    """Store the run's state on vt.replay.runs; the state as stored."""
    stored = replace(state, updated_at=now)
    await producer.send_and_wait(REPLAY_RUNS, stored.to_bytes(), key=state.run.encode())
    return stored


def describe_position(position: Iterable[tuple[str, int]]) -> str:
    """'partition 0 at 120, partition 1 at 98'."""
    return ", ".join(f"partition {p} at {offset}" for p, offset in position) or "-"
