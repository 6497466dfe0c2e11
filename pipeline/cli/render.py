"""One readable line per enriched event, for ``vtstream tail`` and the demo."""

from __future__ import annotations

from typing import Any

from pipeline.contracts.card import SummaryCard
from pipeline.errors import RecordError


#: Card fields a one-line summary leaves out: long lists, and what the line says otherwise.
_UNSHOWN = ("checked", "resolutions", "detections")


def format_event(event: Any) -> str:
    """One readable line for an enriched event (``vtstream tail``); never raises on a strange record."""
    if not isinstance(event, dict):
        return f"?         {str(event)[:200]}"
    ind = _object(event.get("indicator"))
    kind = event.get("kind")
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


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
