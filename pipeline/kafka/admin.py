"""Plain aiokafka helpers: topic creation, client start-up, the producer defaults.

The faust stages use faust's own clients; these serve intake and the cache
copy (which run below faust), the CLI's produce and tail, and the check that
every catalog topic exists with its intended partition count before any
worker subscribes. Every client here is built from Settings through
:func:`pipeline.kafka.security.client_options`, so TLS and SASL apply to all.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from topics import TopicSpec, catalog

from pipeline.errors import ConfigError, KafkaAccessDenied
from pipeline.kafka.security import check_connection, client_options
from pipeline.settings import Settings

log = logging.getLogger("vtstream.kafka.admin")

TOPIC_ALREADY_EXISTS = 36
INVALID_REPLICATION_FACTOR = 38
TOPIC_AUTHORIZATION_FAILED = 29
#: What a consumer fetches at most per request and partition: more than the record limit, so a
#: record someone else wrote larger (a SIEM on a broker that allows it) is read and dead-lettered.
FETCH_BYTES = 16 * 1024 * 1024


def topic_catalog(settings: Settings) -> list[TopicSpec]:
    """The catalog for these settings (partitions, app id, retry tiers, verdict memory, max.message.bytes)."""
    return catalog(settings.kafka.partitions, settings.app_id, settings.retry.tiers,
                   int(settings.outputs.verdict_memory_s * 1000), settings.kafka.max_record_bytes)


def fetch_bytes(settings: Settings) -> int:
    """Consumers' fetch.max.bytes and max.partition.fetch.bytes: at least the record limit."""
    return max(FETCH_BYTES, settings.kafka.max_record_bytes)


async def ensure_topics(settings: Settings, specs: Iterable[TopicSpec], timeout: float = 30.0) -> list[str]:
    """Create missing topics; refuse to run on topics whose partition count differs.

    Returns the names created. Waits up to ``timeout`` for the broker to answer,
    so a worker started together with its broker does not fail at once.
    """
    specs = list(specs)
    admin = make_admin(settings)
    await start_with_retry(admin, settings, timeout)
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        created: list[str] = []
        if missing:
            replicas = settings.kafka.replication_factor or min(3, len((await admin.describe_cluster())["brokers"]))
            resp = await admin.create_topics([
                NewTopic(s.name, s.partitions, replicas, topic_configs=topic_config(s, replicas)) for s in missing])
            for name, code, message in resp.topic_errors:
                if code == INVALID_REPLICATION_FACTOR:
                    raise ConfigError(f"cannot create topic {name} with {replicas} replicas: {message or code}; "
                                      "set VTSTREAM_KAFKA_REPLICATION_FACTOR to at most the broker count")
                if code == TOPIC_AUTHORIZATION_FAILED:
                    raise KafkaAccessDenied(
                        f"topic {name} does not exist and Kafka at {settings.kafka.bootstrap} does not allow creating "
                        f"it (Create on topic {name}); run 'vtstream topics create' as a principal that may "
                        "(docs/kafka.md)")
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    raise ConfigError(f"cannot create topic {name}: {message or code}")
                if code == 0:
                    created.append(name)
        present = [s for s in specs if s.name in existing and s.strict]
        if present:
            described = await admin.describe_topics([s.name for s in present])
            counts = {d["topic"]: len(d["partitions"]) for d in described}
            for spec in present:
                have = counts.get(spec.name)
                if have is not None and have != spec.partitions:
                    why = ("one partition, so one gateway holds the quota" if spec.partitions == 1 else
                           "the same count as the other keyed topics (VTSTREAM_PARTITIONS)")
                    raise ConfigError(
                        f"topic {spec.name} has {have} partitions but must have {spec.partitions}: "
                        f"{why}. A topic the broker auto-created gets the broker's default count; "
                        f"delete it and run 'vtstream topics create', or change VTSTREAM_PARTITIONS")
        if created:
            log.info("created topics: %s", ", ".join(created))
        return created
    finally:
        await admin.close()


def topic_config(spec: TopicSpec, replicas: int) -> dict[str, str]:
    """The configuration a topic is created with: the catalog's (its max.message.bytes is
    VTSTREAM_KAFKA_MAX_RECORD_BYTES, see :func:`topic_catalog`), and in-sync replicas.

    ``min.insync.replicas`` 2 (1 with a single replica): with the producers' acks=all, a
    record is acknowledged only once two brokers have it, so losing one loses nothing.
    """
    return {**spec.config(), "min.insync.replicas": str(min(2, replicas))}


async def start_with_retry(client: AIOKafkaAdminClient | AIOKafkaProducer | AIOKafkaConsumer, settings: Settings,
                           timeout: float = 30.0) -> None:
    """Start a client, waiting up to ``timeout`` for the broker to answer.

    A broker that refuses us (credentials, certificates, TLS mismatch) raises
    KafkaAccessDenied at once instead: aiokafka would retry that in silence.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        await check_connection(settings, timeout)
        while True:
            try:
                await client.start()
                return
            except Exception as exc:  # KafkaConnectionError and friends
                if loop.time() > deadline:
                    raise ConfigError(f"cannot reach Kafka at {settings.kafka.bootstrap}: {exc}") from exc
                await asyncio.sleep(0.5)
    except BaseException:
        await (client.close() if isinstance(client, AIOKafkaAdminClient) else client.stop())  # no "Unclosed" noise
        raise


def make_admin(settings: Settings) -> AIOKafkaAdminClient:
    """An admin client for these settings."""
    return AIOKafkaAdminClient(request_timeout_ms=10000, **client_options(settings))


def make_producer(settings: Settings, **kwargs: Any) -> AIOKafkaProducer:
    """A producer with vtstream's defaults: acks=all, small linger, records and batches of at most
    VTSTREAM_KAFKA_MAX_RECORD_BYTES (the broker limits a whole batch, not one record) unless
    ``max_request_size`` says otherwise."""
    options: dict[str, Any] = {"acks": "all", "linger_ms": 5, "max_request_size": settings.kafka.max_record_bytes}
    options.update(kwargs)  # a tool writing as a SIEM would (the test rig) may ask for more
    options["max_batch_size"] = min(options.get("max_batch_size", 16384), options["max_request_size"])
    return AIOKafkaProducer(**client_options(settings), **options)


def make_consumer(settings: Settings, *topics: str, **kwargs: Any) -> AIOKafkaConsumer:
    """A consumer for these settings that accepts vtstream's largest records."""
    options: dict[str, Any] = {"fetch_max_bytes": fetch_bytes(settings),
                               "max_partition_fetch_bytes": fetch_bytes(settings)}
    options.update(kwargs)
    return AIOKafkaConsumer(*topics, **client_options(settings), **options)


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition] | None:
    """``topic``'s partitions from the cluster's full metadata; None when the topic does not exist.

    Not ``consumer.partitions_for_topic``: that reads the client's own metadata,
    which holds only the topics it asked about (Apache Kafka answers a metadata
    request for no topics with none, the embedded broker with all), and asking
    about one by name may auto-create it.
    """
    cluster = await consumer._client.fetch_all_metadata()
    partitions = cluster.partitions_for_topic(topic)
    return None if partitions is None else [TopicPartition(topic, p) for p in sorted(partitions)]


async def cluster_id(settings: Settings, timeout: float = 30.0) -> str:
    """The cluster's id from its metadata ('' when the broker gives none)."""
    admin = make_admin(settings)
    await start_with_retry(admin, settings, timeout)
    try:
        return str((await admin.describe_cluster()).get("cluster_id") or "")
    finally:
        await admin.close()


async def consume(settings: Settings, topic: str, *, from_beginning: bool, group: str | None = None,
                  idle_timeout: float | None = None) -> AsyncIterator[tuple[bytes | None, bytes | None]]:
    """Yield (key, value) from ``topic``; stop after ``idle_timeout`` seconds without a record."""
    consumer = make_consumer(settings, topic, group_id=group, enable_auto_commit=group is not None,
                             auto_offset_reset="earliest" if from_beginning else "latest")
    await start_with_retry(consumer, settings)
    idle = 0.0
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            if not batch:
                idle += 0.5
                if idle_timeout is not None and idle >= idle_timeout:
                    return
                continue
            idle = 0.0
            for records in batch.values():
                for record in records:
                    yield record.key, record.value
    finally:
        await consumer.stop()
