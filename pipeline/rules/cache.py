"""Cache entries: what the cache table holds per indicator key, and the rules on them.

An entry is a :class:`~pipeline.contracts.cache_entry.CachedResult` (VirusTotal answered)
or an :class:`~pipeline.contracts.cache_entry.InFlight` (a request is out), stored as orjson
bytes in a faust table whose changelog is co-partitioned with vt.lookups and
vt.responses. The freshness rule (:func:`is_fresh`) is decided here only; the
lookup stage and intake's cache copy both call it.

Only the summary is kept, not the VirusTotal body: a million indicators must fit
in a worker, and a cache hit answers with the summary card. The full mapped
events were published when the indicator was enriched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Container, Literal

from pipeline.contracts.cache_entry import CacheEntry, CachedResult, InFlight, cache_entry_from_bytes, waiter_key
from pipeline.contracts.card import SummaryCard
from pipeline.contracts.origin import Origin
from pipeline.errors import RecordError
from pipeline.settings.groups import CacheSettings


def decode(raw: bytes | None) -> CacheEntry | None:
    """Bytes from the table -> entry; unreadable bytes count as no entry (the indicator is asked again)."""
    if not raw:
        return None
    try:
        return cache_entry_from_bytes(raw)
    except RecordError:
        return None


def is_fresh(entry: CacheEntry | None, now: float) -> bool:
    """The freshness rule: a finished entry answers sightings until it expires.

    >>> is_fresh(CachedResult(SummaryCard(), fetched_at=0.0, expires_at=10.0), 9.5), is_fresh(None, 0.0)
    (True, False)
    """
    return isinstance(entry, CachedResult) and entry.expires_at > now


def answers(entry: CacheEntry | None, now: float, max_age_s: float | None = None) -> bool:
    """True when ``entry`` is a finished answer to serve at ``now``: fresh, or (a replay's
    ``--max-age``) fetched at most ``max_age_s`` seconds ago.

    >>> answers(CachedResult(SummaryCard(), fetched_at=0.0, expires_at=10.0), 20.0, max_age_s=30.0)
    True
    """
    if is_fresh(entry, now):
        return True
    return isinstance(entry, CachedResult) and max_age_s is not None and now - entry.fetched_at <= max_age_s


#: Refs of the last waiters an in-flight entry remembers, so a sighting replayed after a crash
#: is not listed twice (a replay re-reads at most a batch since the last commit).
RECENT_WAITERS = 32


@dataclass(frozen=True, slots=True)
class LookupDecision:
    """What the lookup stage does with one sighting.

    ``hit``: answer from ``entry``; ``request``: call VirusTotal and store
    ``entry`` (now in flight); ``wait``: an identical request is in flight, store
    ``entry`` and, when ``waiter`` is set, the sighting's own record under
    ``waiter``'s key; ``overflow``: in flight and the waiter list is full,
    answer "pending" now.
    """

    action: Literal["hit", "request", "wait", "overflow"]
    entry: CacheEntry
    waiter: tuple[int, Origin] | None = None  #: (index, sighting) of a new waiter record


def decide(entry: CacheEntry | None, origin: Origin, now: float, settings: CacheSettings,
           max_age_s: float | None = None, sent: Container[str] = ()) -> LookupDecision:
    """The cache and coalescing rule for one sighting of an indicator.

    Replays are recognised by the sighting's ``ref`` (topic/partition/offset):
    the sighting that caused the in-flight request asks again (its request may
    have been lost in a crash), unless ``sent`` (the generations of the requests
    acknowledged to this process) has that request: then it is a redelivery after a
    lost commit (the broker restarted, the group sought back), the request is on
    Kafka, and asking again would pay VirusTotal twice. A waiter is not listed twice.

    ``max_age_s`` (a replay's ``--max-age``) also accepts a finished entry
    fetched at most that long ago, past its TTL.

    >>> decide(None, Origin(ref="r/0/1"), 0.0, CacheSettings()).action
    'request'
    """
    ref = origin.ref
    if entry is not None and answers(entry, now, max_age_s):
        return LookupDecision("hit", entry)
    if isinstance(entry, InFlight) and now - entry.since < settings.inflight_timeout_s:
        # A replay after a crash: the entry may be stored while the request was not sent.
        if ref is not None and ref == entry.requester:
            return LookupDecision("wait" if entry.generation in sent else "request", entry)
        # A live sighting does not wait behind a replay's request in the lower lane: it asks
        # in the live lane; whichever answer comes first completes the entry.
        if entry.lane == "replay" and origin.replay is None:
            return LookupDecision("request", replace(entry, lane="live"))
        if ref is not None and (ref in entry.recent or any(w.ref == ref for w in entry.waiters)):
            return LookupDecision("wait", entry)
        if entry.joined >= settings.max_waiters:
            return LookupDecision("overflow", replace(entry, overflow=entry.overflow + 1))
        recent = entry.recent if ref is None else (*entry.recent, ref)[-RECENT_WAITERS:]
        return LookupDecision("wait", replace(entry, waiting=entry.waiting + 1, recent=recent), (entry.waiting, origin))
    return LookupDecision("request", InFlight(since=now, requester=ref,
                                       lane="replay" if origin.replay is not None else "live"))


class SentRequests:
    """The generations of the last ``size`` requests the broker acknowledged to the lookup stage of
    this process (for :func:`decide`): only this process knows they are on Kafka; a restarted one
    asks again."""

    def __init__(self, size: int = 65536) -> None:
        self.size = size
        self._sent: dict[str, None] = {}  # insertion-ordered: the oldest goes first

    def add(self, generation: str) -> None:
        self._sent[generation] = None
        if len(self._sent) > self.size:
            del self._sent[next(iter(self._sent))]

    def __contains__(self, generation: object) -> bool:
        return generation in self._sent


def completed(summary: SummaryCard, found: bool, now: float, settings: CacheSettings) -> CachedResult:
    """The entry after VirusTotal answered: fresh for the positive or negative TTL."""
    ttl = settings.ttl_s if found else settings.negative_ttl_s
    return CachedResult(summary=summary, fetched_at=now, expires_at=now + ttl)


def waiters(entry: CacheEntry | None) -> tuple[Origin, ...]:
    """Sightings an older version listed in an in-flight entry itself (see :func:`waiter_keys`)."""
    return entry.waiters if isinstance(entry, InFlight) else ()


def waiter_keys(key: bytes, entry: CacheEntry | None) -> list[bytes]:
    """The table keys of the waiter records of ``key``'s request in flight, in the order they joined.

    >>> len(waiter_keys(b"ip:8.8.8.8", InFlight(since=1.0, waiting=3)))
    3
    """
    if not isinstance(entry, InFlight):
        return []
    generation = entry.generation
    return [waiter_key(key, generation, index) for index in range(entry.waiting)]


def new_waiter_key(key: bytes, decision: LookupDecision) -> bytes | None:
    """Where the lookup stage stores the sighting of a ``wait`` decision (None: nothing to store)."""
    if decision.waiter is None or not isinstance(decision.entry, InFlight):
        return None
    return waiter_key(key, decision.entry.generation, decision.waiter[0])
