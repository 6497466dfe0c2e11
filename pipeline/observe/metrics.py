"""Prometheus metrics of one worker, on a registry of its own.

Each app owns a :class:`Metrics` (``ctx.metrics``), so tests and tools that
build several apps in one process never share counters. Instrumentation sits
in a few shared places, not in the stages:

- the batch loops (:mod:`pipeline.kafka.runtime`, :mod:`pipeline.kafka.direct`)
  count records in per stage and watch every record going out
  (:meth:`Metrics.saw_output`): dead letters, policy skips, cache hits,
  coalesced answers, verdict changes and the enrich latency are read off the
  summaries, verdict_change events and dead letters the stages already produce;
- the VirusTotal client times every request (:meth:`Metrics.vt_request`);
- quota, parked records and consumer lag are read when Prometheus scrapes,
  from the gateway's governor and the consumers' offsets (:class:`_Readings`).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from topics import RETRY_PREFIX

from pipeline.contracts.events import SummaryEvent, VerdictChange
from pipeline.contracts.wire import DeadLetter

#: Metrics are served with this content type (Prometheus text format 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: From input record to summary: one-hop cache hits take milliseconds, a parked scan hours.
ENRICH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)

#: offsets per topic partition a consumer has in hand: (topic, partition) -> (end, committed);
#: committed is None while the group has never committed the partition (lag then counts from 0)
OffsetReader = Callable[[], Mapping[tuple[str, int], tuple[int, "int | None"]]]


@dataclass(frozen=True)
class QuotaReading:
    """What the gateway's governor says about one quota window."""

    window: str
    used: int
    remaining: int | None


class Metrics:
    """Every ``vtstream_*`` metric of one worker; :meth:`exposition` renders them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.records = Counter("vtstream_records", "Records read, per stage.", ["stage"], registry=r)
        self.coalesced = Counter("vtstream_coalesced", "Duplicate sightings answered by another sighting's "
                                 "VirusTotal call.", registry=r)
        self.policy_skips = Counter("vtstream_policy_skips", "Indicators policy kept away from VirusTotal, "
                                    "per rule.", ["rule"], registry=r)
        self.vt_requests = Counter("vtstream_vt_requests", "VirusTotal HTTP requests, per endpoint and status "
                                   "(HTTP code, or 'error' when no answer came).", ["endpoint", "status"], registry=r)
        self.vt_seconds = Histogram("vtstream_vt_request_seconds", "Duration of VirusTotal HTTP requests.",
                                    registry=r)
        self.dead_letters = Counter("vtstream_dead_letters", "Records sent to vt.dead, per stage.", ["stage"],
                                    registry=r)
        self.verdict_changes = Counter("vtstream_verdict_changes", "verdict_change events: a lookup gave another "
                                       "verdict than the last one known, per verdict before and after.",
                                       ["from", "to"], registry=r)
        self._per_summary = _PerSummary()
        r.register(self._per_summary)
        self._readings = _Readings()
        r.register(self._readings)

    # ------------------------------------------------------------ recording

    def watcher(self, stage: str, clock: Callable[[], float]) -> Callable[[str, Any], None]:
        """What an outbox calls for every record ``stage`` sends: :meth:`saw_output`."""
        return partial(self.saw_output, stage, clock)  # a partial: no Python frame of its own per record

    def saw_output(self, stage: str, clock: Callable[[], float], topic: str, value: Any) -> None:
        """Count what one outgoing record says about the run."""
        if not isinstance(value, SummaryEvent):  # most records are summaries
            if isinstance(value, DeadLetter):
                self.dead_letters.labels(value.stage or stage).inc()
            elif isinstance(value, VerdictChange):
                self.verdict_changes.labels(value.previous.verdict, value.current.verdict).inc()
            return
        card, counts = value.card, self._per_summary
        if card.skipped:
            self.policy_skips.labels(card.rule or "policy").inc()
        elif card.cached:
            counts.hits["one-hop" if stage == "intake" else "lookup"] += 1
        elif card.coalesced:
            self.coalesced.inc()
        received = value.origin.received_at if value.origin is not None else None
        if received is not None and not card.pending:
            counts.observe(max(0.0, clock() - received))

    def one_hop(self, clock: Callable[[], float], received_at: float) -> None:
        """A cache hit intake answered without building its event (:meth:`saw_output`'s count of one)."""
        counts = self._per_summary
        counts.hits["one-hop"] += 1
        counts.observe(max(0.0, clock() - received_at))

    def vt_request(self, method: str, path: str, status: int | None, seconds: float) -> None:
        """One VirusTotal HTTP request; ``status`` None when it got no answer."""
        self.vt_requests.labels(endpoint_label(method, path), "error" if status is None else str(status)).inc()
        self.vt_seconds.observe(seconds)

    # ------------------------------------------------------------- readings

    def read_quota(self, reader: Callable[[], list[QuotaReading]]) -> None:
        """Report the gateway's quota windows at each scrape."""
        self._readings.quota = reader

    def read_offsets(self, reader: OffsetReader) -> None:
        """Report a consumer's lag (and the retry tiers' parked records) at each scrape."""
        self._readings.offsets.append(reader)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)


_IDENTIFIER = re.compile(r"/(ip_addresses|domains|urls|files|analyses)/[^/]+")


def endpoint_label(method: str, path: str) -> str:
    """A request path without the indicator in it, so the label stays low in cardinality.

    >>> endpoint_label("GET", "/api/v3/domains/example.com/resolutions")
    'GET /api/v3/domains/{id}/resolutions'
    >>> endpoint_label("POST", "https://upload.example/abc?x=1")
    'POST upload_url'
    """
    if path.startswith(("http://", "https://")):
        return f"{method} upload_url"
    return f"{method} {_IDENTIFIER.sub(lambda m: f'/{m.group(1)}/{{id}}', path)}"


class _PerSummary(Collector):
    """The two counts every summary updates, the cache hits per path and the enrich latency, in plain
    numbers read at scrape time. prometheus_client's own counter and histogram take a lock per update:
    three per cache hit (``vtstream bench hot-path``). Updated on the worker's event loop, which also
    serves ``/metrics``."""

    def __init__(self) -> None:
        self.hits = {"one-hop": 0, "lookup": 0}
        self.buckets = [0] * (len(ENRICH_BUCKETS) + 1)  # the last one: above every bound
        self.seconds = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect_left(ENRICH_BUCKETS, seconds)] += 1  # the first bound >= seconds: le
        self.seconds += seconds

    def collect(self) -> Iterator[Metric]:
        hits = CounterMetricFamily("vtstream_cache_hits", "Summaries served from the cache, per path: "
                                   "one-hop (intake's copy) or lookup (the cache table).", labels=["path"])
        for path, count in self.hits.items():
            hits.add_metric([path], count)
        cumulative, running = [], 0
        for bound, count in zip((*map(floatToGoString, ENRICH_BUCKETS), "+Inf"), self.buckets):
            running += count
            cumulative.append((bound, running))
        yield hits
        yield HistogramMetricFamily("vtstream_enrich_seconds", "From reading an input record to its summary.",
                                    buckets=cumulative, sum_value=self.seconds)


class _Readings(Collector):
    """Gauges read at scrape time: quota windows, parked records per tier, lag per topic."""

    def __init__(self) -> None:
        self.quota: Callable[[], list[QuotaReading]] = list
        self.offsets: list[OffsetReader] = []

    def collect(self) -> Iterator[Metric]:
        used = GaugeMetricFamily("vtstream_quota_used", "VirusTotal requests counted in the current window "
                                 "(day: UTC day, month: UTC month), by the gateway on this worker.",
                                 labels=["window"])
        remaining = GaugeMetricFamily("vtstream_quota_remaining", "VirusTotal requests left in the window.",
                                      labels=["window"])
        for reading in self.quota():
            used.add_metric([reading.window], reading.used)
            if reading.remaining is not None:
                remaining.add_metric([reading.window], reading.remaining)
        lag: dict[str, int] = {}
        for reader in self.offsets:
            for (topic, _partition), (end, committed) in reader().items():
                lag[topic] = lag.get(topic, 0) + max(0, end - (committed or 0))
        lag_family = GaugeMetricFamily("vtstream_consumer_lag", "Records on the partitions this worker "
                                       "consumes that it has not committed yet, per topic.", labels=["topic"])
        parked = GaugeMetricFamily("vtstream_parked_records", "Records waiting on a delayed-retry tier "
                                   "(vt.retry.<tier>) that this worker holds.", labels=["tier"])
        for topic, count in sorted(lag.items()):
            lag_family.add_metric([topic], count)
            if topic.startswith(RETRY_PREFIX):
                parked.add_metric([topic[len(RETRY_PREFIX):]], count)
        yield from (used, remaining, lag_family, parked)
