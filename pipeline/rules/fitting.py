"""Fitting output records under Kafka's record limit (``VTSTREAM_KAFKA_MAX_RECORD_BYTES``).

A VirusTotal body can hold more than one Kafka record carries: a relation with
thousands of attributes, a report of every engine, a summary list of every
resolution. Rather than fail, the results stage trims: a list inside an event
or a card loses items from its end (the count lost goes beside it, ``omitted``
or ``<list>_omitted``), an event that cannot fit even so is left out, and the
summary card says what was left out in its ``notes``. Pure: sizes are
measured on the orjson encoding the outbox sends.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.contracts.card import SummaryCard

#: Bytes a record takes on the broker beside its key and value (headers, lengths, the
#: batch header when it goes alone): what :func:`budget` keeps free under the limit.
RECORD_OVERHEAD = 512


def budget(limit: int, key: bytes | str | None) -> int:
    """Bytes a record's value may take under ``limit`` with this key."""
    key_bytes = key.encode() if isinstance(key, str) else key or b""
    return limit - RECORD_OVERHEAD - len(key_bytes)


def size(value: Any) -> int:
    """The encoded size of a JSON value (an unencodable one counts as too large)."""
    try:
        return len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        return 1 << 62


@dataclass
class Fitted:
    """What :func:`fit_events` kept, and what it had to leave out, per event kind."""

    events: list[dict[str, Any]]
    trimmed: Counter[str] = field(default_factory=Counter)
    omitted: Counter[str] = field(default_factory=Counter)

    def notes(self, limit: int) -> tuple[str, ...]:
        """What the summary card says about it (nothing when everything fit)."""
        said = []
        for kind, count in sorted(self.trimmed.items()):
            said.append(f"{count} {kind} event(s) keep only the first of their attributes ('omitted' counts "
                        f"the rest): larger than a Kafka record ({limit:,} bytes, VTSTREAM_KAFKA_MAX_RECORD_BYTES)")
        for kind, count in sorted(self.omitted.items()):
            said.append(f"{count} {kind} event(s) left out: each larger than a Kafka record ({limit:,} bytes, "
                        "VTSTREAM_KAFKA_MAX_RECORD_BYTES)")
        return tuple(said)


def fit_events(events: list[dict[str, Any]], room: int) -> Fitted:
    """Each event as it is when it fits in ``room`` bytes, trimmed when a list inside it can give
    way (a relation's or a report's attributes), else left out.

    >>> relation = {"kind": "relation", "relation": {"value": "a.example", "attributes": [{"n": "x" * 50}] * 40}}
    >>> fitted = fit_events([relation], 400)
    >>> fitted.events[0]["relation"]["omitted"], fitted.trimmed
    (35, Counter({'relation': 1}))
    """
    fitted = Fitted([])
    for event in events:
        over = size(event) - room
        if over <= 0:
            fitted.events.append(event)
            continue
        kind = str(event.get("kind", "event"))
        smaller = _without_tail(event, kind, over)
        if smaller is not None and size(smaller) <= room:
            fitted.events.append(smaller)
            fitted.trimmed[kind] += 1
        else:
            fitted.omitted[kind] += 1
    return fitted


def _without_tail(event: dict[str, Any], kind: str, over: int) -> dict[str, Any] | None:
    """``event`` with the last of its payload's attributes dropped, about ``over`` bytes of them."""
    payload = event.get(kind)
    if not isinstance(payload, dict) or not isinstance(payload.get("attributes"), list):
        return None
    items: list[Any] = payload["attributes"]
    saved, keep = 0, len(items)
    while keep > 0 and saved < over + 32:  # 32: room for the "omitted" count itself
        keep -= 1
        saved += size(items[keep]) + 1
    return {**event, kind: {**payload, "attributes": items[:keep], "omitted": len(items) - keep}}


def fit_card(card: SummaryCard, room: int, limit: int) -> SummaryCard:
    """``card`` as it is when it fits in ``room`` bytes; else its longest lists halved (their
    ``<list>_omitted`` counts raised) and then its largest fields left out, with a note.

    >>> card = SummaryCard.mapped_from(True, {"resolutions": list(range(1000)), "resolutions_omitted": 0})
    >>> small = fit_card(card, 1000, 1048576)
    >>> len(small.field("resolutions")), small.field("resolutions_omitted"), len(small.notes)
    (250, 750, 1)
    """
    if size(card.to_dict()) <= room or card.mapped is None:
        return card
    mapped = dict(card.mapped)
    cut: list[str] = []

    def current() -> int:
        return size(card.with_fields(mapped=mapped).to_dict())

    while current() > room:
        lists = [(size(value), name) for name, value in mapped.items() if isinstance(value, list) and value]
        if not lists:
            break
        name = max(lists)[1]
        items = mapped[name]
        mapped[name] = items[:len(items) // 2]
        if isinstance(mapped.get(f"{name}_omitted"), int):
            mapped[f"{name}_omitted"] += len(items) - len(mapped[name])
        if name not in cut:
            cut.append(name)
    while current() > room and any(value is not None for value in mapped.values()):
        name = max((size(value), name) for name, value in mapped.items() if value is not None)[1]
        mapped[name] = None
        cut.append(name)
    note = (f"summary trimmed to fit a Kafka record ({limit:,} bytes, VTSTREAM_KAFKA_MAX_RECORD_BYTES): "
            f"{', '.join(dict.fromkeys(cut))} cut")
    return card.with_fields(mapped=mapped, notes=(*card.notes, note))
