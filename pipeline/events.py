"""Output event contract: every event vtstream publishes is built here.

An event is a plain dict, serialised with orjson::

    {"event_id": "…", "kind": "attribute", "indicator": {"type": "ip", "value": "8.8.8.8"},
     "action": "submit_ip", "api": "v3", "enriched_at": "2026-11-22T08:00:00Z",
     "attribute": {"name": "VirusTotal ASN", "value": "15169"}}

``kind`` is one of ``attribute``, ``relation``, ``report``, ``summary``; the
payload sits under the key of the same name. Events caused by a record that
``vtstream replay`` fed carry ``"replay": "<run name>"`` at the top level
(the run travels in the record's origin); live events have no such field. ``event_id`` is a deterministic
digest of everything except ``enriched_at`` (and ``origin`` timing), so a record
processed twice (at-least-once delivery) yields events with the same id and
consumers can de-duplicate.
"""

from __future__ import annotations

import base64
import hashlib
import time
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Literal, Mapping

import orjson

from pipeline.contracts.cache_entry import CachedResult
from pipeline.contracts.indicator import Indicator
from pipeline.contracts.wire import DeadLetter, VtRequest
from pipeline.rules.privacy import UrlPrivacy, for_summary, scrub, scrub_all

Kind = Literal["attribute", "relation", "report", "summary"]
KINDS: tuple[str, ...] = ("attribute", "relation", "report", "summary")


def iso_utc(ts: datetime | float | int | None = None) -> str:
    """Render a timestamp (datetime, epoch seconds, or now) as ISO 8601 UTC with 'Z'."""
    if ts is None:
        return _now_iso(int(time.time()))
    if isinstance(ts, datetime):
        dt = ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    else:
        dt = datetime.fromtimestamp(float(ts), timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@lru_cache(maxsize=2)
def _now_iso(second: int) -> str:
    """The current second, rendered once per second (every output event carries it)."""
    return iso_utc(second)


def event_id(*parts: Any) -> str:
    """Deterministic id: sha256 over the canonical JSON of ``parts`` (first 32 hex chars)."""
    blob = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()[:32]


def make_event(
    kind: str,
    payload: Mapping[str, Any],
    *,
    indicator: Mapping[str, str],
    action: str,
    api: str,
    enriched_at: str | None = None,
    origin: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build one output event.

    ``indicator`` is ``{"type": ..., "value": ...}`` (normalized). ``origin``
    identifies the input record that caused the event (its ``id``, ``source``,
    and ``ref`` = topic/partition/offset); it is part of the id only for
    ``summary`` events, which are per sighting, while attribute / relation /
    report events describe facts about the indicator and share one id per fact.

    >>> e = make_event("attribute", {"name": "VirusTotal ASN", "value": "15169"},
    ...                indicator={"type": "ip", "value": "8.8.8.8"}, action="submit_ip", api="v3")
    >>> e["kind"], len(e["event_id"])
    ('attribute', 32)
    """
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}; expected one of {KINDS}")
    replay = origin.get("replay") if origin else None
    if origin and replay:  # a replayed record: the run's name goes to the top level
        origin = {k: v for k, v in origin.items() if k != "replay"}
    ind = {"type": indicator["type"], "value": indicator["value"]}
    id_parts: list[Any] = [kind, ind, action, api, payload]
    if kind == "summary" and origin:
        id_parts.append(origin.get("ref") or origin.get("id"))
    event: dict[str, Any] = {
        "event_id": event_id(*id_parts),
        "kind": kind,
        "indicator": ind,
        "action": action,
        "api": api,
        "enriched_at": enriched_at or iso_utc(),
        kind: dict(payload),
    }
    if origin:
        event["origin"] = dict(origin)
    return replay_marked(event, replay) if replay else event


def replay_marked(event: dict[str, Any], run: str) -> dict[str, Any]:
    """``event`` as caused by replay run ``run``: ``"replay": run`` at the top level, and an id of
    its own, so consumers that de-duplicate by id keep the replayed verdict beside the live one.

    >>> e = make_event("attribute", {"name": "n", "value": 1}, indicator={"type": "ip", "value": "1.1.1.1"},
    ...                action="submit_ip", api="v3")
    >>> marked = replay_marked(e, "june")
    >>> marked["replay"], marked["event_id"] != e["event_id"]
    ('june', True)
    """
    return {**event, "event_id": event_id(event["event_id"], {"replay": run}), "replay": run}


def summary_event(payload: Mapping[str, Any], *, indicator: Indicator, action: str, api: str,
                  origin: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``summary`` card for one sighting (``origin``) of ``indicator``, as it went to VirusTotal:
    one per sighting, always. It shows the indicator as that sighting's SIEM sent it and, for a
    URL, what was sent instead (``sent_as``, ``redacted``: :func:`pipeline.rules.privacy.for_summary`)."""
    seen, shown, sent = for_summary(indicator.as_dict(), origin)
    return make_event("summary", {**payload, **sent}, indicator=seen, action=action, api=api, origin=shown)


def skipped_event(reason: str, rule: str, *, indicator: Indicator, action: str, api: str,
                  origin: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``summary`` card for a sighting that policy or privacy kept away from VirusTotal."""
    return make_event("summary", not_checked(reason, skipped_by=rule), indicator=indicator.as_dict(), action=action,
                      api=api, origin=origin)


def not_checked(reason: str, *, pending: bool = False, skipped_by: str | None = None) -> dict[str, Any]:
    """A "not checked" summary payload: VirusTotal was not asked, or has not answered yet.

    ``pending``: the answer may still come (a scan queued, a quota spent, a lookup
    in flight); ``skipped_by``: the policy rule that kept the indicator away.
    Silence never means clean, so every such sighting gets one of these.
    """
    payload: dict[str, Any] = {"checked": False, "found": None, "reason": reason}
    if pending:
        payload["pending"] = True
    if skipped_by is not None:
        payload.update(skipped=True, rule=skipped_by)
    return payload


def cache_hit(entry: CachedResult) -> dict[str, Any]:
    """The summary payload a cache hit answers with."""
    return {**entry.summary, "cached": True, "fetched_at": entry.fetched_at}


def dead_letter(original: bytes | Any, *, stage: str, reason: str, privacy: UrlPrivacy,
                error: str | None = None, attempts: int = 1) -> DeadLetter:
    """A vt.dead record: the original record, where and why it failed.

    ``original`` is kept whole: as text when it is UTF-8, else as base64, a
    record vtstream built as its wire form, so an operator can fix and replay
    it; only URL secrets (``privacy``: userinfo and secret parameters) are
    replaced by ``REDACTED``, in the original, the reason and the error alike.
    The API key never reaches this function.
    """
    if isinstance(original, (bytes, bytearray)):
        try:
            kept: dict[str, Any] = {"text": scrub(bytes(original).decode("utf-8"), privacy)}
        except UnicodeDecodeError:  # latin-1 maps byte for byte, so only the secrets change
            scrubbed = scrub(bytes(original).decode("latin-1"), privacy).encode("latin-1")
            kept = {"base64": base64.b64encode(scrubbed).decode("ascii")}
    elif isinstance(original, VtRequest):
        kept = {"record": scrub_all(original.to_dict(), privacy)}
    else:
        kept = {"record": scrub_all(original, privacy)}
    return DeadLetter(original=kept, stage=stage, reason=scrub(reason, privacy),
                      error=None if error is None else scrub(error, privacy), attempts=attempts,
                      failed_at=iso_utc())


def format_event(event: dict[str, Any]) -> str:
    """One readable line for an enriched event (``vtstream tail``)."""
    ind = event.get("indicator", {})
    head = f"{event.get('kind', '?'):<9} {ind.get('type', '?'):<6} {ind.get('value', '?')}"
    kind = event.get("kind")
    if kind == "attribute":
        attr = event["attribute"]
        return f"{head}  {attr.get('name')} = {attr.get('value')}"
    if kind == "relation":
        rel = event["relation"]
        extra = ", ".join(f"{a['name']}={a['value']}" for a in rel.get("attributes", []))
        return f"{head}  -> {rel.get('type')} {rel.get('value')}" + (f"  [{extra}]" if extra else "")
    if kind == "report":
        rep = event["report"]
        return f"{head}  report '{rep.get('title')}' ({len(rep.get('attributes', []))} attributes)"
    summary = event.get("summary", {})
    if not summary.get("checked", True):
        return f"{head}  NOT CHECKED: {summary.get('reason')}"
    shown = {k: v for k, v in summary.items()
             if k not in ("checked", "resolutions", "detections") and v not in (None, [], {}, 0, False)
             or k in ("found", "positives")}
    text = " ".join(f"{k}={v}" for k, v in shown.items())
    return f"{head}  {text}"
