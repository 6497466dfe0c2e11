"""Replay stage: a past time range of a raw-indicator topic -> the pipeline, at replay priority.

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
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from topics import DEAD, ENRICHED, LOOKUPS, REPLAY_RUNS, RESPONSES, changelog_name, replay_group

from pipeline.contracts.cache_entry import CachedResult
from pipeline.contracts.origin import origin_ref, origin_replay
from pipeline.contracts.wire import VtResponse
from pipeline.errors import ConfigError, RecordError
from pipeline.events import dead_letter
from pipeline.kafka.admin import ensure_topics, make_consumer, make_producer, start_with_retry, topic_catalog
from pipeline.kafka.runtime import Outbox
from pipeline.rules import cache
from pipeline.rules.replay import (BUDGET_SPENT, FINISHED, INTERRUPTED, READING, Budget, RunState, Sighting,
                                   detected, requests_per_lookup)
from pipeline.settings import Settings
from pipeline.stages.intake import Accepted, Rejected, Skipped, lookup_record, parse, skip_summary

log = logging.getLogger("vtstream.replay")

#: Rounds of empty fetches after which a partition whose broker never reported a high watermark counts as read.
_IDLE_ROUNDS = 10


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


@dataclass
class Result:
    """How an invocation ended: the run's stored state, where it stopped, and this invocation's counts."""

    state: RunState
    stopped_at: dict[str, int] = field(default_factory=dict)
    already_finished: bool = False
    unanswered: int = 0


# ------------------------------------------------------------------ reading


def _consumer(settings: Settings, group: str | None = None) -> AIOKafkaConsumer:
    return make_consumer(settings, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest")


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions, without naming it in a metadata request (that would auto-create it)."""
    if topic not in await consumer.topics():
        raise ConfigError(f"topic {topic} does not exist")
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


async def drain(consumer: AIOKafkaConsumer, starts: dict[TopicPartition, int],
                should_stop: Callable[[], bool] = lambda: False
                ) -> AsyncIterator[tuple[TopicPartition, list[Any]]]:
    """Yield each partition's records from ``starts`` to the end the broker reports on the first fetch.

    The end comes from the fetch's high watermark, not only ListOffsets: the
    embedded broker answers ListOffsets with the last batch's base offset + 1.
    Records appended after that first fetch are left for a later run.
    """
    if not starts:
        return
    consumer.assign(list(starts))
    listed = await consumer.end_offsets(list(starts))
    for tp, start in starts.items():
        consumer.seek(tp, start)
    ends: dict[TopicPartition, int] = {}
    pending, idle = set(starts), 0
    while pending and not should_stop():
        batch = await consumer.getmany(*pending, timeout_ms=300, max_records=500)
        idle = 0 if batch else idle + 1
        for tp in list(pending):
            highwater = consumer.highwater(tp)
            if highwater is not None:
                ends.setdefault(tp, max(listed[tp], highwater))
        for tp, records in batch.items():
            end = ends.get(tp, listed[tp])
            records = [r for r in records if r.offset < end]
            if records:
                yield tp, records
        for tp in list(pending):
            end = ends.get(tp)
            if (end is not None and await consumer.position(tp) >= end) or idle >= _IDLE_ROUNDS:
                pending.discard(tp)
                consumer.pause(tp)


async def start_offsets(consumer: AIOKafkaConsumer, tps: list[TopicPartition], since: float
                        ) -> tuple[dict[TopicPartition, int], str]:
    """Where to start reading for records at or after ``since``, and how it was found.

    ``offsets_for_times`` is used only when the broker's answer checks out (the
    record at the answered offset has the answered timestamp); else scan from
    the beginning.
    """
    begin = await consumer.beginning_offsets(tps)
    try:
        found = await consumer.offsets_for_times({tp: int(since * 1000) for tp in tps})
    except Exception as exc:  # UnsupportedVersionError and friends: the broker cannot say
        log.info("offsets_for_times not supported (%r); scanning", exc)
        return dict(begin), "scan"
    answered = {tp: hit for tp, hit in found.items() if hit is not None}
    if not answered:
        return dict(begin), "scan"
    consumer.assign(list(answered))
    for tp, hit in answered.items():
        consumer.seek(tp, hit.offset)
        batch = await consumer.getmany(tp, timeout_ms=2000, max_records=1)
        records = batch.get(tp, [])
        if not records or records[0].offset != hit.offset or records[0].timestamp != hit.timestamp:
            return dict(begin), "scan"
    listed = await consumer.end_offsets(tps)
    return {tp: answered[tp].offset if tp in answered else listed[tp] for tp in tps}, "offsets_for_times"


async def _whole_topic(settings: Settings, topic: str) -> AsyncIterator[Any]:
    """Every keyed record of ``topic`` from its beginning to its end (nothing when it does not exist)."""
    consumer = _consumer(settings)
    await start_with_retry(consumer, settings)
    try:
        if topic not in await consumer.topics():
            return
        tps = await _partitions(consumer, topic)
        async for _tp, records in drain(consumer, await consumer.beginning_offsets(tps)):
            for record in records:
                if record.key is not None:
                    yield record
    finally:
        await consumer.stop()


async def load_runs(settings: Settings) -> dict[str, RunState]:
    """Every run's last state on vt.replay.runs (empty when the topic does not exist yet)."""
    runs: dict[str, RunState] = {}
    async for record in _whole_topic(settings, REPLAY_RUNS):
        name = record.key.decode()
        try:
            runs[name] = RunState.from_dict(orjson.loads(record.value))
        except (orjson.JSONDecodeError, TypeError):  # a tombstone or a foreign record
            runs.pop(name, None)
    return runs


async def cache_snapshot(settings: Settings) -> dict[str, CachedResult]:
    """The finished cache entries, read from the cache changelog: what a run would not pay for."""
    entries: dict[str, CachedResult] = {}
    async for record in _whole_topic(settings, changelog_name(settings.app_id)):
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
    consumer = _consumer(settings, replay_group(settings.app_id, options.run))
    await start_with_retry(consumer, settings)
    counts = DryRun()
    valid: set[str] = set()
    accepted: set[str] = set()
    try:
        tps = await _partitions(consumer, options.topic)
        starts, counts.lookup = await _resume_or_start(consumer, tps, options.since)
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
    counts.requests = counts.to_request * requests_per_lookup(settings)
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
            if origin_replay(answer.origin) == self.run and origin_ref(answer.origin) in self.fed:
                self.vt_requests += answer.requests
                self.budget.answered(answer.indicator.key, answer.requests)
                if answer.status == "error":
                    self.dead += 1
            return
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError:
            return
        if not isinstance(record, dict):
            return
        if record.get("kind") != "summary" or record.get("replay") != self.run:
            return
        summary = record.get("summary") or {}
        ref = (record.get("origin") or {}).get("ref")
        if summary.get("pending") or ref not in self.awaiting:
            return
        key = self.awaiting.pop(ref)
        self.budget.settled(key)
        if summary.get("cached"):
            self.cache_hits += 1
        sighting = self.sightings.get(key)
        if sighting is not None and summary.get("checked"):
            sighting.positives, sighting.total = summary.get("positives"), summary.get("total")
        self.progress.answered(1)


async def run_replay(settings: Settings, options: ReplayOptions, *, clock: Callable[[], float] = time.time,
                     stop: asyncio.Event | None = None, progress: Progress | None = None) -> Result:
    """Feed the run's range (from where it stopped) into the pipeline; wait for the answers unless told not to."""
    now = clock()
    stop = stop or asyncio.Event()
    progress = progress or Progress()
    await ensure_topics(settings, topic_catalog(settings))  # vt.replay.runs compacted, 1 partition
    runs = await load_runs(settings)
    state = runs.get(options.run) or RunState(options.run, options.topic, options.since, options.until)
    if state.topic != options.topic:
        raise ConfigError(f"run {options.run!r} replays {state.topic}, not {options.topic}; pick another --run")
    if state.state == FINISHED:
        return Result(state, already_finished=True)
    entries = await cache_snapshot(settings)
    budget = Budget(options.budget, requests_per_lookup(settings))
    sightings: dict[str, Sighting] = {}
    answers = _Answers(options.run, budget, sightings, progress)
    producer = make_producer(settings)
    source = _consumer(settings, replay_group(settings.app_id, options.run))
    follower = _consumer(settings)
    for client in (producer, source, follower):
        await start_with_retry(client, settings)
    try:
        out_tps = [*await _partitions(follower, ENRICHED), *await _partitions(follower, RESPONSES)]
        follower.assign(out_tps)
        await follower.seek_to_end(*out_tps)
        for tp in out_tps:
            await follower.position(tp)
        reading_done = asyncio.Event()
        following = asyncio.ensure_future(_follow(follower, answers, reading_done, stop, options.wait))
        try:
            result = await _feed(settings, options, clock, state, entries, budget, answers, sightings, producer,
                                 source, progress, stop)
        finally:
            reading_done.set()
        if options.wait and not stop.is_set():
            progress.waiting(len(answers.fed))
        await following
        state.cache_hits += answers.cache_hits
        state.vt_requests += answers.vt_requests
        state.dead += answers.dead
        state.detected = detected(sightings, state.detected, options.detected_at)
        if stop.is_set() and state.state == READING:
            state.state = INTERRUPTED
        result.unanswered = len(answers.awaiting)
        await _save(producer, state, clock())
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


async def _feed(settings: Settings, options: ReplayOptions, clock: Callable[[], float], state: RunState,
                entries: dict[str, CachedResult], budget: Budget, answers: _Answers, sightings: dict[str, Sighting],
                producer: AIOKafkaProducer, source: AIOKafkaConsumer, progress: Progress,
                stop: asyncio.Event) -> Result:
    out = Outbox(lambda topic, key, value: producer.send(topic, value, key=key))
    now = clock()
    tps = await _partitions(source, options.topic)
    starts, method = await _resume_or_start(source, tps, state.since)
    state.lookup = state.lookup or method
    state.state = READING
    await _save(producer, state, now)
    listed = await source.end_offsets(tps)
    progress.reading(sum(max(0, listed[tp] - starts[tp]) for tp in tps))
    result = Result(state)
    seen: set[str] = set()  # indicator keys this invocation fed (repeats cost nothing)
    async for tp, records in drain(source, starts, stop.is_set):
        position = records[0].offset
        for record in records:
            ref = f"{tp.topic}/{tp.partition}/{record.offset}"
            if in_range(record.timestamp, state.since, state.until):
                if not await _feed_one(settings, options, now, out, record, ref, entries, budget, answers,
                                       sightings, seen, state):
                    result.stopped_at = {f"{tp.topic}/{tp.partition}": record.offset}
                    state.state = BUDGET_SPENT
                    break
            position = record.offset + 1
        progress.read(position - records[0].offset)
        await out.flush()  # forward first, then commit
        await source.commit({tp: position})
        state.position[str(tp.partition)] = position
        await _save(producer, state, clock())
        if state.state == BUDGET_SPENT:
            break
    if state.state == READING and not stop.is_set():
        state.state = FINISHED
    state.unique += len(seen)
    return result


async def _feed_one(settings: Settings, options: ReplayOptions, now: float, out: Outbox, record: Any, ref: str,
                    entries: dict[str, CachedResult], budget: Budget, answers: _Answers,
                    sightings: dict[str, Sighting], seen: set[str], state: RunState) -> bool:
    """Route one in-range record; False (nothing sent) when the budget cannot pay for it."""
    outcome = parse(record.value, ref, settings)
    if isinstance(outcome, Rejected):
        await out.send(DEAD, record.key, dead_letter(record.value, stage="replay", reason=outcome.reason,
                                                               privacy=settings.url_privacy))
        state.records += 1
        state.dead += 1
        return True
    outcome.origin["replay"] = options.run
    key = outcome.indicator.key
    if isinstance(outcome, Skipped):
        await out.send(ENRICHED, key, skip_summary(outcome, settings.vt_api_version))
        state.records += 1
        state.skipped += 1
        seen.add(key)
        return True
    paid = key in seen or cache.answers(entries.get(key), now, options.max_age_s)
    if not paid and not budget.reserve(key):
        return False
    seen.add(key)
    state.records += 1
    sighting = sightings.setdefault(key, Sighting(outcome.indicator.as_dict()))
    sighting.seen(record.timestamp / 1000, outcome.origin.get("source"))
    lookup = lookup_record(outcome, options.max_age_s)
    answers.expect(ref, key)
    await out.send(LOOKUPS, key, lookup)
    return True


async def _save(producer: AIOKafkaProducer, state: RunState, now: float) -> None:
    state.updated_at = now
    await producer.send_and_wait(REPLAY_RUNS, orjson.dumps(state.to_dict()), key=state.run.encode())


def describe_position(position: Iterable[tuple[str, int]]) -> str:
    """'partition 0 at 120, partition 1 at 98'."""
    return ", ".join(f"partition {p} at {offset}" for p, offset in position) or "-"
