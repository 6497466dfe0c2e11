"""The summary card: what one sighting's ``summary`` event says about its indicator.

The mapping engine makes a card from a VirusTotal body (``found``, the base
fields ``positives`` / ``total`` / ``scan_date``, and the per-type fields the
mapping files name under ``summary:``, such as ``asn`` or ``resolutions``);
the stages add what the pipeline knows (checked, cached, pending, why not).
The cache keeps the card; every summary event carries it, flat::

    {"found": true, "positives": 3, "total": 70, "scan_date": "...", "asn": 15169, ...,
     "checked": true, "cached": true, "fetched_at": 1767225600.0}

A card that no body was mapped into ("not checked": a policy skip, a quota
spent, a scan still queued) has no base or mapped fields at all. Silence never
means clean: every sighting gets a card.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import orjson

from pipeline.contracts.indicator import HASH_TYPES
from pipeline.errors import RecordError

#: Fields every mapped card has, found or not.
BASE_FIELDS = ("positives", "total", "scan_date")
_FLAGS = ("pending", "skipped", "coalesced")
_OPTIONAL = ("reason", "rule", "cached", "fetched_at", "sent_as")
#: Values :meth:`SummaryCard.derived` keeps per card (its wire form, an event id's digest prefix, a URL's copy).
_DERIVED_KEYS = 8
_MISSING = object()
_FIXED = frozenset(("found", "checked", *BASE_FIELDS, *_FLAGS, *_OPTIONAL, "notes", "redacted"))


@dataclass(frozen=True, slots=True)
class SummaryCard:
    """One summary card (see the module docstring); ``mapped`` is None when no body was mapped."""

    found: bool | None = None
    checked: bool | None = None
    positives: int | None = None
    total: int | None = None
    scan_date: str | None = None
    mapped: Mapping[str, Any] | None = None
    reason: str | None = None
    pending: bool = False
    skipped: bool = False
    rule: str | None = None
    notes: tuple[str, ...] = ()
    cached: bool | None = None
    fetched_at: float | None = None
    coalesced: bool = False
    sent_as: str | None = None
    redacted: tuple[str, ...] | None = None
    _derived: dict[Any, Any] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def not_checked(cls, reason: str, *, pending: bool = False, skipped_by: str | None = None) -> "SummaryCard":
        """VirusTotal was not asked, or has not answered yet.

        ``pending``: the answer may still come (a scan queued, a quota spent, a lookup
        in flight); ``skipped_by``: the policy rule that kept the indicator away.

        >>> SummaryCard.not_checked("quota spent", pending=True).to_dict()
        {'found': None, 'checked': False, 'reason': 'quota spent', 'pending': True}
        """
        return cls(found=None, checked=False, reason=reason, pending=pending, skipped=skipped_by is not None,
                   rule=skipped_by)

    @classmethod
    def mapped_from(cls, found: bool, fields: Mapping[str, Any]) -> "SummaryCard":
        """The card a mapping made of a body: ``fields`` as the mapping files name them; a base
        field of the wrong type (a mapping without ``as: int`` / ``as: date``) is left empty."""
        mapped = {k: v for k, v in fields.items() if k not in _FIXED}
        positives, total, scan_date = fields.get("positives"), fields.get("total"), fields.get("scan_date")
        return cls(found=found, positives=positives if _is_int(positives) else None,
                   total=total if _is_int(total) else None,
                   scan_date=scan_date if isinstance(scan_date, str) else None, mapped=mapped)

    def checked_now(self, notes: tuple[str, ...] = ()) -> "SummaryCard":
        """The card of a body VirusTotal just answered with (``notes``: what the gateway adds)."""
        return replace(self, checked=True, notes=notes or self.notes)

    def pending_on(self, not_checked: "SummaryCard") -> "SummaryCard":
        """A mapped scan step's card that still says "not checked" (a submitted scan)."""
        return replace(self, found=None, checked=False, reason=not_checked.reason, pending=not_checked.pending)

    def from_cache(self, fetched_at: float) -> "SummaryCard":
        """The card a cache hit answers with."""
        return replace(self, cached=True, fetched_at=fetched_at)

    def with_fields(self, **fields: Any) -> "SummaryCard":
        """A copy with some fixed fields changed (``cached``, ``coalesced``, ``sent_as``, ...)."""
        return replace(self, **fields)

    @property
    def hashes(self) -> dict[str, str]:
        """The file hashes the mapping put on a file's card (md5, sha1, sha256), lower-case."""
        mapped = self.mapped or {}
        return {name: str(mapped[name]).lower() for name in HASH_TYPES if mapped.get(name)}

    @property
    def suspicious(self) -> int | None:
        """Engines that called it suspicious (v3 ``last_analysis_stats.suspicious``; v2 has no such count)."""
        value = (self.mapped or {}).get("suspicious")
        return value if _is_int(value) else None

    def field(self, name: str) -> Any:
        """A mapped field by the name the mapping files give it (None when absent)."""
        return (self.mapped or {}).get(name)

    def to_dict(self) -> dict[str, Any]:
        """The flat wire form (a summary event's payload, the cache's stored card)."""
        doc: dict[str, Any] = {"found": self.found}
        if self.checked is not None:
            doc["checked"] = self.checked
        if self.mapped is not None:
            doc["positives"], doc["total"], doc["scan_date"] = self.positives, self.total, self.scan_date
            doc.update(self.mapped)
        if self.reason is not None:
            doc["reason"] = self.reason
        if self.pending:
            doc["pending"] = True
        if self.skipped:
            doc["skipped"] = True
        if self.rule is not None:
            doc["rule"] = self.rule
        if self.notes:
            doc["notes"] = list(self.notes)
        if self.cached is not None:
            doc["cached"] = self.cached
        if self.fetched_at is not None:
            doc["fetched_at"] = self.fetched_at
        if self.coalesced:
            doc["coalesced"] = True
        if self.sent_as is not None:
            doc["sent_as"] = self.sent_as
        if self.redacted is not None:
            doc["redacted"] = list(self.redacted)
        return doc

    def wire(self) -> bytes:
        """:meth:`to_dict` as canonical JSON (keys sorted), serialised once per card: a cache hit's card
        is shared by every hit of its entry, and its summary events embed these bytes and digest them
        for their ids (serialising the card per hit was a sixth of a hit's cost, ``vtstream bench hot-path``)."""
        wire: bytes = self.derived("wire", lambda: orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS))
        return wire

    def derived(self, key: Any, make: Callable[[], Any]) -> Any:
        """``make()``, computed once per card and ``key`` (the card is frozen: it never goes stale).
        A few keys per card at most are kept: a card is shared by every hit of a cache entry."""
        derived = self._derived
        if derived is None:
            derived = {}
            object.__setattr__(self, "_derived", derived)
        found = derived.get(key, _MISSING)
        if found is _MISSING:
            if len(derived) >= _DERIVED_KEYS:
                derived.clear()
            found = derived[key] = make()
        return found

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], record: str = "summary card") -> "SummaryCard":
        """A card from its flat wire form; unknown fields are mapped fields. Raises RecordError
        naming the field at fault."""
        get = doc.get
        mapped = {k: v for k, v in doc.items() if k not in _FIXED}
        is_mapped = bool(mapped) or any(k in doc for k in BASE_FIELDS)
        card = cls(found=get("found"), checked=get("checked"), positives=get("positives"), total=get("total"),
                   scan_date=get("scan_date"), mapped=mapped if is_mapped else None, reason=get("reason"),
                   pending=get("pending") is True, skipped=get("skipped") is True, rule=get("rule"),
                   notes=_strings(get("notes"), record, "notes") or (), cached=get("cached"), fetched_at=get("fetched_at"),
                   coalesced=get("coalesced") is True, sent_as=get("sent_as"),
                   redacted=_strings(get("redacted"), record, "redacted"))
        card._check(record)
        return card

    def _check(self, record: str) -> None:
        for name, kinds in (("found", (bool, type(None))), ("checked", (bool, type(None))),
                            ("positives", (int, type(None))), ("total", (int, type(None))),
                            ("reason", (str, type(None))), ("rule", (str, type(None))),
                            ("cached", (bool, type(None))), ("fetched_at", (int, float, type(None))),
                            ("sent_as", (str, type(None)))):
            value = getattr(self, name)
            if not isinstance(value, kinds) or (name in ("positives", "total") and isinstance(value, bool)):
                raise RecordError(record, name, f"has the wrong type ({type(value).__name__})")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _strings(value: Any, record: str, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RecordError(record, name, "must be a list of strings")
    return tuple(value)
