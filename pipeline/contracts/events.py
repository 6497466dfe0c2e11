"""Output event contract: every event vtstream publishes on ``indicators.enriched``.

An event is one JSON object, serialised with orjson::

    {"event_id": "…", "kind": "attribute", "indicator": {"type": "ip", "value": "8.8.8.8"},
     "action": "submit_ip", "api": "v3", "enriched_at": "2026-11-22T08:00:00Z",
     "attribute": {"name": "VirusTotal ASN", "value": "15169"}}

``kind`` is one of ``attribute``, ``relation``, ``report``, ``summary``; the
payload sits under the key of the same name. Attribute, relation and report
events are facts about an indicator, shaped by the mapping files, and stay
plain dicts (:func:`make_event`). A ``summary`` is per sighting and typed
(:class:`SummaryEvent`: its card, :class:`~pipeline.contracts.card.SummaryCard`,
and its origin, :class:`~pipeline.contracts.origin.Origin`).

Events caused by a record that ``vtstream replay`` fed carry ``"replay":
"<run name>"`` at the top level (the run travels in the record's origin);
live events have no such field. ``event_id`` is a deterministic digest of
everything except ``enriched_at`` (and ``origin`` timing), so a record
processed twice (at-least-once delivery) yields events with the same id and
consumers can de-duplicate.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Mapping

import orjson

from pipeline.contracts.card import SummaryCard
from pipeline.contracts.indicator import Indicator
from pipeline.contracts.origin import Origin
from pipeline.contracts.quick import quick_init
from pipeline.contracts.reader import FieldReader
from pipeline.errors import RecordError

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


def make_event(kind: str, payload: Mapping[str, Any], *, indicator: Mapping[str, str], action: str, api: str,
               enriched_at: str | None = None, replay: str | None = None) -> dict[str, Any]:
    """Build one attribute / relation / report event (a fact about ``indicator``, one id per fact).

    >>> e = make_event("attribute", {"name": "VirusTotal ASN", "value": "15169"},
    ...                indicator={"type": "ip", "value": "8.8.8.8"}, action="submit_ip", api="v3")
    >>> e["kind"], len(e["event_id"])
    ('attribute', 32)
    """
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}; expected one of {KINDS}")
    ind = {"type": indicator["type"], "value": indicator["value"]}
    event: dict[str, Any] = {"event_id": event_id(kind, ind, action, api, payload), "kind": kind, "indicator": ind,
                             "action": action, "api": api, "enriched_at": enriched_at or iso_utc(), kind: dict(payload)}
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


@quick_init
@dataclass(frozen=True, slots=True)
class SummaryEvent:
    """One sighting's ``summary`` event: its indicator as that sighting's SIEM sent it, its card,
    and its origin (published without the private URL note; the replay run at the top level)."""

    indicator: Indicator
    action: str
    api: str
    card: SummaryCard
    origin: Origin | None = None
    enriched_at: str = field(default_factory=iso_utc)

    @classmethod
    def of(cls, card: SummaryCard, *, indicator: Indicator, action: str, api: str,
           origin: Origin | None) -> "SummaryEvent":
        """The summary for one sighting (``origin``) of ``indicator``, as it went to VirusTotal.

        For a URL, the event shows the URL as the SIEM sent it and the card says what was
        sent instead (``sent_as``) and what was taken out (``redacted``).
        """
        seen = origin.as_seen if origin is not None else None
        if indicator.type == "url":
            shown = Indicator("url", seen.value) if seen is not None else indicator
            if seen is None or seen.sent:
                sent_as, redacted = indicator.value, seen.redacted if seen else ()
                card = card.derived(("sent", sent_as, redacted),  # the same copy for every hit of a cached card
                                    lambda: card.with_fields(sent_as=sent_as, redacted=redacted))
            indicator = shown
        return cls(indicator, action, api, card, origin)

    @property
    def replay(self) -> str | None:
        return self.origin.replay if self.origin is not None else None

    def to_dict(self) -> dict[str, Any]:
        return self._event(self.card.to_dict())

    def to_bytes(self) -> bytes:
        """The event as published: :meth:`to_dict`'s, with the card's own serialisation embedded."""
        return orjson.dumps(self._event(orjson.Fragment(self.card.wire())))

    def _event(self, summary: Any) -> dict[str, Any]:
        """The event dict, built once: as :func:`replay_marked` would mark it when a replay fed it."""
        ind, run = self.indicator.as_dict(), self.replay
        eid = self._id(ind)
        event: dict[str, Any] = {"event_id": event_id(eid, {"replay": run}) if run else eid, "kind": "summary",
                                 "indicator": ind, "action": self.action, "api": self.api,
                                 "enriched_at": self.enriched_at, "summary": summary}
        if self.origin is not None:
            shown = self.origin.published()
            if shown:
                event["origin"] = shown
        if run:
            event["replay"] = run
        return event

    def _id(self, ind: dict[str, str]) -> str:
        """``event_id("summary", ind, action, api, card, identity)``, with the card's canonical bytes
        spliced in as they are (the same bytes ``orjson.dumps(parts, OPT_SORT_KEYS)`` writes). All but
        the sighting's identity is digested once per card, indicator, action and api."""
        card, action, api = self.card, self.action, self.api

        def prefix() -> Any:
            return hashlib.sha256(b"".join((b'["summary",', orjson.dumps(ind, option=orjson.OPT_SORT_KEYS), b",",
                                            orjson.dumps(action), b",", orjson.dumps(api), b",", card.wire())))

        digest = card.derived(("id", ind["type"], ind["value"], action, api), prefix).copy()
        identity = self.origin.identity if self.origin is not None else None
        digest.update(b"," + orjson.dumps(identity) + b"]" if identity is not None else b"]")
        return str(digest.hexdigest()[:32])

    @classmethod
    def from_dict(cls, doc: Any) -> "SummaryEvent | None":
        """A published summary event read back (None for any other kind); RecordError names a fault."""
        r = FieldReader("summary event", doc)
        if r.doc.get("kind") != "summary":
            return None
        origin = Origin.read(r.nested("origin")) if isinstance(r.doc.get("origin"), dict) else Origin()
        run = r.text("replay", None)
        if run:
            origin = replace(origin, replay=run)
        return cls(indicator=r.indicator(), action=r.text("action", ""), api=r.text("api", ""),
                   card=SummaryCard.from_dict(r.mapping("summary"), "summary event's summary"), origin=origin,
                   enriched_at=r.text("enriched_at", ""))

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "SummaryEvent | None":
        """As :meth:`from_dict`, from the bytes on the topic."""
        try:
            return cls.from_dict(orjson.loads(raw or b""))
        except orjson.JSONDecodeError as exc:
            raise RecordError("summary event", "(record)", f"is not JSON ({exc})") from None
