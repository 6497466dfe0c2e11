"""Stage 1, intake: indicators.raw -> a cached summary, vt.lookups, a skip summary, or vt.dead.

A raw record is a JSON object (``value`` plus optional ``type``, ``id``,
``source``, ``observed_at``, ``labels``, ``tags``, ``tlp``) or a bare text line such as
``8.8.8.8``. Intake decodes it, classifies and normalizes the indicator, and
runs the policy gate *before* anything can reach VirusTotal. Every outcome is a
plain value (:class:`Accepted`, :class:`Skipped`, :class:`Rejected`): no input,
however malformed, raises out of :func:`parse`.

Intake sees every record, most of them repeats, so it runs below faust
(:mod:`pipeline.kafka.direct`) and answers a repeat whose finished result is in the
worker's copy of the cache (:mod:`pipeline.kafka.replica`) itself, in one hop. Everything
else goes on to the lookup stage, which owns the cache.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any, Optional, Union

import orjson

from topics import ENRICHED, LOOKUPS, RAW, changelog_name, intake_group

from pipeline.contracts.card import SummaryCard
from pipeline.contracts.cache_entry import CachedResult
from pipeline.contracts.events import SummaryEvent, now_json
from pipeline.contracts.indicator import FileRef
from pipeline.contracts.indicator import Indicator
from pipeline.contracts.origin import LIST_FIELDS, TEXT_FIELDS, Origin, SeenAs
from pipeline.contracts.quick import quick_init
from pipeline.contracts.wire import LookupRequest
from pipeline.errors import InputError
from pipeline.inputs.files import prepare as prepare_file
from pipeline.kafka.direct import Answer, DirectStage
from pipeline.kafka.replica import CacheCopy, CacheReplica
from pipeline.kafka.runtime import Context, Outbox, Received, send_dead_letter
from pipeline.rules.gate import Verdict, judge
from pipeline.rules.indicators import classify
from pipeline.rules.labels import read_labels
from pipeline.rules.memo import Memo
from pipeline.settings import Settings

#: Longest accepted record; larger ones are dead-lettered unread (a SIEM bug, not an indicator).
MAX_RECORD_BYTES = 2 * 1024 * 1024
_MAX_LIST = 256
_MAX_LIST_ITEM = 256
_MAX_LIST_CHARS = 8192


#: A valid indicator that policy allows to send (``file`` set for submit_file events) is its
#: vt.lookups record: one class, so nothing copies the outcome field by field onto the wire.
Accepted = LookupRequest


@quick_init
@dataclass(frozen=True, slots=True)
class Skipped:
    """A valid indicator that policy keeps away from VirusTotal."""

    indicator: Indicator
    origin: Origin
    action: str
    reason: str
    rule: str


@quick_init
@dataclass(frozen=True, slots=True)
class Rejected:
    """Not an indicator; ``reason`` tells a person what to fix."""

    reason: str


Outcome = Union[Accepted, Skipped, Rejected]


def parse(raw: bytes | None, ref: str, settings: Settings, replay: str | None = None,
          received_at: float | None = None) -> Outcome:
    """Decide what to do with one raw record. ``ref`` is topic/partition/offset; ``replay``: the
    ``vtstream replay`` run that feeds it; ``received_at``: when intake read it (its origin keeps both).

    >>> from pipeline.settings import Settings
    >>> parse(b"hxxp://evil[.]example.com/x", "indicators.raw/0/7", Settings()).indicator.value
    'http://evil.example.com/x'
    """
    fields = decode(raw)
    return fields if isinstance(fields, Rejected) else judge_fields(fields, ref, settings, replay, received_at)


def decode(raw: bytes | None) -> dict[str, Any] | Rejected:
    """The record's fields, or why it is not an indicator record (cheap: no file is read)."""
    try:
        return _decode(raw)
    except InputError as exc:
        return Rejected(str(exc))


def is_file_event(fields: dict[str, Any] | Rejected) -> bool:
    """Whether decoded ``fields`` describe a file (hashing it may take seconds: off the event loop).
    Decided on the decoded record, so ``{"\\u0066ile": ...}`` is a file event too."""
    return isinstance(fields, dict) and "file" in fields


def judge_fields(fields: dict[str, Any], ref: str, settings: Settings, replay: str | None = None,
                 received_at: float | None = None) -> Outcome:
    """Classify, hash a file, and run the privacy gate on decoded fields (``replay``, ``received_at``:
    as :func:`parse` takes them)."""
    file_ref: FileRef | None = None
    try:
        if "file" in fields:
            file_ref = prepare_file(fields["file"], settings.policy.file_root)
            _check_inline_size(file_ref, settings.kafka.max_record_bytes)
    except InputError as exc:
        return Rejected(str(exc))
    origin = Origin.of_record(fields, ref, file_ref.name if file_ref is not None else None,
                              received_at=received_at, replay=replay)
    known = checks(settings)
    if file_ref is None:
        checked = known.memo(fields["value"], fields.get("type"), origin.labels, origin.tags, origin.tlp)
        if isinstance(checked, str):
            return Rejected(checked)
        indicator, verdict = checked
        action = indicator.action
    else:  # a file's hash is new each time: nothing to remember
        indicator, action = Indicator("sha256", file_ref.sha256), "submit_file"
        verdict = known.gate(indicator, origin.labels, origin.tags, origin.tlp)
    if not verdict.allowed:
        return Skipped(indicator, origin, action, verdict.reason or "policy", verdict.rule or "policy")
    # What is sent, looked up and cached is the redacted form (most verdicts hand back the same object).
    if verdict.indicator is not indicator and verdict.indicator != indicator:
        origin = origin.noting(SeenAs(indicator.value, verdict.redacted))
        indicator = verdict.indicator
    return Accepted(indicator, action, origin, file_ref)


#: What classification and the gate make of a value seen with labels: the indicator and the gate's
#: verdict on it, or why the value is not an indicator (a string: a cached exception would collect
#: a traceback, and the frames it holds, each time it is raised again).
Checked = Union[tuple[Indicator, Verdict], str]

# A SIEM repeats the same values all day; classification and the gate are pure, so a repeat
# costs a dictionary lookup instead of parsing addresses and IDNA names again. Bounded by
# bytes, not only entries: a record's URL (8 KB) or labels (as long as it likes) must not let
# one feed fill the worker's memory, so only calls with up to MEMO_CHARS of text are kept.
MEMO_ENTRIES, MEMO_CHARS = 16384, 512


class Checks:
    """Classification and the privacy gate under one worker's settings, remembered for repeats.

    One memo, keyed by the record's own strings only, the settings being the object's: two
    memos (classification, then the gate keyed by the indicator and the settings groups, hashed
    on every record) cost a tenth of intake's time per cache hit (2 of 20 us, measured in-process;
    bench-results.md).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: ``memo(value, declared type, labels, tags, tlp)``: the :data:`Checked` of a value.
        self.memo: Memo[Checked] = Memo(self._check, entries=MEMO_ENTRIES, entry_chars=MEMO_CHARS, size=_text_size)

    def gate(self, indicator: Indicator, labels: tuple[str, ...], tags: tuple[str, ...],
             tlp: tuple[str, ...]) -> Verdict:
        """The privacy gate's verdict on ``indicator`` seen with these labels, under these settings."""
        return judge(indicator, read_labels(labels, tags, tlp), self.settings.policy, self.settings.privacy)

    def _check(self, value: str, declared: str | None, labels: tuple[str, ...], tags: tuple[str, ...],
               tlp: tuple[str, ...]) -> Checked:
        try:
            indicator = classify(value, declared)
        except InputError as exc:
            return str(exc)
        return indicator, self.gate(indicator, labels, tags, tlp)


def _text_size(value: str, declared: str | None, labels: tuple[str, ...], tags: tuple[str, ...],
               tlp: tuple[str, ...]) -> int:
    size = len(value) + len(declared or "")
    return size + sum(map(len, labels)) + sum(map(len, tags)) + sum(map(len, tlp)) if labels or tags or tlp else size


_current: Checks | None = None


def checks(settings: Settings) -> Checks:
    """The remembered checks of ``settings``: a worker (or a replay run) holds one Settings object
    for its life, so they are built once; another object (a test's) gets checks of its own."""
    global _current
    current = _current
    if current is None or current.settings is not settings:
        current = _current = Checks(settings)
    return current


def _check_inline_size(file_ref: FileRef, max_record_bytes: int) -> None:
    """An inline file travels in vt.lookups and vt.requests records: it must leave them room."""
    inline = len(file_ref.content_b64 or "")
    if inline > max_record_bytes // 2:
        raise InputError(f"the inline file is {inline:,} characters of base64; at most {max_record_bytes // 2:,} "
                         "fit in a record (VTSTREAM_KAFKA_MAX_RECORD_BYTES); send a file:// URI instead")


def _decode(raw: bytes | None) -> dict[str, Any]:
    """Bytes -> validated fields dict, or InputError with an actionable reason."""
    if raw is None:
        raise InputError("record has no value (a tombstone?); send an indicator")
    if len(raw) > MAX_RECORD_BYTES:
        raise InputError(f"record is {len(raw)} bytes; the limit is {MAX_RECORD_BYTES}")
    if raw[:1] == b"{":  # most records: orjson reads (and checks the UTF-8 of) the bytes themselves
        try:
            return _fields(orjson.loads(raw))
        except orjson.JSONDecodeError:
            pass  # the checks below say what is wrong, in the same words as for any record
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"record is not valid UTF-8 (byte {raw[exc.start]:#04x} at offset {exc.start})") from None
    stripped = text.strip()
    if not stripped:
        raise InputError("record is empty; send an indicator or a JSON object with 'value'")
    if stripped[0] in "{[":
        return _decode_json(stripped)
    if "\n" in stripped or "\r" in stripped:
        raise InputError("record holds several lines; send one indicator per record")
    return {"value": stripped}


def _decode_json(text: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"record looks like JSON but does not parse: {exc}") from None
    return _fields(doc)


def _fields(doc: Any) -> dict[str, Any]:
    """A parsed JSON record's fields, validated and normalized in place (a cache hit reads them
    once: copying them to a fresh dict was a fifth of decoding). Other keys stay and are never read."""
    if not isinstance(doc, dict):
        raise InputError("JSON record must be an object with a 'value' field, not an array")
    value = doc.get("value")
    if "file" not in doc and not isinstance(value, str):
        got = "missing" if value is None else f"a {type(value).__name__}"
        raise InputError(f"JSON record needs 'value' as a string ({got}), or a 'file' object")
    declared = doc.get("type")
    if declared is not None and not isinstance(declared, str):
        raise InputError(f"'type' must be a string, got {type(declared).__name__}")
    for name in TEXT_FIELDS:
        item = doc.get(name)
        if item is None or (type(item) is str and len(item) <= 1024):
            continue
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise InputError(f"'{name}' must be a string, got {type(item).__name__}")
        doc[name] = str(item)[:1024]
    for name in LIST_FIELDS:
        if doc.get(name) is not None:
            doc[name] = _string_list(name, doc[name])
    return doc


def _string_list(name: str, item: Any) -> list[str]:
    """Labels and tags: a list of strings, or one comma-separated string."""
    if isinstance(item, str):
        item = item.split(",")
    if not isinstance(item, list) or not all(isinstance(x, str) for x in item):
        raise InputError(f"'{name}' must be a list of strings or a comma-separated string")
    if len(item) > _MAX_LIST:
        raise InputError(f"'{name}' has {len(item)} entries; the limit is {_MAX_LIST}")
    longest, total = max(map(len, item), default=0), sum(map(len, item))
    if longest > _MAX_LIST_ITEM:  # every summary and waiter repeats them: they must not fill a record
        raise InputError(f"an entry of '{name}' is {longest:,} characters long; the limit is {_MAX_LIST_ITEM}")
    if total > _MAX_LIST_CHARS:
        raise InputError(f"'{name}' hold {total:,} characters in all; the limit is {_MAX_LIST_CHARS:,}")
    return [x.strip() for x in item if x.strip()]


async def handle(ctx: Context, copy: CacheCopy, out: Outbox, record: Received) -> None:
    """Route one raw record: a cached summary, vt.lookups, a skip summary, or vt.dead."""
    key, value, ref, now = record.key, record.value, record.ref, record.now
    received_at = round(now, 3)  # enrich latency: read here, summarized later
    fields = decode(value)
    if isinstance(fields, Rejected):
        outcome: Outcome = fields
    elif is_file_event(fields):  # may hash a file of up to 650 MB: off the event loop
        outcome = await asyncio.to_thread(judge_fields, fields, ref, ctx.settings, None, received_at)
    else:
        outcome = judge_fields(fields, ref, ctx.settings, received_at=received_at)
    if isinstance(outcome, Rejected):
        await send_dead_letter(out, "intake", key, value, ref, ctx.settings.privacy, reason=outcome.reason)
        return
    indicator = outcome.indicator
    api = ctx.settings.vt.api_version
    if isinstance(outcome, Skipped):
        await out.send(ENRICHED, indicator.key, skip_summary(outcome, api))
        return
    key_text = indicator.key
    key_bytes = key_text.encode()  # encoded once: the cache copy and the outbox both take bytes
    entry = copy.fresh(key_bytes, now) if outcome.file is None else None
    if entry is not None:
        if outcome.origin.replay is None:  # counted for the next verdict_change (pipeline.stages.sightings)
            ctx.sightings.saw(key_text, record.now)
        await out.send(ENRICHED, key_bytes, SummaryEvent.of(
            entry.hit_card(), indicator=indicator, action=outcome.action, api=api, origin=outcome.origin))
        return
    await out.send(LOOKUPS, key_bytes, outcome)


#: The fields a plain repeat may carry; a record with any other (labels, tags, tlp, file, ...) takes
#: the full path. Up to PLAIN_BYTES, no text in a record is longer than ``_fields`` keeps it.
_PLAIN_FIELDS = frozenset(("value", "type", *TEXT_FIELDS))
_ID, _SOURCE, _OBSERVED_AT = TEXT_FIELDS
PLAIN_BYTES = 1024


@dataclass(frozen=True, slots=True)
class Plain:
    """What every plain record of one value and declared type decides: the indicator, its action, its key."""

    indicator: Indicator
    action: str
    key: str
    key_bytes: bytes
    #: Under which a cached card keeps the fixed part of this value's summaries (``SummaryCard.derived``).
    shared_key: tuple[str, ...]


#: A plain record read: its :class:`Plain`, and its own ``id``, ``source`` and ``observed_at``.
PlainSighting = tuple[Plain, Optional[str], Optional[str], Optional[str]]


class Repeats:
    """Plain repeats of a cached indicator, answered without the full path, in the same bytes.

    A SIEM sends the same indicators all day, most records holding only ``value``, ``type``,
    ``id``, ``source`` and ``observed_at``. For such a record whose value the gate lets through
    unchanged, everything but the sighting's own fields is known from the last repeat:
    :meth:`read` reads the record once and looks the rest up, and :meth:`encode` builds its summary
    from the cached entry's fixed part, where :func:`handle` takes the general path (decoding into
    checked fields, an outcome, a coroutine and an outbox call per record: two fifths of a cache
    hit's CPU, ``vtstream bench hot-path``). Anything else, and any doubt, is left to the full path;
    property tests hold the two to the same bytes. Intake (:meth:`answer`) and ``vtstream replay``
    take it.
    """

    def __init__(self, settings: Settings, api: str) -> None:
        self._settings, self._api = settings, api
        # Keyed by the record's value and type only (at most MEMO_CHARS of text): bounded as Checks' memo.
        self._plain = lru_cache(maxsize=MEMO_ENTRIES)(self._judge)

    def read(self, value: bytes | None) -> PlainSighting | None:
        """The plain record in ``value``, or None: the full path decides."""
        if value is None or len(value) > PLAIN_BYTES or value[:1] != b"{":
            return None
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
        if type(doc) is not dict or not doc.keys() <= _PLAIN_FIELDS:
            return None
        text, declared = doc.get("value"), doc.get("type")
        if type(text) is not str or (declared is not None and type(declared) is not str):
            return None
        ident, source, observed = doc.get(_ID), doc.get(_SOURCE), doc.get(_OBSERVED_AT)
        if ((ident is not None and type(ident) is not str) or (source is not None and type(source) is not str)
                or (observed is not None and type(observed) is not str)):
            return None  # numbers: the full path turns them to text
        plain = self._plain(text, declared) if len(text) + len(declared or "") <= MEMO_CHARS else None
        return None if plain is None else (plain, ident, source, observed)

    def encode(self, sighting: PlainSighting, entry: CachedResult, ref: str, received_at: float | None,
               run: str | None) -> bytes:
        """The summary of ``sighting`` answered by ``entry`` (read at ``ref``, fed by replay ``run``)."""
        plain, ident, source, observed = sighting
        card = entry.hit_card()  # the fixed part is kept with the entry's card, as SummaryEvent keeps its own
        digest, head, summary = card.derived(plain.shared_key, lambda: SummaryEvent.of(
            card, indicator=plain.indicator, action=plain.action, api=self._api, origin=None).shared_part())
        shown = Origin.published_plain(ident, source, observed, ref, received_at)
        return SummaryEvent.joined(SummaryEvent.sighting_id(digest, ref, run), head, now_json(), summary, shown, run)

    def _judge(self, text: str, declared: str | None) -> Plain | None:
        """The Plain of a value the gate lets through unchanged, seen with no labels."""
        checked = checks(self._settings).memo(text, declared, (), (), ())
        if isinstance(checked, str):
            return None
        indicator, verdict = checked
        if not verdict.allowed or (verdict.indicator is not indicator and verdict.indicator != indicator):
            return None
        action = indicator.action
        return Plain(indicator, action, indicator.key, indicator.key.encode(),
                     ("repeat", indicator.type, indicator.value, action, self._api))


class LiveRepeats:
    """Intake's answer to a live plain repeat its cache copy holds, counted as :func:`handle` counts one."""

    def __init__(self, ctx: Context, copy: CacheCopy) -> None:
        self._ctx, self._copy = ctx, copy
        self._repeats = Repeats(ctx.settings, ctx.settings.vt.api_version)
        self._one_hop = partial(ctx.metrics.one_hop, ctx.clock)

    def answer(self, value: bytes | None, ref: str, now: float) -> Answer | None:
        """(topic, key, summary) of a plain repeat answered from the cache copy, else None."""
        sighting = self._repeats.read(value)
        if sighting is None:
            return None
        plain = sighting[0]
        entry = self._copy.fresh(plain.key_bytes, now)
        if entry is None:
            return None
        received_at = round(now, 3)
        summary = self._repeats.encode(sighting, entry, ref, received_at, None)
        self._ctx.sightings.saw(plain.key, now)  # counted once the answer stands (a failure above: the full path)
        self._one_hop(received_at)
        return ENRICHED, plain.key_bytes, summary


def skip_summary(outcome: Skipped, api: str) -> SummaryEvent:
    """The summary that says why policy kept an indicator away from VirusTotal (nothing was sent)."""
    return SummaryEvent(outcome.indicator, outcome.action, api,
                        SummaryCard.not_checked(outcome.reason, skipped_by=outcome.rule), outcome.origin)


def install(ctx: Context) -> None:
    """Start intake and its cache copy with the app (plain aiokafka, see :mod:`pipeline.kafka.direct`)."""
    settings = ctx.settings
    ctx.readiness.expect_group(intake_group(settings.app_id))  # before the app starts: /ready waits for it

    @ctx.app.task
    async def start_intake() -> None:
        replica = CacheReplica(settings, changelog_name(settings.app_id), settings.kafka.partitions)
        await ctx.app.add_runtime_dependency(replica)
        await ctx.app.add_runtime_dependency(DirectStage(
            settings, "intake", RAW, intake_group(settings.app_id), partial(handle, ctx, replica.copy),
            ctx.metrics, ctx.readiness, ctx.clock, answer=LiveRepeats(ctx, replica.copy).answer))
