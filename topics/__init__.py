"""The topic catalog: every topic vtstream reads or writes, in one place.

Code never spells a topic name twice: it asks ``catalog(settings)`` or uses the
constants below. Keyed topics (``vt.lookups``, ``vt.responses``, ``vt.sightings``
and the cache and verdict changelogs) share one partition count so an
indicator's lookups, responses, cache entry and verdict memory live on the
same partition number (co-partitioning).
``vt.requests``, ``vt.replay`` and ``vt.polls`` have exactly one partition each, like every
retry tier and the quota changelog: faust assigns all one-partition topics
of the group to the same worker, so one gateway holds the API key's rate and
quota.

Topics must exist with these counts before any worker subscribes: a broker
that auto-creates a missing topic picks its own partition count, and faust
then crashes with PartitionsMismatch. ``vtstream topics create`` and worker
start-up both call :func:`ensure_topics`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

RAW = "indicators.raw"
LOOKUPS = "vt.lookups"
REQUESTS = "vt.requests"
POLLS = "vt.polls"
RESPONSES = "vt.responses"
ENRICHED = "indicators.enriched"
STIX = "indicators.stix"
DEAD = "vt.dead"
QUOTA = "vt.quota"
REPLAY = "vt.replay"
REPLAY_RUNS = "vt.replay.runs"
REPLAY_SIGHTINGS = "vt.replay.sightings"
CACHE_TABLE = "cache"
VERDICT_TABLE = "verdicts"
SIGHTINGS = "vt.sightings"
RETRY_PREFIX = "vt.retry."

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """One topic: name, partitions, retention and cleanup policy, what the key is."""

    name: str
    partitions: int
    key: str
    purpose: str
    retention_ms: int = 7 * DAY_MS
    cleanup_policy: str = "delete"
    #: The partition count is part of the design (co-partitioning, one quota holder);
    #: other topics work with whatever count an operator or the broker gave them.
    strict: bool = False
    #: "LogAppendTime": the broker stamps records when it appends them (the TAXII date_added).
    timestamp_type: str | None = None
    #: The topic's max.message.bytes: vtstream's record limit (VTSTREAM_KAFKA_MAX_RECORD_BYTES).
    max_message_bytes: int | None = None

    @property
    def deletes(self) -> bool:
        """Whether records leave after ``retention_ms`` ("delete", or "compact,delete": the latest per key
        of a compacted topic leaves too once it is that old)."""
        return "delete" in self.cleanup_policy.split(",")

    def config(self) -> dict[str, str]:
        cfg = {"cleanup.policy": self.cleanup_policy}
        if self.max_message_bytes is not None:
            cfg["max.message.bytes"] = str(self.max_message_bytes)
        if self.timestamp_type:
            cfg["message.timestamp.type"] = self.timestamp_type
        if self.deletes:
            cfg["retention.ms"] = str(self.retention_ms)
        return cfg


def changelog_name(app_id: str, table: str = CACHE_TABLE) -> str:
    """faust's name for a table's changelog topic."""
    return f"{app_id}-{table}-changelog"


def intake_group(app_id: str) -> str:
    """The consumer group of the intake stage, which runs on plain aiokafka (the rest is group ``app_id``)."""
    return f"{app_id}.intake"


def replay_group(app_id: str, run: str) -> str:
    """The consumer group of one replay run over its source topic; its commits are the resume point."""
    return f"{app_id}.replay.{run}"


def retry_topic(delay: str) -> str:
    """The delayed-retry topic for one tier, e.g. ``vt.retry.30s``."""
    return RETRY_PREFIX + delay


def catalog(partitions: int, app_id: str, retry_tiers: tuple[str, ...] = ("30s", "2m", "10m", "1h"),
            verdict_memory_ms: int = 90 * DAY_MS, max_message_bytes: int | None = None) -> list[TopicSpec]:
    """Every topic for a deployment with ``partitions`` keyed partitions (each created with
    ``max_message_bytes`` as its max.message.bytes when given)."""
    return [replace(spec, max_message_bytes=max_message_bytes)
            for spec in _specs(partitions, app_id, retry_tiers, verdict_memory_ms)]


def _specs(partitions: int, app_id: str, retry_tiers: tuple[str, ...], verdict_memory_ms: int) -> list[TopicSpec]:
    tiers = [TopicSpec(retry_topic(delay), 1, "indicator key",
                       f"parked work due again after {delay}: pending scans, retryable failures; "
                       "append order is due order", strict=True)
             for delay in retry_tiers]
    return tiers + [
        TopicSpec(RAW, partitions, "any (producer's choice)",
                  "indicators observed by the SIEM: JSON objects or bare lines"),
        TopicSpec(LOOKUPS, partitions, "indicator key, e.g. ip:8.8.8.8",
                  "validated, normalized, policy-approved indicators", strict=True),
        TopicSpec(REQUESTS, 1, "indicator key",
                  "cache misses waiting for a VirusTotal call; one partition = one quota holder",
                  strict=True),
        TopicSpec(REPLAY, 1, "indicator key",
                  "cache misses of replay runs (vtstream replay); the gateway serves them after live "
                  "lookups and before polls", strict=True),
        TopicSpec(REPLAY_RUNS, 1, "run name",
                  "each replay run's range, position, counts and state; read by vtstream status",
                  cleanup_policy="compact", strict=True),
        TopicSpec(REPLAY_SIGHTINGS, 1, "[run, indicator key, invocation] as JSON",
                  "what each replay run saw of the indicators still unanswered or detected: sightings, "
                  "first and last seen, sources, verdict; the run's report adds them up",
                  cleanup_policy="compact"),
        TopicSpec(POLLS, 1, "indicator key",
                  "parked work that came due: polls of pending scans, retries; the gateway serves it "
                  "after fresh lookups", strict=True),
        TopicSpec(RESPONSES, partitions, "indicator key",
                  "VirusTotal answers, co-partitioned with vt.lookups and the cache", strict=True),
        TopicSpec(ENRICHED, partitions, "indicator key",
                  "attribute / relation / report / summary events for TI platforms"),
        TopicSpec(STIX, partitions, "indicator key",
                  "one STIX 2.1 bundle per enrichment (VTSTREAM_OUTPUTS=events,stix); the TAXII server reads it, "
                  "record timestamps are its date_added", timestamp_type="LogAppendTime"),
        TopicSpec(DEAD, 1, "indicator key or none", "records that could not be processed, with the reason",
                  retention_ms=30 * DAY_MS),
        TopicSpec(changelog_name(app_id), partitions, "indicator key",
                  "changelog of the cache table (faust)", cleanup_policy="compact", strict=True),
        TopicSpec(changelog_name(app_id, VERDICT_TABLE), partitions, "indicator key",
                  "changelog of the verdict memory (faust): the last verdict per indicator, kept "
                  "VTSTREAM_VERDICT_MEMORY past its last check", cleanup_policy="compact,delete",
                  retention_ms=verdict_memory_ms, strict=True),
        TopicSpec(SIGHTINGS, partitions, "indicator key",
                  "live sightings answered from the cache, counted per indicator every few seconds, for the "
                  "verdict memory (co-partitioned with it)", retention_ms=DAY_MS, strict=True),
        TopicSpec(QUOTA, 1, "'governor' or 'source:<name>'",
                  "the quota governor's state: last call, calls today and this month; survives restarts",
                  cleanup_policy="compact", strict=True),
    ]


def describe(specs: list[TopicSpec]) -> list[dict[str, Any]]:
    """Rows for ``vtstream topics describe``."""
    return [
        {"name": s.name, "partitions": s.partitions, "key": s.key, "cleanup": s.cleanup_policy,
         "retention_days": s.retention_ms // DAY_MS if s.deletes else "-",
         "purpose": s.purpose}
        for s in specs
    ]
