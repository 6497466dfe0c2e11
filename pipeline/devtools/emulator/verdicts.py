"""Verdicts that change: ``POST /_emulator/verdicts`` sets how many engines flag an indicator.

VirusTotal's verdict on an indicator moves (engines update their signatures, a
rescan runs); the emulator's is a fixed function of the indicator unless set
here. A set verdict answers every later lookup of the indicator, v3 and v2,
with exactly that many engines flagging it as malicious and a new analysis date
(the emulator's time when it was set), until it is set again or cleared::

    POST /_emulator/verdicts {"type": "domain", "value": "evil.example", "positives": 12}
    POST /_emulator/verdicts {"type": "domain", "value": "evil.example", "positives": null}   # back to the default
    GET  /_emulator/verdicts   -> [{"type": "domain", "value": "evil.example", "positives": 12, "analysed_at": ...}]

``type`` is ip, domain, url or file (any of its hashes). A URL is matched as the
emulator received it (the form the client sent).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from pipeline.devtools.emulator.data import seeded
from pipeline.devtools.emulator.engines import FILE_ENGINES, EngineResult, file_verdicts, url_verdicts
from pipeline.devtools.emulator.filedata import update_date

TYPES = ("ip", "domain", "url", "file")
#: At most this many indicators have a set verdict (a control endpoint is still bounded).
MAX_SET = 10_000

Facts = TypeVar("Facts")


@dataclasses.dataclass
class VerdictOverrides:
    """Indicators with a set verdict: (type, value) -> (positives, analysed_at)."""

    by_indicator: dict[tuple[str, str], tuple[int, int]] = dataclasses.field(default_factory=dict)

    def set(self, spec: dict[str, Any], now: float) -> None:
        """Set (or with ``positives`` null, clear) one indicator's verdict; ValueError names what is wrong."""
        kind, value, positives = spec.get("type"), spec.get("value"), spec.get("positives", "missing")
        if kind not in TYPES:
            raise ValueError(f"type must be one of {', '.join(TYPES)}")
        if not isinstance(value, str) or not value or len(value) > 8192:
            raise ValueError("value must be a non-empty string (at most 8192 characters)")
        key = (kind, value.lower() if kind == "file" else value)
        if positives is None:
            self.by_indicator.pop(key, None)
            return
        if isinstance(positives, bool) or not isinstance(positives, int) or not 0 <= positives <= len(FILE_ENGINES):
            raise ValueError(f"positives must be an integer from 0 to {len(FILE_ENGINES)}, or null to clear")
        if key not in self.by_indicator and len(self.by_indicator) >= MAX_SET:
            raise ValueError(f"at most {MAX_SET} indicators may have a set verdict")
        self.by_indicator[key] = (positives, int(now))

    def listed(self) -> list[dict[str, Any]]:
        return [{"type": kind, "value": value, "positives": positives, "analysed_at": at}
                for (kind, value), (positives, at) in self.by_indicator.items()]

    def clear(self) -> None:
        self.by_indicator.clear()

    def applied(self, kind: str, names: tuple[str, ...], facts: Facts) -> Facts:
        """``facts`` (of an ip, domain or url, or a file known by any of ``names``) with the set verdict, if any."""
        found = next((self.by_indicator[(kind, name)] for name in names if (kind, name) in self.by_indicator), None)
        if found is None:
            return facts
        positives, at = found
        rng = seeded("override", names[0], str(positives))
        changes: dict[str, Any] = {"last_analysis_date": at}
        if kind == "file":
            changes["verdicts"] = _malicious(file_verdicts(rng, positives, getattr(facts, "family"), update_date(at)))
        else:
            changes["verdicts"] = _malicious(url_verdicts(rng, positives))
            changes["malicious"] = positives > 0
        return dataclasses.replace(facts, **changes)  # type: ignore[type-var]


def _malicious(results: list[EngineResult]) -> list[EngineResult]:
    """Every flagging engine says malicious, so the count set is the count VirusTotal's stats show."""
    return [dataclasses.replace(r, category="malicious") if r.detected else r for r in results]
