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
and its origin, :class:`~pipeline.contracts.origin.Origin`). A
``verdict_change`` (:class:`VerdictChange`) says that a lookup gave another
verdict class than the last one vtstream knew for the indicator.

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
from pipeline.contracts.verdict import VERDICTS, VerdictCheck
from pipeline.errors import RecordError

KINDS: tuple[str, ...] = ("attribute", "relation", "report", "summary")
#: The kind of :class:`VerdictChange` events.
VERDICT_CHANGE = "verdict_change"


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


def now_json() -> bytes:
    """:func:`iso_utc` of now as a JSON string (an event's serialised ``enriched_at``)."""
    return _now_json(int(time.time()))


@lru_cache(maxsize=2)
def _now_json(second: int) -> bytes:
    return orjson.dumps(_now_iso(second))


def parse_iso(text: str) -> float:
    """An ISO 8601 time (``2026-01-01T00:00:00Z``) -> epoch seconds; ValueError when it is none.

    >>> parse_iso(iso_utc(1767225600))
    1767225600.0
    """
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


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


def _with_origin(event: dict[str, Any], origin: Origin | None) -> dict[str, Any]:
    """``event`` with the sighting's published origin, and replay-marked when a replay run caused it."""
    if origin is not None:
        shown = origin.published()
        if shown:
            event["origin"] = shown
        if origin.replay:
            return replay_marked(event, origin.replay)
    return event


def _json(raw: bytes | None, record: str) -> Any:
    """The decoded bytes of a published event; RecordError when they are not JSON."""
    try:
        return orjson.loads(raw or b"")
    except orjson.JSONDecodeError as exc:
        raise RecordError(record, "(record)", f"is not JSON ({exc})") from None


def _read_origin(r: FieldReader) -> Origin:
    """A published event's origin, with the replay run its top level names."""
    origin = Origin.read(r.nested("origin")) if isinstance(r.doc.get("origin"), dict) else Origin()
    run = r.text("replay", None)
    return replace(origin, replay=run) if run else origin


@quick_init
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
        eid, shown, run = self._sighting(self.shared_part()[0])
        event: dict[str, Any] = {"event_id": eid, "kind": "summary", "indicator": self.indicator.as_dict(),
                                 "action": self.action, "api": self.api, "enriched_at": self.enriched_at,
                                 "summary": self.card.to_dict()}
        if shown:
            event["origin"] = shown
        if run:
            event["replay"] = run
        return event

    def to_bytes(self) -> bytes:
        """:meth:`to_dict`'s event as published, joined from serialised parts: the card's bytes and the
        fixed head (indicator, action, api) are serialised once per card and indicator, only the
        sighting's parts per event (building and serialising the whole dict per cache hit was a
        seventh of its cost, ``vtstream bench hot-path``)."""
        digest, head, summary = self.shared_part()
        eid, shown, run = self._sighting(digest)
        return self.joined(eid, head, orjson.dumps(self.enriched_at), summary, shown, run)

    @staticmethod
    def joined(eid: str, head: bytes, enriched_at: bytes, summary: bytes, shown: dict[str, Any] | None,
               run: str | None) -> bytes:
        """The event's bytes from its parts: :meth:`shared_part`'s ``head`` and ``summary``, the serialised
        ``enriched_at``, and the sighting's own (:meth:`_sighting`)."""
        parts = [b'{"event_id":"', eid.encode(), b'",', head, b',"enriched_at":', enriched_at, summary]
        if shown:
            parts += (b',"origin":', orjson.dumps(shown))
        if run:
            parts += (b',"replay":', orjson.dumps(run))
        parts.append(b"}")
        return b"".join(parts)

    def _sighting(self, digest: Any) -> tuple[str, dict[str, Any] | None, str | None]:
        """What is this sighting's own in the event: its id (replay-marked, as :func:`replay_marked`
        marks one; ``digest``: the shared part's, from :meth:`shared_part`), its published origin, and the
        replay run that caused it."""
        origin = self.origin
        if origin is None:
            return self.sighting_id(digest, None), None, None
        return self.sighting_id(digest, origin.identity, origin.replay), origin.published(), origin.replay

    def shared_part(self) -> tuple[Any, bytes, bytes]:
        """What the events of one card, indicator, action and api share: the sha256 state of their id
        digest over all but the sighting's identity, the serialised head of the event (kind, indicator,
        action, api) and its ``"summary"`` member."""
        ind, action, api, card = self.indicator, self.action, self.api, self.card

        def make() -> tuple[Any, bytes, bytes]:
            indicator = orjson.dumps(ind.as_dict(), option=orjson.OPT_SORT_KEYS)
            action_json, api_json, wire = orjson.dumps(action), orjson.dumps(api), card.wire()
            digest = hashlib.sha256(b"".join((b'["summary",', indicator, b",", action_json, b",", api_json, b",",
                                              wire)))
            head = b"".join((b'"kind":"summary","indicator":', indicator, b',"action":', action_json,
                             b',"api":', api_json))
            return digest, head, b',"summary":' + wire

        fixed: tuple[Any, bytes, bytes] = card.derived(("fixed", ind.type, ind.value, action, api), make)
        return fixed

    @staticmethod
    def sighting_id(shared: Any, identity: str | None, run: str | None = None) -> str:
        """``event_id("summary", indicator, action, api, card, identity)``: the same bytes
        ``orjson.dumps(parts, OPT_SORT_KEYS)`` writes, with the shared part digested once (``shared``);
        replay-marked for a sighting a replay ``run`` fed."""
        digest = shared.copy()
        digest.update(b"," + orjson.dumps(identity) + b"]" if identity is not None else b"]")
        eid = digest.hexdigest()[:32]
        return event_id(eid, {"replay": run}) if run else eid

    @classmethod
    def from_dict(cls, doc: Any) -> "SummaryEvent | None":
        """A published summary event read back (None for any other kind); RecordError names a fault."""
        r = FieldReader("summary event", doc)
        if r.doc.get("kind") != "summary":
            return None
        origin = _read_origin(r)
        return cls(indicator=r.indicator(), action=r.text("action", ""), api=r.text("api", ""),
                   card=SummaryCard.from_dict(r.mapping("summary"), "summary event's summary"), origin=origin,
                   enriched_at=r.text("enriched_at", ""))

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "SummaryEvent | None":
        """As :meth:`from_dict`, from the bytes on the topic."""
        return cls.from_dict(_json(raw, "summary event"))


@dataclass(frozen=True, slots=True)
class VerdictChange:
    """A ``verdict_change`` event: a lookup of ``indicator`` gave the verdict ``current`` where the
    last one vtstream knew was ``previous``.

    ``sightings`` and ``first_seen`` are the live sightings vtstream answered for the indicator
    since the previous check (``first_seen`` None when there were none); ``origin`` is the
    sighting whose lookup found the change, and its replay run, if any, is the event's
    ``replay``. For a URL, ``sent_as`` is the URL as it went to VirusTotal (without userinfo
    and secret parameters), as on the summaries. The id is a digest of the indicator and the
    two checks, so the same change handled twice is the same event.
    """

    indicator: Indicator
    action: str
    api: str
    previous: VerdictCheck
    current: VerdictCheck
    sightings: int = 0
    first_seen: float | None = None
    origin: Origin | None = None
    sent_as: str | None = None
    enriched_at: str = field(default_factory=iso_utc)

    @property
    def replay(self) -> str | None:
        return self.origin.replay if self.origin is not None else None

    def to_dict(self) -> dict[str, Any]:
        ind = self.indicator.as_dict()
        previous, current = _check_dict(self.previous), _check_dict(self.current)
        event: dict[str, Any] = {"event_id": event_id(VERDICT_CHANGE, ind, previous, current), "kind": VERDICT_CHANGE,
                                 "indicator": ind, "action": self.action, "api": self.api,
                                 "enriched_at": self.enriched_at, "previous": previous, "current": current,
                                 "first_seen": iso_utc(self.first_seen) if self.first_seen is not None else None,
                                 "sightings": self.sightings}
        if self.sent_as is not None:
            event["sent_as"] = self.sent_as
        return _with_origin(event, self.origin)

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, doc: Any) -> "VerdictChange | None":
        """A published verdict_change read back (None for any other kind); RecordError names a fault."""
        r = FieldReader("verdict_change event", doc)
        if r.doc.get("kind") != VERDICT_CHANGE:
            return None
        origin = _read_origin(r)
        first_seen = r.text("first_seen", None)
        sightings = r.integer("sightings", 0)
        if sightings < 0:
            raise r.fault("sightings", f"must be 0 or more, not {sightings}")
        return cls(indicator=r.indicator(), action=r.text("action", ""), api=r.text("api", ""),
                   previous=_read_check(r.nested("previous")), current=_read_check(r.nested("current")),
                   sightings=sightings, first_seen=_time(r, "first_seen", first_seen) if first_seen else None,
                   origin=origin, sent_as=r.text("sent_as", None), enriched_at=r.text("enriched_at", ""))

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "VerdictChange | None":
        """As :meth:`from_dict`, from the bytes on the topic."""
        return cls.from_dict(_json(raw, "verdict_change event"))


def _check_dict(check: VerdictCheck) -> dict[str, Any]:
    return {"verdict": check.verdict, "positives": check.positives, "total": check.total,
            "checked_at": iso_utc(check.checked_at)}


def _read_check(r: FieldReader) -> VerdictCheck:
    return VerdictCheck(verdict=r.choice("verdict", VERDICTS), positives=r.integer("positives", None),
                        total=r.integer("total", None), checked_at=_time(r, "checked_at", r.text("checked_at")))


def _time(r: FieldReader, name: str, text: str) -> float:
    try:
        return parse_iso(text)
    except ValueError:
        raise r.fault(name, f"must be an ISO 8601 time, not {text[:40]!r}") from None
