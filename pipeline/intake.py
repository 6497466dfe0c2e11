"""Stage 1, intake: indicators.raw -> vt.lookups (or a skip summary, or vt.dead).

A raw record is a JSON object (``value`` plus optional ``type``, ``id``,
``source``, ``observed_at``, ``labels``, ``tags``) or a bare text line such as
``8.8.8.8``. Intake decodes it, classifies and normalizes the indicator, and
runs the policy gate *before* anything can reach VirusTotal. Every outcome is a
plain value (:class:`Accepted`, :class:`Skipped`, :class:`Rejected`): no input,
however malformed, raises out of :func:`parse`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Union

import orjson

from topics import DEAD, ENRICHED, LOOKUPS

from .errors import InputError
from .events import dead_letter, make_event
from .files import FileRef
from .files import prepare as prepare_file
from .indicators import Indicator, classify
from .policy import check
from .runtime import Context, Outbox, record_ref, run_batches
from .settings import Settings

#: Longest accepted record; larger ones are dead-lettered unread (a SIEM bug, not an indicator).
MAX_RECORD_BYTES = 2 * 1024 * 1024
_TEXT_FIELDS = ("id", "source", "observed_at")
_LIST_FIELDS = ("labels", "tags")
_MAX_LIST = 256


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid indicator that policy allows to send (``file`` set for submit_file events)."""

    indicator: Indicator
    origin: dict[str, Any]
    action: str
    file: FileRef | None = None


@dataclass(frozen=True, slots=True)
class Skipped:
    """A valid indicator that policy keeps away from VirusTotal."""

    indicator: Indicator
    origin: dict[str, Any]
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
            file_ref = prepare_file(fields["file"], settings.file_root)
            indicator = Indicator("sha256", file_ref.sha256)
        else:
            indicator = classify(fields["value"], fields.get("type"))
    except InputError as exc:
        return Rejected(str(exc))
    origin = {k: fields[k] for k in (*_TEXT_FIELDS, *_LIST_FIELDS) if k in fields}
    origin["ref"] = ref
    action = indicator.action
    if file_ref is not None:
        origin["file_name"] = file_ref.name
        action = "submit_file"
    decision = check(indicator, fields.get("labels", ()), block_labels=settings.block_labels,
                     allow_labels=settings.allow_labels, internal_domains=settings.internal_domains)
    if not decision.allowed:
        return Skipped(indicator, origin, action, decision.reason or "policy", decision.rule or "policy")
    return Accepted(indicator, origin, action, file_ref)


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
    for name in _TEXT_FIELDS:
        item = doc.get(name)
        if item is None:
            continue
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise InputError(f"'{name}' must be a string, got {type(item).__name__}")
        fields[name] = str(item)[:1024]
    for name in _LIST_FIELDS:
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


async def handle(ctx: Context, out: Outbox, key: bytes, value: bytes, ref: str) -> None:
    """Route one raw record to vt.lookups, a skip summary, or vt.dead."""
    if value and b'"file"' in value:  # may hash a file of up to 650 MB: off the event loop
        outcome = await asyncio.to_thread(parse, value, ref, ctx.settings)
    else:
        outcome = parse(value, ref, ctx.settings)
    if isinstance(outcome, Rejected):
        await out.send(DEAD, key or None, dead_letter(value, stage="intake", reason=outcome.reason))
        return
    indicator = outcome.indicator
    if isinstance(outcome, Skipped):
        payload = {"checked": False, "found": None, "skipped": True, "reason": outcome.reason,
                   "rule": outcome.rule}
        await out.send(ENRICHED, indicator.key, make_event(
            "summary", payload, indicator=indicator.as_dict(), action=outcome.action,
            api=ctx.settings.vt_api_version, origin=outcome.origin))
        return
    lookup: dict[str, Any] = {"indicator": indicator.as_dict(), "action": outcome.action, "origin": outcome.origin}
    if outcome.file is not None:
        lookup["file"] = outcome.file.as_dict()
    await out.send(LOOKUPS, indicator.key, lookup)


def install(ctx: Context) -> None:
    """Register the intake agent on ctx.app."""

    @ctx.app.agent(ctx.topics["raw"], name="intake")
    async def intake_agent(stream: Any) -> None:
        await run_batches(ctx, stream, "intake", handle, ref=record_ref)

