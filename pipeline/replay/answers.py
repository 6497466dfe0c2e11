"""What the pipeline answers a replay run, as the run's driver follows it.

One group-less consumer reads three topics from where the run left them:

- ``vt.responses``: what each answer to the run's work cost. Every request is
  counted (``vt_requests``) and charged to the reservation that covers it; a
  final answer (found, not found, error) ends that work, so what it did not
  spend goes back to the budget.
- ``indicators.enriched``: each fed record's final summary. It answers the
  record, gives the run the indicator's verdict, and releases the reservation of
  a record that needed no request after all (a cache hit or a join at the lookup
  stage).
- the cache table's changelog: the run's copy of the cache (:class:`CacheCopy`),
  so a record whose answer is cached is answered by the driver in one hop, and
  an indicator answered during the run is a cache hit for its later sightings.

Records filtered on the way are decoded only when their bytes name the run.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Mapping

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from topics import ENRICHED, RESPONSES

from pipeline.contracts.events import SummaryEvent
from pipeline.contracts.indicator import Indicator
from pipeline.contracts.wire import VtResponse
from pipeline.errors import RecordError
from pipeline.kafka.replica import CacheCopy
from pipeline.replay.ledger import Ledger
from pipeline.rules.runs import Budget
from pipeline.stages.lookup import OVERFLOW_REASON


class Answers:
    """The run's answers as they arrive; see the module docstring."""

    def __init__(self, run: str, budget: Budget, ledger: Ledger, copy: CacheCopy, earlier: int,
                 on_answered: Callable[[int], None], clock: Callable[[], float] = time.time) -> None:
        self.run, self.budget, self.ledger, self.copy, self.clock = run, budget, ledger, copy, clock
        self.on_answered = on_answered
        self.awaiting: dict[str, str] = {}  # ref -> indicator key: fed to vt.lookups, no final summary yet
        self.covering: dict[str, str] = {}  # indicator key -> the ref whose reservation covers its work
        self.earlier = earlier  # records an earlier invocation fed that still wait for their answers
        self.cache_hits = self.vt_requests = self.errors = 0
        self.changed = asyncio.Event()  # an answer arrived: a reservation may be free, a record answered
        self._mark = orjson.dumps({"replay": run})[1:-1]  # '"replay":"<run>"', in every record of the run
        self.at: dict[TopicPartition, int] = {}  # next offset per followed partition, as far as taken

    @property
    def unanswered(self) -> int:
        return len(self.awaiting) + self.earlier

    def expect(self, ref: str, key: str, reserved: bool) -> None:
        """``ref`` went to vt.lookups; ``reserved``: its reservation covers its indicator's work."""
        self.awaiting[ref] = key
        if reserved:
            self.covering[key] = ref

    def take(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """One record of a followed topic."""
        if topic == RESPONSES:
            if value and self._mark in value:
                self._response(value)
        elif topic == ENRICHED:
            if value and self._mark in value and b'"kind":"summary"' in value and self._awaited(value):
                self._summary(value)
        elif key is not None:
            self.copy.apply(key, value)

    def _awaited(self, value: bytes) -> bool:
        """Whether a summary of the run may answer a record still waiting, read off its bytes: the
        driver's own cache hits come back here too, by the hundred thousand, and need no decoding.
        The origin follows the card in a summary, so the last ``"ref":"`` is the origin's (a ref is
        topic/partition/offset: no quote or escape in it)."""
        if self.earlier > 0:
            return True
        at = value.rfind(b'"ref":"')
        if at < 0:
            return False
        end = value.find(b'"', at + 7)
        return value[at + 7:end].decode(errors="replace") in self.awaiting

    def _response(self, value: bytes) -> None:
        try:
            answer = VtResponse.from_bytes(value)
        except RecordError:
            return
        if answer.origin.replay != self.run or answer.origin.ref is None:
            return
        self.vt_requests += answer.requests
        self.budget.spend(answer.origin.ref, answer.requests)
        if answer.status == "error":
            self.errors += 1
        if answer.status != "pending":
            self._work_over(answer.origin.ref, answer.indicator.key)

    def _summary(self, value: bytes) -> None:
        try:
            event = SummaryEvent.from_bytes(value)
        except RecordError:
            return
        if event is None or event.replay != self.run or event.origin is None or event.origin.ref is None:
            return
        card, ref = event.card, event.origin.ref
        if card.pending and card.reason != OVERFLOW_REASON:  # the final summary follows
            return
        sent = Indicator("url", card.sent_as) if card.sent_as else event.indicator
        key = self.awaiting.pop(ref, None)
        if key is None:  # fed by an earlier invocation (or a repeat of an answer already taken)
            if self.earlier <= 0:
                return
            self.earlier -= 1
            key = sent.key
        if card.cached:
            self.cache_hits += 1
        if card.cached or card.coalesced:  # answered without a request of its own
            self._work_over(ref, key)
        if card.checked:
            self.ledger.answered(sent, card.positives, card.total, self.clock())
        self.on_answered(1)
        self.changed.set()

    def _work_over(self, ref: str, key: str) -> None:
        self.budget.release(ref)
        if self.covering.get(key) == ref:
            del self.covering[key]
        self.changed.set()


    def positions(self) -> dict[str, int]:
        """Where following stands on the answer topics (``topic/partition`` -> next offset), taken
        together with the counts: the next invocation goes on from there."""
        return {f"{tp.topic}/{tp.partition}": offset for tp, offset in self.at.items()
                if tp.topic in (ENRICHED, RESPONSES)}  # not the changelog: each invocation reads it whole


async def follow(consumer: AIOKafkaConsumer, answers: Answers, done: Callable[[], bool]) -> None:
    """Hand every record of ``consumer`` to ``answers`` until ``done()``."""
    while not done():
        batch = await consumer.getmany(timeout_ms=100, max_records=5000)
        for tp, records in batch.items():
            for record in records:
                answers.take(tp.topic, record.key, record.value)
            answers.at[tp] = records[-1].offset + 1


def stored_start(stored: Mapping[str, int], tp: TopicPartition) -> int | None:
    """Where an earlier invocation stopped following ``tp``, if it did."""
    return stored.get(f"{tp.topic}/{tp.partition}")
