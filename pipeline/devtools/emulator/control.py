"""Quota gate, counters and fault injection of the VirusTotal emulator.

The gate is strict: at most ``rate_per_minute`` ACCEPTED requests in any sliding
60 s window (rejected requests do not enter the window), and at most
``daily_quota`` accepted requests per UTC day. The counters record, per request
kind (object lookups, relationship fetches, behaviour summaries, submissions,
analysis polls, upload URLs), how many requests were accepted or rejected, and
the largest number of accepted requests seen in any 60 s window, which is what a
test of a client's rate limiter asserts on, and in any 1 s window, which shows
a burst (many starts at once) even in a test far shorter than a minute.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

WINDOW_S = 60.0
BURST_WINDOW_S = 1.0
KINDS = ("object", "relationship", "behaviour_summary", "submission", "analysis", "upload_url")
FAULT_MODES = ("none", "500", "503", "429", "timeout", "truncated", "malformed", "reset", "401")


@dataclass
class Gate:
    """Sliding-window rate limit and UTC-day quota over accepted requests."""

    window: deque[float] = field(default_factory=deque)
    max_in_window: int = 0
    burst: deque[float] = field(default_factory=deque)
    max_in_burst_window: int = 0
    day: int = -1
    day_count: int = 0
    hour: int = -1
    hour_count: int = 0

    def _trim(self, now: float) -> None:
        while self.window and self.window[0] <= now - WINDOW_S:
            self.window.popleft()

    def allows(self, now: float, rate_per_minute: int | None, daily_quota: int | None) -> str | None:
        """None if a request may be accepted now, else why not ("rate" or "daily")."""
        self._trim(now)
        if int(now // 86_400) != self.day:
            self.day, self.day_count = int(now // 86_400), 0
        if daily_quota is not None and self.day_count >= daily_quota:
            return "daily"
        if rate_per_minute is not None and len(self.window) >= rate_per_minute:
            return "rate"
        return None

    def accept(self, now: float) -> None:
        self._trim(now)
        self.window.append(now)
        self.day_count += 1
        if int(now // 3600) != self.hour:
            self.hour, self.hour_count = int(now // 3600), 0
        self.hour_count += 1
        self.max_in_window = max(self.max_in_window, len(self.window))
        while self.burst and self.burst[0] <= now - BURST_WINDOW_S:
            self.burst.popleft()
        self.burst.append(now)
        self.max_in_burst_window = max(self.max_in_burst_window, len(self.burst))

    def in_window(self, now: float) -> int:
        self._trim(now)
        return len(self.window)


@dataclass
class Stats:
    """Request counters; :meth:`snapshot` is the body of ``GET /_emulator/stats``."""

    faults_injected: int = 0
    not_found: int = 0
    in_flight: int = 0  # API requests being answered right now
    max_in_flight: int = 0
    #: Gated requests by kind, then by outcome: the one count of each (:meth:`outcome` adds kinds up).
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    by_api: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    lookups_by_indicator: Counter[str] = field(default_factory=Counter)

    def kind(self, kind: str) -> Counter[str]:
        return self.by_kind.setdefault(kind, Counter())

    def record(self, kind: str, api: str, outcome: str) -> None:
        """``outcome`` is accepted | rejected_quota | rejected_daily | rejected_auth."""
        self.kind(kind)[outcome] += 1
        if outcome == "accepted":
            self.by_api[api] += 1

    def outcome(self, outcome: str) -> int:
        """Requests of every kind that ended as ``outcome``."""
        return sum(counts[outcome] for counts in self.by_kind.values())

    def lookup(self, indicator: str) -> None:
        self.lookups_by_indicator[indicator] += 1

    def snapshot(self, gate: Gate, now: float) -> dict[str, Any]:
        lookups = sum(self.lookups_by_indicator.values())
        kinds = {k: {"accepted": self.kind(k)["accepted"],
                     "rejected": sum(v for o, v in self.kind(k).items() if o != "accepted")} for k in KINDS}
        return {
            "accepted": self.outcome("accepted"),
            # the daily quota is a quota too: its rejections count in both
            "rejected_quota": self.outcome("rejected_quota") + self.outcome("rejected_daily"),
            "rejected_daily": self.outcome("rejected_daily"), "rejected_auth": self.outcome("rejected_auth"),
            "faults_injected": self.faults_injected,
            "max_accepted_in_any_60s": gate.max_in_window, "accepted_last_60s": gate.in_window(now),
            "max_accepted_in_any_1s": gate.max_in_burst_window, "max_in_flight": self.max_in_flight,
            "accepted_today": gate.day_count,
            "by_kind": kinds, **{f"{k}_requests": v["accepted"] for k, v in kinds.items()},
            "by_api": dict(self.by_api), "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "lookups": lookups, "unique_lookups": len(self.lookups_by_indicator),
            "repeated_lookups": lookups - len(self.lookups_by_indicator),
            "max_lookups_per_indicator": max(self.lookups_by_indicator.values(), default=0),
            "top_lookups": dict(self.lookups_by_indicator.most_common(10)),
            "not_found": self.not_found,
        }


_API_KEY_PARAM = re.compile(r"(apikey=)[^&]*", re.I)
_USER_IN_PATH = re.compile(r"(/users/)[^/?]*")


@dataclass
class RequestLog:
    """The last 2,000 API requests as received: method, path with query, and the body of
    form or JSON requests (uploads are not kept). ``GET /_emulator/requests`` returns it, so
    a test can show what a client sent, not only how often. v2 ``apikey`` values are masked."""

    entries: deque[dict[str, str]] = field(default_factory=lambda: deque(maxlen=2000))

    def add(self, method: str, target: str, body: str) -> None:
        masked = _USER_IN_PATH.sub(r"\1***", _API_KEY_PARAM.sub(r"\1***", target))
        self.entries.append({"method": method, "target": masked,
                             "body": _API_KEY_PARAM.sub(r"\1***", body)})


@dataclass
class Faults:
    """The active fault: ``mode`` for the next ``remaining`` requests whose path contains ``match``."""

    mode: str = "none"
    remaining: int | None = None
    match: str | None = None

    def set(self, spec: dict[str, Any]) -> None:
        mode = str(spec.get("mode", "none"))
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; one of {', '.join(FAULT_MODES)}")
        count = spec.get("count")
        if count is not None and (not isinstance(count, int) or count < 0):
            raise ValueError("count must be a non-negative integer or null")
        match = spec.get("match")
        if match is not None and not isinstance(match, str):
            raise ValueError("match must be a string or null")
        if count == 0:
            mode, count, match = "none", None, None
        self.mode, self.remaining, self.match = mode, count, match

    def take(self, path: str) -> str | None:
        """The fault to inject into a request for ``path``, consuming one use."""
        if self.mode == "none" or (self.match and self.match not in path):
            return None
        mode = self.mode
        if self.remaining is not None:
            self.remaining -= 1
            if self.remaining <= 0:
                self.mode, self.remaining, self.match = "none", None, None
        return mode

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "count": self.remaining, "match": self.match}
