"""Stage 1, intake: indicators.raw -> a cached summary, vt.lookups, a skip summary, or vt.dead.

A raw record is a JSON object (``value`` plus optional ``type``, ``id``,
``source``, ``observed_at``, ``labels``, ``tags``) or a bare text line such as
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
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from typing import Any, Union

import orjson

from topics import DEAD, ENRICHED, LOOKUPS, RAW, changelog_name, intake_group

from pipeline.contracts.card import SummaryCard
from pipeline.contracts.events import SummaryEvent
from pipeline.contracts.indicator import FileRef
from pipeline.contracts.indicator import Indicator
from pipeline.contracts.origin import LIST_FIELDS, TEXT_FIELDS, Origin, SeenAs
from pipeline.contracts.wire import LookupRequest
from pipeline.errors import InputError
from pipeline.inputs.files import prepare as prepare_file
from pipeline.kafka.direct import DirectStage
from pipeline.kafka.replica import CacheCopy, CacheReplica
from pipeline.kafka.runtime import Context, Outbox, Received
from pipeline.rules import privacy
from pipeline.rules.deadletter import dead_letter
from pipeline.rules.indicators import classify
from pipeline.rules.policy import Decision, check
from pipeline.settings import Settings

#: Longest accepted record; larger ones are dead-lettered unread (a SIEM bug, not an indicator).
MAX_RECORD_BYTES = 2 * 1024 * 1024
_MAX_LIST = 256


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid indicator that policy allows to send (``file`` set for submit_file events)."""

    indicator: Indicator
    origin: Origin
    action: str
    file: FileRef | None = None


@dataclass(frozen=True, slots=True)
class Skipped:
    """A valid indicator that policy keeps away from VirusTotal."""

    indicator: Indicator
    origin: Origin
    action: str
    reason: str
    rule: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """Not an indicator; ``reason`` tells a person what to fix."""

    reason: str


Outcome = Union[Accepted, Skipped, Rejected]


def parse(raw: bytes | None, ref: str, settings: Settings) -> Outcome:
    """Decide what to do with one raw record. ``ref`` is topic/partition/offset.

    >>> from pipeline.settings import Settings
    >>> parse(b"hxxp://evil[.]example.com/x", "indicators.raw/0/7", Settings()).indicator.value
    'http://evil.example.com/x'
    """
    file_ref: FileRef | None = None
    try:
        fields = _decode(raw)
        if "file" in fields:
            file_ref = prepare_file(fields["file"], settings.policy.file_root)
            indicator = Indicator("sha256", file_ref.sha256)
        else:
            indicator = _classify(fields["value"], fields.get("type"))
    except InputError as exc:
        return Rejected(str(exc))
    origin = Origin.of_record(fields, ref, file_ref.name if file_ref is not None else None)
    action = indicator.action if file_ref is None else "submit_file"
    decision = _check(indicator, tuple(fields.get("labels", ())), settings.policy.block_labels, settings.policy.allow_labels,
                      settings.policy.internal_domains)
    if not decision.allowed:
        return Skipped(indicator, origin, action, decision.reason or "policy", decision.rule or "policy")
    if indicator.type == "url":  # what is sent, looked up and cached is the redacted form
        redaction = privacy.redact(indicator.value, settings.privacy)
        if redaction.url is None:
            return Skipped(indicator, origin, action, redaction.reason or "privacy", redaction.rule or "privacy")
        if redaction.redacted:
            origin = origin.noting(SeenAs(indicator.value, redaction.redacted))
            indicator = Indicator("url", redaction.url)
    return Accepted(indicator, origin, action, file_ref)


# A SIEM repeats the same values all day; classification and policy are pure, so a
# repeat costs a dictionary lookup instead of parsing addresses and IDNA names again.
@lru_cache(maxsize=65536)
def _classified(value: str, declared: str | None) -> Indicator | str:
    """The indicator, or the reason it is not one (a string: a cached exception would
    collect a traceback, and the frames it holds, each time it is raised again)."""
    try:
        return classify(value, declared)
    except InputError as exc:
        return str(exc)


def _classify(value: str, declared: str | None) -> Indicator:
    found = _classified(value, declared)
    if isinstance(found, str):
        raise InputError(found)
    return found


@lru_cache(maxsize=65536)
def _check(indicator: Indicator, labels: tuple[str, ...], block_labels: tuple[str, ...],
           allow_labels: tuple[str, ...], internal_domains: tuple[str, ...]) -> Decision:
    return check(indicator, labels, block_labels=block_labels, allow_labels=allow_labels,
                 internal_domains=internal_domains)


def _decode(raw: bytes | None) -> dict[str, Any]:
    """Bytes -> validated fields dict, or InputError with an actionable reason."""
    if raw is None:
        raise InputError("record has no value (a tombstone?); send an indicator")
    if len(raw) > MAX_RECORD_BYTES:
        raise InputError(f"record is {len(raw)} bytes; the limit is {MAX_RECORD_BYTES}")
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
    if not isinstance(doc, dict):
        raise InputError("JSON record must be an object with a 'value' field, not an array")
    value = doc.get("value")
    fields: dict[str, Any] = {"value": value}
    if "file" in doc:
        fields["file"] = doc["file"]
    elif not isinstance(value, str):
        got = "missing" if value is None else f"a {type(value).__name__}"
        raise InputError(f"JSON record needs 'value' as a string ({got}), or a 'file' object")
    declared = doc.get("type")
    if declared is not None:
        if not isinstance(declared, str):
            raise InputError(f"'type' must be a string, got {type(declared).__name__}")
        fields["type"] = declared
    for name in TEXT_FIELDS:
        item = doc.get(name)
        if item is None:
            continue
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise InputError(f"'{name}' must be a string, got {type(item).__name__}")
        fields[name] = str(item)[:1024]
    for name in LIST_FIELDS:
        if doc.get(name) is not None:
            fields[name] = _string_list(name, doc[name])
    return fields


def _string_list(name: str, item: Any) -> list[str]:
    """Labels and tags: a list of strings, or one comma-separated string."""
    if isinstance(item, str):
        item = item.split(",")
    if not isinstance(item, list) or not all(isinstance(x, str) for x in item):
        raise InputError(f"'{name}' must be a list of strings or a comma-separated string")
    if len(item) > _MAX_LIST:
        raise InputError(f"'{name}' has {len(item)} entries; the limit is {_MAX_LIST}")
    return [x.strip() for x in item if x.strip()]


async def handle(ctx: Context, copy: CacheCopy, out: Outbox, record: Received) -> None:
    """Route one raw record: a cached summary, vt.lookups, a skip summary, or vt.dead."""
    key, value, ref = record.key, record.value, record.ref
    if value and b'"file"' in value:  # may hash a file of up to 650 MB: off the event loop
        outcome = await asyncio.to_thread(parse, value, ref, ctx.settings)
    else:
        outcome = parse(value, ref, ctx.settings)
    if isinstance(outcome, Rejected):
        await out.send(DEAD, key or None, dead_letter(value, stage="intake", reason=outcome.reason,
                                                      privacy=ctx.settings.privacy))
        return
    # enrich latency: read here, summarized later
    outcome = replace(outcome, origin=replace(outcome.origin, received_at=round(ctx.clock(), 3)))
    indicator = outcome.indicator
    api = ctx.settings.vt.api_version
    if isinstance(outcome, Skipped):
        await out.send(ENRICHED, indicator.key, skip_summary(outcome, api))
        return
    key_text = indicator.key
    entry = copy.fresh(key_text.encode(), ctx.clock()) if outcome.file is None else None
    if entry is not None:
        await out.send(ENRICHED, key_text, SummaryEvent.of(
            entry.hit_card(), indicator=indicator, action=outcome.action, api=api, origin=outcome.origin))
        return
    await out.send(LOOKUPS, key_text, lookup_record(outcome))


def skip_summary(outcome: Skipped, api: str) -> SummaryEvent:
    """The summary that says why policy kept an indicator away from VirusTotal (nothing was sent)."""
    return SummaryEvent(outcome.indicator, outcome.action, api,
                        SummaryCard.not_checked(outcome.reason, skipped_by=outcome.rule), outcome.origin)


def lookup_record(outcome: Accepted, max_age_s: float | None = None) -> LookupRequest:
    """The vt.lookups record for an accepted indicator (``max_age_s``: a replay's --max-age)."""
    return LookupRequest(indicator=outcome.indicator, action=outcome.action, origin=outcome.origin,
                         file=outcome.file, max_age_s=max_age_s)


def install(ctx: Context) -> None:
    """Start intake and its cache copy with the app (plain aiokafka, see :mod:`pipeline.kafka.direct`)."""
    settings = ctx.settings
    ctx.readiness.expect_group(intake_group(settings.app_id))  # before the app starts: /ready waits for it

    @ctx.app.task
    async def start_intake() -> None:
        replica = CacheReplica(settings, changelog_name(settings.app_id), settings.kafka.partitions,
                               settings.cache.copy_entries)
        await ctx.app.add_runtime_dependency(replica)
        await ctx.app.add_runtime_dependency(DirectStage(
            settings, "intake", RAW, intake_group(settings.app_id), partial(handle, ctx, replica.copy),
            ctx.metrics, ctx.readiness, ctx.clock))
