"""Replay driver: a past time range of a raw-indicator topic -> the pipeline, at replay priority.

``vtstream replay`` drives it. A run reads its source topic as consumer group
``<app id>.replay.<run>`` (:func:`topics.replay_group`): the group's committed
offsets are the resume point, and the run's range, position, counts and state
live on the compacted topic ``vt.replay.runs`` for ``vtstream status``; what it
saw of each indicator, on ``vt.replay.sightings`` (:mod:`pipeline.replay.ledger`).
Every invocation adds to the same state, so a run resumed three times reports
as one.

Where a run starts: the broker's ``offsets_for_times`` for ``--from``, when
the record at the answered offset carries the answered timestamp (Kafka's
contract); otherwise, as on the embedded broker, which answers offset 0 for
any time, the partition is scanned from its beginning. Either way every record
is filtered by its own timestamp, since an archive's timestamps need not be
monotonic: the looked-up offset is only a place to start.

Each in-range record goes through intake's parsing with ``replay: <run>`` in
its origin: bad records to vt.dead, policy skips straight to a summary. A
record whose answer is in the cache is answered here, in one hop, as intake
answers a live cache hit: the driver keeps its own copy of the cache
(:class:`~pipeline.kafka.replica.CacheCopy`, followed on the changelog). Only
the rest go to vt.lookups (with ``max_age_s`` for ``--max-age``), where the
lookup stage sends misses to the replay lane ``vt.replay``.

``--budget N`` is a ceiling: before a miss is fed, its indicator's worst case
is reserved (:func:`~pipeline.rules.runs.worst_case`) and travels with it as
the gateway's allowance; when the next one does not fit, the driver waits for
reservations to come back and, when none is left to wait for, stops reading.
Forward first, then commit: outputs are acknowledged before the state is saved
and the offsets committed, at least once a second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from topics import ENRICHED, LOOKUPS, REPLAY_RUNS, REPLAY_SIGHTINGS, RESPONSES, changelog_name, replay_group

from pipeline.contracts.card import SummaryCard
from pipeline.contracts.events import SummaryEvent
from pipeline.contracts.indicator import Indicator
from pipeline.contracts.run_state import (BUDGET_SPENT, FINISHED, INTERRUPTED, READING, WAITING, DetectedRow,
                                          RunState)
from pipeline.errors import ConfigError, RecordError
from pipeline.kafka.acls import required, used_topics
from pipeline.kafka.admin import ensure_topics, make_producer, start_with_retry, topic_catalog
from pipeline.kafka.direct import BATCH_BYTES, BatchOutbox
from pipeline.kafka.reading import drain, latest_by_key, partitions, reader, start_offsets
from pipeline.kafka.replica import CacheCopy
from pipeline.kafka.runtime import limits, send_dead_letter
from pipeline.replay.answers import Answers, follow, stored_start
from pipeline.replay.ledger import Ledger, read_rows
from pipeline.rules import cache
from pipeline.rules.policy import carries_any_label
from pipeline.rules.runs import Budget, UniqueCount, report_rows, worst_case
from pipeline.settings import Settings
from pipeline.stages.intake import Accepted, Rejected, Repeats, Skipped, parse, skip_summary

log = logging.getLogger("vtstream.replay.driver")

#: Longest the driver goes without saving the run's state and committing what it fed.
CHECKPOINT_EVERY_S = 1.0
#: Records per fetch of the source range.
READ_BATCH = 2000


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
class Result:
    """How an invocation ended: the run's stored state, its detected indicators, where it stopped."""

    state: RunState
    detected: tuple[DetectedRow, ...] = ()
    stopped_at: dict[str, int] = field(default_factory=dict)
    already_finished: bool = False


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


async def detected_rows(settings: Settings, state: RunState, threshold: int) -> tuple[DetectedRow, ...]:
    """The run's detected indicators over every invocation (rows on vt.replay.sightings, added up)."""
    return report_rows(await read_rows(settings, state.run), state.detected, threshold)


def in_range(timestamp_ms: int, since: float, until: float) -> bool:
    """The run's filter, per record: its own Kafka timestamp in ``[since, until)``."""
    return since * 1000 <= timestamp_ms < until * 1000


async def resume_or_start(consumer: AIOKafkaConsumer, tps: list[TopicPartition], since: float
                          ) -> tuple[dict[TopicPartition, int], str]:
    """The group's committed offsets where it has them (a resumed run), else the start for ``since``."""
    committed = {tp: await consumer.committed(tp) for tp in tps}
    if all(offset is not None for offset in committed.values()):
        return {tp: int(offset) for tp, offset in committed.items() if offset is not None}, "resumed"
    starts, method = await start_offsets(consumer, tps, since)
    return {tp: committed[tp] if committed[tp] is not None else starts[tp] for tp in tps}, method


def upload_bytes(outcome: Accepted, settings: Settings) -> int | None:
    """The size of the file this sighting may upload (its labels allow it), else None."""
    if outcome.file is None or not carries_any_label(list(outcome.origin.labels), settings.policy.upload_labels):
        return None
    return outcome.file.size


# ------------------------------------------------------------------ the run


async def run_replay(settings: Settings, options: ReplayOptions, *, clock: Callable[[], float] = time.time,
                     stop: asyncio.Event | None = None, progress: Progress | None = None) -> Result:
    """Feed the run's range (from where it stopped) into the pipeline; wait for the answers unless told not to."""
    stop = stop or asyncio.Event()
    progress = progress or Progress()
    needs = required("replay", settings, topic=options.topic, run=options.run)
    await ensure_topics(settings, used_topics(topic_catalog(settings), needs))  # vt.replay.runs, .sightings
    state = (await load_runs(settings)).get(options.run) or RunState(options.run, options.topic, options.since,
                                                                      options.until)
    if state.topic != options.topic:
        raise ConfigError(f"run {options.run!r} replays {state.topic}, not {options.topic}; pick another --run")
    if state.state == FINISHED:
        return Result(state, await detected_rows(settings, state, options.detected_at), already_finished=True)
    producer = make_producer(settings, linger_ms=1, max_batch_size=BATCH_BYTES)
    source = reader(settings, replay_group(settings.app_id, options.run))
    follower = reader(settings)
    for client in (producer, source, follower):
        await start_with_retry(client, settings)
    try:
        invocation = _Invocation(settings, options, clock, stop, progress, state, producer, source, follower)
        result = await invocation.run()
    finally:
        for client in (follower, source, producer):
            await client.stop()
    return replace(result, detected=await detected_rows(settings, result.state, options.detected_at))


class _Invocation:
    """One invocation of a run: feeds the range, follows the answers, checkpoints the state."""

    def __init__(self, settings: Settings, options: ReplayOptions, clock: Callable[[], float], stop: asyncio.Event,
                 progress: Progress, state: RunState, producer: AIOKafkaProducer, source: AIOKafkaConsumer,
                 follower: AIOKafkaConsumer) -> None:
        self.settings, self.options, self.clock, self.stop, self.progress = settings, options, clock, stop, progress
        self.producer, self.source, self.follower = producer, source, follower
        self.base = replace(state, invocations=state.invocations + 1)
        self.unique = UniqueCount.of(state.unique_sketch)
        self.ledger = Ledger(options.run, self.base.invocations, self.unique)
        self.budget = Budget(options.budget)
        self.copy = CacheCopy(settings.cache.copy_entries, settings.cache.copy_max_bytes)
        self.answers = Answers(options.run, self.budget, self.ledger, self.copy, state.unanswered, progress.answered,
                               clock)
        self.out = BatchOutbox(producer, lambda topic, value: None, **limits(settings, "replay"))
        self.acks: list[Any] = []
        self.records = self.skipped = self.dead = self.hits = 0
        self.position: dict[str, int] = dict(state.position)
        self.api = settings.vt.api_version
        self.repeats = Repeats(settings, self.api)
        self.summary_tps: list[TopicPartition] = []
        self.skipping = False  # summaries not followed: no record of the run waits for one

    async def run(self) -> Result:
        await self._follow_from(self.base)
        feeding_done = asyncio.Event()
        wait = self.options.wait
        following = asyncio.ensure_future(follow(self.follower, self.answers, lambda: self.stop.is_set() or (
            feeding_done.is_set() and (not wait or not self.answers.unanswered))))
        try:
            stopped_at, ended = await self._feed()
        except BaseException:
            following.cancel()
            raise
        finally:
            feeding_done.set()
        if wait and not self.stop.is_set():
            self.progress.waiting(self.answers.unanswered)
        await following
        if self.stop.is_set() and ended == READING:
            ended = INTERRUPTED
        elif ended == READING:
            ended = FINISHED if not self.answers.unanswered else WAITING
        return Result(await self._checkpoint(ended), stopped_at=stopped_at)

    async def _follow_from(self, state: RunState) -> None:
        """Read the cache changelog into the copy, then follow it and the answer topics from where the
        run left them (a new run: from their end)."""
        follower = self.follower
        # every partition first: once the consumer is assigned, its metadata covers only what it reads
        log_tps = await partitions(follower, changelog_name(self.settings.app_id))
        self.summary_tps = await partitions(follower, ENRICHED)
        out_tps = [*self.summary_tps, *await partitions(follower, RESPONSES)]
        async for _tp, records in drain(follower, await follower.beginning_offsets(log_tps)):
            for record in records:
                if record.key is not None:
                    self.copy.apply(record.key, record.value)
        log_at = {tp: await follower.position(tp) for tp in log_tps}
        follower.assign([*out_tps, *log_tps])
        follower.resume(*log_tps)  # the drain paused them at their end
        ends = await follower.end_offsets(out_tps)
        for tp in out_tps:
            at = stored_start(state.answers_from, tp)
            self.answers.at[tp] = at if at is not None else ends[tp]
        for tp, at in {**log_at, **{tp: self.answers.at[tp] for tp in out_tps}}.items():
            follower.seek(tp, at)

    async def _feed(self) -> tuple[dict[str, int], str]:
        """Feed the range from the resume point; (where it stopped for the budget, the state it ended in)."""
        options, source = self.options, self.source
        tps = await partitions(source, options.topic)
        starts, method = await resume_or_start(source, tps, self.base.since)
        self.base = replace(self.base, lookup=self.base.lookup or method, state=READING)
        await self._checkpoint(READING)
        listed = await source.end_offsets(tps)
        self.progress.reading(sum(max(0, listed[tp] - starts[tp]) for tp in tps))
        since_ms, until_ms = self.base.since * 1000, self.base.until * 1000
        next_checkpoint = self.clock() + CHECKPOINT_EVERY_S
        async for tp, records in drain(source, starts, self.stop.is_set, max_records=READ_BATCH):
            now, prefix = self.clock(), f"{tp.topic}/{tp.partition}/"
            position = records[0].offset
            for record in records:
                if since_ms <= record.timestamp < until_ms and not await self._one(record, prefix, now):
                    self.position[str(tp.partition)] = record.offset
                    self.progress.read(record.offset - records[0].offset)
                    if self.stop.is_set():
                        return {}, READING
                    return {f"{tp.topic}/{tp.partition}": record.offset}, BUDGET_SPENT
                position = record.offset + 1
            self.position[str(tp.partition)] = position
            self.progress.read(position - records[0].offset)
            self.acks += await self.out.submit()
            self._skip_summaries()
            if self.clock() >= next_checkpoint:
                await self._checkpoint(READING)
                next_checkpoint = self.clock() + CHECKPOINT_EVERY_S
            await asyncio.sleep(0)  # the answers' follower runs
        return {}, READING

    async def _one(self, record: Any, prefix: str, now: float) -> bool:
        """Route one in-range record; False (nothing sent) when the budget cannot pay for it."""
        ref = prefix + str(record.offset)
        sighting = self.repeats.read(record.value)
        if sighting is not None:  # a plain record: answered here in one step if the cache answers it
            plain, _id, source, _observed_at = sighting
            entry = self.copy.finished(plain.key_bytes)
            if entry is not None and cache.answers(entry, now, self.options.max_age_s):
                summary = self.repeats.encode(sighting, entry, ref, None, self.options.run)
                if not self.out.put(ENRICHED, plain.key_bytes, summary):
                    await self.out.send(ENRICHED, plain.key_bytes, summary)
                self._answered(plain.indicator, entry.hit_card(), record.timestamp, source, now)
                return True
        outcome = parse(record.value, ref, self.settings, self.options.run)
        if isinstance(outcome, Rejected):
            await send_dead_letter(self.out, "replay", record.key, record.value, ref, self.settings.privacy,
                                   reason=outcome.reason)
            self.records += 1
            self.dead += 1
            return True
        origin = outcome.origin
        indicator = outcome.indicator
        key = indicator.key
        if isinstance(outcome, Skipped):
            await self.out.send(ENRICHED, key, skip_summary(outcome, self.api))
            self.records += 1
            self.skipped += 1
            self.unique.add(key)
            return True
        entry = self.copy.finished(key.encode()) if outcome.file is None else None
        if entry is not None and cache.answers(entry, now, self.options.max_age_s):
            card = entry.hit_card()  # answered here, as intake answers a live cache hit
            await self.out.send(ENRICHED, key, SummaryEvent.of(card, indicator=indicator, action=outcome.action,
                                                               api=self.api, origin=origin))
            self._answered(indicator, card, record.timestamp, origin.source, now)
            return True
        allowance = await self._reserve(outcome, ref, key)
        if allowance is False:
            return False
        await self._follow_summaries()
        self.ledger.seen(indicator, record.timestamp / 1000, origin.source)
        self.records += 1
        await self.out.send(LOOKUPS, key, replace(outcome, max_age_s=self.options.max_age_s, allowance=allowance))
        return True

    def _answered(self, indicator: Indicator, card: SummaryCard, timestamp_ms: int, source: str | None,
                  now: float) -> None:
        """A record answered from the cache: its sighting and its verdict reach the run's ledger."""
        self.ledger.seen(indicator, timestamp_ms / 1000, source).answered(card.positives, card.total, now)
        self.records += 1
        self.hits += 1

    def _skip_summaries(self) -> None:
        """Stop reading indicators.enriched while no record of the run waits for its summary: most of
        what it holds then is the driver's own cache hits, and reading them back cost a tenth of its time."""
        if self.skipping or self.answers.awaiting or self.answers.earlier:
            return
        self.follower.pause(*self.summary_tps)
        for tp in self.summary_tps:  # nothing before the end matters: the next invocation starts there
            self.answers.at.pop(tp, None)
        self.skipping = True

    async def _follow_summaries(self) -> None:
        """Before a record goes to vt.lookups: follow the summaries again from their end (its own comes later)."""
        if not self.skipping:
            return
        ends = await self.follower.end_offsets(self.summary_tps)
        for tp in self.summary_tps:
            self.follower.seek(tp, ends[tp])
            self.answers.at[tp] = ends[tp]
        self.follower.resume(*self.summary_tps)
        self.skipping = False

    async def _reserve(self, outcome: Accepted, ref: str, key: str) -> int | None | bool:
        """The allowance to send with a miss (None: no budget), after reserving its worst case when no
        reservation covers its indicator yet; False when the budget cannot pay for it."""
        budget, answers = self.budget, self.answers
        if key in answers.covering:  # joins the work already reserved for it
            answers.expect(ref, key, reserved=False)
            return None if budget.cap is None else 0
        cost = _worst_case(outcome.action, outcome.indicator.type, upload_bytes(outcome, self.settings),
                           self.settings)
        while not budget.fits(cost):
            if not budget.holding or not self.options.wait or self.stop.is_set():
                return False
            self.acks += await self.out.submit()  # what waits for an answer must be on its way
            answers.changed.clear()
            await _wait_either(answers.changed, self.stop)
        budget.reserve(ref, cost)
        answers.expect(ref, key, reserved=True)
        return None if budget.cap is None else cost

    async def _checkpoint(self, ended: str) -> RunState:
        """Forward first, then save: the outputs are acknowledged, the sightings written, the state
        saved and the offsets committed; the state as stored."""
        self.acks += await self.out.submit()
        await asyncio.gather(*self.acks)
        self.acks = []
        for row in self.ledger.rows():
            await self.out.send(REPLAY_SIGHTINGS, row.key, row)
        await self.out.flush()
        state = self._snapshot(ended)
        await self.producer.send_and_wait(REPLAY_RUNS, state.to_bytes(), key=state.run.encode())
        assigned = self.source.assignment()  # nothing before reading starts: nothing new to commit
        commits = {tp: offset for p, offset in self.position.items()
                   if (tp := TopicPartition(self.options.topic, int(p))) in assigned}
        if commits:
            await self.source.commit(commits)
        return state

    def _snapshot(self, ended: str) -> RunState:
        """The run's state now: the stored counts plus this invocation's (one synchronous step, so the
        answers' counts and positions agree)."""
        b, a = self.base, self.answers
        return replace(b, state=ended, position=dict(self.position), records=b.records + self.records,
                       skipped=b.skipped + self.skipped, dead=b.dead + self.dead + a.errors,
                       cache_hits=b.cache_hits + self.hits + a.cache_hits, vt_requests=b.vt_requests + a.vt_requests,
                       unique=self.unique.estimate(), unique_sketch=self.unique.to_bytes(),
                       answers_from=a.positions(), unanswered=a.unanswered, updated_at=self.clock())


@lru_cache(maxsize=256)
def _worst_case(action: str, kind: str, upload: int | None, settings: Settings) -> int:
    return worst_case(action, kind, settings.vt, settings.retry, upload)


async def _wait_either(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()


def describe_position(position: Iterable[tuple[str, int]]) -> str:
    """'partition 0 at 120, partition 1 at 98'."""
    return ", ".join(f"partition {p} at {offset}" for p, offset in position) or "-"
