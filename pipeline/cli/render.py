"""One readable line per enriched event, for ``vtstream tail`` and the demo."""

from __future__ import annotations

from typing import Any

from pipeline.contracts.card import SummaryCard
from pipeline.contracts.events import VERDICT_CHANGE, VerdictChange, iso_utc
from pipeline.contracts.verdict import VerdictCheck
from pipeline.errors import RecordError


#: Card fields a one-line summary leaves out: long lists, and what the line says otherwise.
_UNSHOWN = ("checked", "resolutions", "detections")


def format_event(event: Any) -> str:
    """One readable line for an enriched event (``vtstream tail``); never raises on a strange record."""
    if not isinstance(event, dict):
        return f"?         {str(event)[:200]}"
    ind = _object(event.get("indicator"))
    kind = event.get("kind")
    if kind == VERDICT_CHANGE:
        return _verdict_change(event)
    head = f"{kind or '?':<9} {ind.get('type', '?'):<6} {ind.get('value', '?')}"
    payload = _object(event.get(kind)) if isinstance(kind, str) else {}
    if kind == "attribute":
        return f"{head}  {payload.get('name')} = {payload.get('value')}"
    if kind == "relation":
        extra = ", ".join(f"{a.get('name')}={a.get('value')}" for a in payload.get("attributes") or ()
                          if isinstance(a, dict))
        return f"{head}  -> {payload.get('type')} {payload.get('value')}" + (f"  [{extra}]" if extra else "")
    if kind == "report":
        return f"{head}  report '{payload.get('title')}' ({len(payload.get('attributes') or ())} attributes)"
    if kind != "summary":
        return head
    try:
        card = SummaryCard.from_dict(payload)
    except RecordError as exc:
        return f"{head}  (unreadable: {exc})"
    if card.checked is False:
        return f"{head}  NOT CHECKED: {card.reason}"
    shown = {k: v for k, v in card.to_dict().items()
             if k not in _UNSHOWN and v not in (None, [], {}, 0, False) or k in ("found", "positives")}
    return f"{head}  " + " ".join(f"{k}={v}" for k, v in shown.items())


def _verdict_change(event: dict[str, Any]) -> str:
    """A verdict change, meant to be seen in a stream of summaries: a marker, the old and the new verdict.

    >>> print(_verdict_change({"kind": "verdict_change", "indicator": {"type": "domain", "value": "x.example"},
    ...     "previous": {"verdict": "benign", "positives": 0, "total": 70, "checked_at": "2026-01-01T00:00:00Z"},
    ...     "current": {"verdict": "malicious", "positives": 9, "total": 70, "checked_at": "2026-01-02T00:00:00Z"},
    ...     "first_seen": "2026-01-01T09:00:00Z", "sightings": 3}))
    *** VERDICT domain x.example  benign -> MALICIOUS  (0/70 -> 9/70)  3 sightings since 2026-01-01T09:00:00Z
    """
    try:
        change = VerdictChange.from_dict(event)
    except RecordError as exc:
        return f"*** VERDICT (unreadable: {exc})"
    assert change is not None  # the caller checked the kind
    seen = (f"{change.sightings} sightings since {iso_utc(change.first_seen)}" if change.first_seen is not None
            else "no sightings since the previous check")
    line = (f"*** VERDICT {change.indicator.type} {change.indicator.value}  {change.previous.verdict} -> "
            f"{change.current.verdict.upper()}  ({_ratio(change.previous)} -> {_ratio(change.current)})  {seen}")
    return line + (f"  [replay {change.replay}]" if change.replay else "")


def _ratio(check: VerdictCheck) -> str:
    return f"{check.positives}/{check.total}" if check.total else "-"


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
