"""Cache entries: what the cache table holds per indicator key, and the rules on them.

An entry is a small dict, stored as orjson bytes in a faust table whose
changelog is co-partitioned with vt.lookups and vt.responses::

    {"state": "done", "found": true, "summary": {...}, "fetched_at": 1700000000.0,
     "expires_at": 1700086400.0}
    {"state": "inflight", "since": 1700000000.0, "requester": "indicators.raw/0/17",
     "waiters": [origin, ...], "overflow": 0, "lane": "live" | "replay"}

Only the summary is kept, not the VirusTotal body: a million indicators must fit
in a worker, and a cache hit answers with the summary card. The full mapped
events were published when the indicator was enriched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from pipeline.settings import Settings

Entry = dict[str, Any]


def decode(raw: bytes | None) -> Entry | None:
    """Bytes from the table -> entry; unreadable bytes count as no entry."""
    if not raw:
        return None
    try:
        entry = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return entry if isinstance(entry, dict) else None


def encode(entry: Entry) -> bytes:
    return orjson.dumps(entry)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the lookup stage does with one sighting.

    ``hit``: answer from ``entry``; ``request``: call VirusTotal and store
    ``entry`` (now in flight); ``wait``: an identical request is in flight, store
    ``entry`` (the sighting joined its waiters); ``overflow``: in flight and the
    waiter list is full, answer "pending" now.
    """

    action: Literal["hit", "request", "wait", "overflow"]
    entry: Entry


def answers(entry: Entry | None, now: float, max_age_s: float | None = None) -> bool:
    """True when ``entry`` is a finished answer to serve at ``now``: unexpired, or (a replay's
    ``--max-age``) fetched at most ``max_age_s`` seconds ago.

    >>> answers({"state": "done", "fetched_at": 0.0, "expires_at": 10.0}, 20.0, max_age_s=30.0)
    True
    """
    if entry is None or entry.get("state") != "done":
        return False
    if entry.get("expires_at", 0) > now:
        return True
    return max_age_s is not None and now - entry.get("fetched_at", float("-inf")) <= max_age_s


def decide(entry: Entry | None, origin: dict[str, Any], now: float, settings: Settings,
           max_age_s: float | None = None) -> Verdict:
    """The cache and coalescing rule for one sighting of an indicator.

    Replays are recognised by the sighting's ``ref`` (topic/partition/offset):
    the sighting that caused the in-flight request asks again (its request may
    have been lost in a crash), a waiter is not listed twice.

    ``max_age_s`` (a replay's ``--max-age``) also accepts a finished entry
    fetched at most that long ago, past its TTL.

    >>> from pipeline.settings import Settings
    >>> decide(None, {"ref": "r/0/1"}, 0.0, Settings()).action
    'request'
    """
    ref = origin.get("ref")
    if entry is not None:
        if answers(entry, now, max_age_s):
            return Verdict("hit", entry)
        if entry.get("state") == "inflight" and now - entry.get("since", 0) < settings.inflight_timeout_s:
            # A replay after a crash: the entry may be stored while the request was not sent.
            if ref is not None and ref == entry.get("requester"):
                return Verdict("request", entry)
            # A live sighting does not wait behind a replay's request in the lower lane: it asks
            # in the live lane; whichever answer comes first completes the entry.
            if entry.get("lane") == "replay" and not origin.get("replay"):
                return Verdict("request", {**entry, "lane": "live"})
            waiters = entry.get("waiters", [])
            if ref is not None and any(w.get("ref") == ref for w in waiters):
                return Verdict("wait", entry)
            if len(waiters) >= settings.max_waiters:
                return Verdict("overflow", {**entry, "overflow": entry.get("overflow", 0) + 1})
            return Verdict("wait", {**entry, "waiters": [*waiters, origin]})
    return Verdict("request", {"state": "inflight", "since": now, "requester": ref, "waiters": [],
                               "overflow": 0, "lane": "replay" if origin.get("replay") else "live"})


def cached_summary(entry: Entry) -> dict[str, Any]:
    """The summary card a cache hit answers with."""
    return {**entry["summary"], "cached": True, "fetched_at": entry.get("fetched_at")}


def completed(summary: dict[str, Any], found: bool, now: float, settings: Settings) -> Entry:
    """The entry after VirusTotal answered: fresh for the positive or negative TTL."""
    ttl = settings.cache_ttl_s if found else settings.cache_negative_ttl_s
    return {"state": "done", "found": found, "summary": summary, "fetched_at": now,
            "expires_at": now + ttl}


def waiters(entry: Entry | None) -> list[dict[str, Any]]:
    """Sightings that joined an in-flight lookup and still need their summary."""
    if entry is None or entry.get("state") != "inflight":
        return []
    found = entry.get("waiters")
    return found if isinstance(found, list) else []
