"""What the MISP feed reads from ``indicators.enriched``, checked and bounded (pure).

Anyone who can write to the topic can put anything on it, so every event is
taken apart defensively: a record that is not a checked summary, a
``verdict_change`` or a community score, or whose indicator is not a valid
ip, domain, URL or hash, yields nothing. Values are normalized by the same
classifier intake uses, a URL gets the same privacy rule as before it was
sent (the feed shows what VirusTotal was sent, never a secret the SIEM
saw), and lists and texts are capped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from pipeline.contracts.card import SummaryCard
from pipeline.contracts.events import SummaryEvent, VerdictChange
from pipeline.errors import InputError, RecordError
from pipeline.outputs.stix import TLP_MARKINGS, tlp_level
from pipeline.rules.indicators import classify
from pipeline.rules.privacy import UrlPrivacy, redact

KINDS = frozenset({"ip", "domain", "url", "md5", "sha1", "sha256"})
VERDICTS = ("malicious", "suspicious", "benign", "unknown")
#: Resolved addresses kept on a domain's object (VirusTotal lists can run to thousands).
MAX_RESOLUTIONS = 10
MAX_TEXT = 64
COMMUNITY = "VirusTotal Community Reputation"
_TLP_ORDER = [name for name, _ in TLP_MARKINGS]

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Observation:
    """What one event says about an indicator: the facts a MISP object shows (kept per indicator and day)."""

    kind: str
    #: the indicator as MISP shows it: normalized, a URL as it was sent to VirusTotal
    value: str
    found: bool
    positives: int | None = None
    total: int | None = None
    scan_date: str | None = None
    #: highest TLP of the sighting, an index of the TLP 2.0 levels (-1: none)
    tlp: int = -1
    hashes: tuple[tuple[str, str], ...] = ()
    asn: str | None = None
    country: str | None = None
    resolutions: tuple[str, ...] = ()
    #: the verdict class before this one, when the event says (a verdict change)
    previous: str | None = None

    def verdict(self, indicator_at: int) -> str:
        """malicious (``indicator_at`` engines or more), suspicious (fewer), benign (none) or unknown."""
        if not self.found or not self.total:
            return "unknown"
        if self.positives is not None and self.positives >= indicator_at:
            return "malicious"
        return "suspicious" if self.positives else "benign"


@dataclass(frozen=True, slots=True)
class Sighted:
    """An observation and the indicator as its event names it (which joins an answer's attribute events
    to its summary: a URL there is as the SIEM sent it, not as MISP shows it)."""

    key: Key
    obs: Observation


@dataclass(frozen=True, slots=True)
class CommunityScore:
    """VirusTotal's community reputation of an indicator (an attribute event before its summary)."""

    key: Key
    score: str


def parse(value: bytes | None, privacy: UrlPrivacy) -> Sighted | CommunityScore | None:
    """The observation or score one record carries; None for anything else (never raises)."""
    try:
        event = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict):
        return None
    indicator = event.get("indicator")
    if not isinstance(indicator, dict):
        return None
    kind, raw = indicator.get("type"), indicator.get("value")
    if not isinstance(kind, str) or kind not in KINDS or not isinstance(raw, str):
        return None
    key = (str(kind), raw)
    if event.get("kind") == "attribute":
        return _community(key, event.get("attribute"))
    if event.get("kind") == "summary":
        return _summary(key, event, privacy)
    if event.get("kind") == "verdict_change":
        return _verdict_change(key, event, privacy)
    return None


def _community(key: Key, attribute: Any) -> CommunityScore | None:
    if not isinstance(attribute, dict) or attribute.get("name") != COMMUNITY:
        return None
    score = _text(attribute.get("value"))
    return None if score is None else CommunityScore(key, score)


def _summary(key: Key, doc: dict[str, Any], privacy: UrlPrivacy) -> Sighted | None:
    try:
        event = SummaryEvent.from_dict(doc)
    except RecordError:
        return None
    if event is None or event.card.checked is not True:
        return None  # not checked (skipped, pending, failed): no verdict to show
    card = event.card
    shown = _shown(key, card.sent_as, privacy)
    if shown is None:
        return None
    labels = list(event.origin.labels) if event.origin is not None else []
    return Sighted(key, Observation(
        key[0], shown, found=card.found is True, positives=_count(card.positives), total=_count(card.total),
        scan_date=_date(card.scan_date), tlp=_tlp(labels), hashes=_hashes(key[0], card),
        asn=_text(card.field("asn")), country=_text(card.field("country")),
        resolutions=_resolutions(key[0], card.field("resolutions"))))


def _verdict_change(key: Key, doc: dict[str, Any], privacy: UrlPrivacy) -> Sighted | None:
    try:
        change = VerdictChange.from_dict(doc)
    except RecordError:
        return None
    if change is None:
        return None
    shown = _shown(key, change.sent_as, privacy)
    if shown is None:
        return None
    current = change.current
    labels = list(change.origin.labels) if change.origin is not None else []
    return Sighted(key, Observation(key[0], shown, found=current.verdict != "unknown",
                                    positives=_count(current.positives), total=_count(current.total),
                                    tlp=_tlp(labels), previous=change.previous.verdict))


def _shown(key: Key, sent_as: Any, privacy: UrlPrivacy) -> str | None:
    """The indicator as MISP shows it: normalized; a URL as sent, under the privacy rule (None: not shown)."""
    kind, raw = key
    try:
        value = classify(sent_as if kind == "url" and isinstance(sent_as, str) else raw, kind).value
    except InputError:
        return None
    return redact(value, privacy).url if kind == "url" else value


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1_000_000 else None


def _text(value: Any) -> str | None:
    """A short printable text (a number is one too); None for anything else, or nothing left.
    Blank values matter: MISP and PyMISP drop an attribute whose value is blank after trimming."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = "".join(ch for ch in str(value)[:MAX_TEXT * 4] if ch.isprintable()).strip()[:MAX_TEXT]
    return text or None


def _date(value: Any) -> str | None:
    """An analysis date as MISP's datetime attribute value (``YYYY-MM-DD HH:MM:SS+00:00``)."""
    if not isinstance(value, str):
        return None
    try:  # vtstream writes UTC with "Z"; the seconds are all MISP shows
        moment = datetime.fromisoformat(value[:19])
    except ValueError:
        return None
    return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds") + "+00:00"


def _tlp(labels: list[Any]) -> int:
    level = tlp_level(labels[:100])
    return _TLP_ORDER.index(level) if level else -1


def _hashes(kind: str, card: SummaryCard) -> tuple[tuple[str, str], ...]:
    if kind not in ("md5", "sha1", "sha256"):
        return ()
    found = []
    for name, value in card.hashes.items():
        try:
            found.append((name, classify(value, name).value))
        except InputError:
            continue
    return tuple(found)


def _resolutions(kind: str, resolutions: Any) -> tuple[str, ...]:
    """A domain's resolved addresses, the first :data:`MAX_RESOLUTIONS` valid ones in VirusTotal's order."""
    if kind != "domain" or not isinstance(resolutions, list):
        return ()
    found: list[str] = []
    for item in resolutions[:MAX_RESOLUTIONS * 10]:
        address = item.get("ip") if isinstance(item, dict) else None
        if not isinstance(address, str):
            continue
        try:
            value = classify(address, "ip").value
        except InputError:
            continue
        if value not in found:
            found.append(value)
        if len(found) == MAX_RESOLUTIONS:
            break
    return tuple(found)
