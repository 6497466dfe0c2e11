"""Builds the faust app: topics, the cache table, one agent per stage.

The app is built, not imported: :func:`create_app` takes a Settings object and
returns a fresh app, so tests and tools can build their own. Nothing here runs
I/O; :func:`run_worker` creates the topics and then runs the faust worker.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import signal
import time
from pathlib import Path
from typing import Any, Callable

import faust

from topics import (CACHE_TABLE, LOOKUPS, POLLS, QUOTA, RAW, REPLAY, REQUESTS, RESPONSES, SIGHTINGS, VERDICT_TABLE,
                    retry_topic)

from pipeline.contracts.cache_entry import owner_of
from pipeline.kafka import transport
from pipeline.kafka.direct import key_slot
from pipeline.kafka.admin import cluster_id, ensure_topics, fetch_bytes, topic_catalog
from pipeline.errors import ConfigError
from pipeline.kafka.acls import check_access, required, used_topics
from pipeline.kafka.recovery import HealingTableManager
from pipeline.kafka.runtime import Context
from pipeline.kafka.watchdog import KafkaWatch
from pipeline.kafka.security import faust_credentials
from pipeline.mapping import load_mappings
from pipeline.observe import logs, probes
from pipeline.rules.verdicts import Tallies
from pipeline.settings import Settings
from pipeline.stages import gateway, intake, lookup, results, retry, sightings

log = logging.getLogger("vtstream.app")

#: Stages in flow order; each module's ``install(ctx)`` registers its agents.
STAGES = (intake, lookup, gateway, retry, results, sightings)


#: RocksDB options of the cache table. faust's defaults (64 MB write buffers, three per
#: partition database, a 2 GB block cache) let a worker restoring a million entries grow
#: past 460 MB in memtables alone (``vtstream bench memory --cached 1000000``); entries are
#: ~0.5 KB and read by key, so small buffers and a small cache cost little.
CACHE_STORE_OPTIONS = {"write_buffer_size": 8 * 1024 * 1024, "max_write_buffer_number": 2,
                       "block_cache_size": 32 * 1024 * 1024}
#: RocksDB options of the verdict memory: entries of ~100 bytes, one read and one write per
#: VirusTotal answer; smaller buffers than the cache's (``vtstream bench memory`` restores both).
VERDICT_STORE_OPTIONS = {"write_buffer_size": 4 * 1024 * 1024, "max_write_buffer_number": 2,
                         "block_cache_size": 8 * 1024 * 1024}


#: faust's own views on the worker's web port, all off: /table/ lists the tables and reads any
#: key (the cache holds waiting sightings, with URLs as the SIEM sent them), /router/ maps the
#: cluster, /graph, /performance and the statistics at / describe the worker's insides. The port
#: serves /health, /ready and /metrics (pipeline.observe.probes) and nothing else of ours.
WEB_VIEWS_OFF: dict[str, bool] = {"web_router_enabled": False, "web_tables_enabled": False, "web_stats_enabled": False,
                 "web_graph_enabled": False, "web_metrics_enabled": False}


class CacheTable(faust.Table):
    """The cache table: a waiter record (:func:`~pipeline.contracts.cache_entry.waiter_key`) goes to
    its indicator's changelog partition, where the stages that read it run; every other key
    where the producer's partitioner puts it."""

    def partition_for_key(self, key: Any) -> int | None:
        owner = owner_of(key) if isinstance(key, bytes) else None
        if owner is None or not self.partitions:
            return None
        return key_slot(owner, self.partitions)


def _raw_schema() -> faust.Schema:
    """Bytes in, bytes out: stages decode records themselves, so bad bytes cannot crash faust."""
    return faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


def _topic(app: faust.App, name: str, partitions: int) -> faust.TopicT:
    return app.topic(name, schema=_raw_schema(), partitions=partitions)


def create_app(settings: Settings, clock: Callable[[], float] = time.time,
               state_dir: Path | None = None) -> tuple[faust.App, Context]:
    """A faust app with every stage registered, and the context the stages share.

    ``state_dir``: where the table stores live (default: VTSTREAM_DATA_DIR);
    :func:`run_worker` gives each cluster and app id its own (:func:`state_dir_for`).
    """
    brokers = [f"kafka://{host.strip()}" for host in settings.kafka.bootstrap.split(",") if host.strip()]
    app = transport.App(
        settings.app_id,
        broker=brokers,
        broker_credentials=faust_credentials(settings),
        store=settings.store,
        TableManager=HealingTableManager,
        datadir=str(state_dir or settings.data_dir),
        topic_partitions=settings.kafka.partitions,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.kafka.session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.kafka.session_timeout_s / 10),
        producer_max_request_size=settings.kafka.max_record_bytes,
        producer_max_batch_size=min(16384, settings.kafka.max_record_bytes),
        consumer_max_fetch_size=fetch_bytes(settings),
        producer_acks=-1,
        web_enabled=settings.web.port > 0,
        web_port=settings.web.port or 6066,
        autodiscover=False,
    )
    # faust reads APP_WEB_*_ENABLED from the environment over what the App is given; set after
    # it, these win, so no variable brings the views back.
    for name, value in WEB_VIEWS_OFF.items():
        setattr(app.conf, name, value)
    # use_partitioner: the changelog record goes where the key hashes, exactly like the
    # vt.lookups and vt.responses records of the same key (same key bytes, same count), so
    # the table stays co-partitioned while stages write it from batches (no "current event").
    table: Any = app.tables.add(CacheTable(app, name=CACHE_TABLE, beacon=app.tables.beacon,
                                      partitions=settings.kafka.partitions, key_type=bytes, value_type=bytes,
                                      use_partitioner=True, options=CACHE_STORE_OPTIONS,
                                      help="indicator key -> cache entry (pipeline.rules.cache)"))
    # The governor's state; its changelog is vt.quota itself, so `vtstream status` can read it.
    # acks=False as on faust's own changelogs: no stream reads it, and an acking topic that a
    # loaded worker fetches behind its writes trips faust's "Stream has not started processing"
    # error every 7 s.
    quota = app.Table("quota", partitions=1, key_type=bytes, value_type=bytes, use_partitioner=True,
                      changelog_topic=app.topic(QUOTA, schema=_raw_schema(), partitions=1, acks=False),
                      help="the quota governor's state (pipeline.vt.governor)")
    topics = {"raw": _topic(app, RAW, settings.kafka.partitions),
              "lookups": _topic(app, LOOKUPS, settings.kafka.partitions),
              "requests": _topic(app, REQUESTS, 1),
              "replay": _topic(app, REPLAY, 1),
              "polls": _topic(app, POLLS, 1),
              "responses": _topic(app, RESPONSES, settings.kafka.partitions)}
    topics.update({f"retry.{delay}": _topic(app, retry_topic(delay), 1) for delay in settings.retry.tiers})
    ctx = Context(settings=settings, app=app, topics=topics, cache=table, quota=quota,
                  mappings=load_mappings(settings.mappings_dir), clock=clock, sightings=Tallies(max_keys=0))
    if settings.outputs.verdict_changes:
        # The last verdict per indicator, kept past the cache TTL; co-partitioned with the cache like it,
        # written by the results stage and (sighting counts) the sightings stage.
        ctx.verdicts = app.Table(VERDICT_TABLE, partitions=settings.kafka.partitions, key_type=bytes,
                                 value_type=bytes, use_partitioner=True, options=VERDICT_STORE_OPTIONS,
                                 help="indicator key -> last verdict (pipeline.rules.verdicts)")
        ctx.sightings = Tallies()
        topics["sightings"] = _topic(app, SIGHTINGS, settings.kafka.partitions)
    for stage in STAGES:
        stage.install(ctx)
    # intake reads indicators.raw on its own consumer (pipeline.kafka.direct), which reports itself
    faust_consumes = [topic.get_topic_name() for name, topic in topics.items() if name != "raw"]
    probes.install(app, ctx.metrics, ctx.readiness, faust_consumes)
    return app, ctx


async def _freeze_startup_objects() -> None:
    """Keep the objects of start-up (faust, libraries, mappings) out of the cyclic GC.

    Full collections scan every tracked object; with the worker's start-up heap
    they paused the event loop for 100-215 ms every few seconds under load
    (measured with gc.callbacks during ``vtstream bench latency``).
    """
    gc.collect()
    gc.freeze()


class _Worker(faust.Worker):
    """faust's worker without its terminal spinner, which at log level WARNING and above
    sets the root logger to DEBUG so that every library debug call builds a log record
    (a tenth of the cache-hit path's time, measured with ``vtstream bench cache-hits --profile``)."""

    def __init__(self, app: faust.App, *, log_format: str, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.log_format = log_format

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None
        if self.log_format == "json":
            logs.use_json(logger)


def state_dir_for(settings: Settings, cluster: str) -> Path:
    """The folder of one cluster's and one app id's table state, under VTSTREAM_DATA_DIR.

    A store written against another cluster or app id is never read: its
    offsets would mean nothing there.

    >>> state_dir_for(Settings.of(data_dir=Path("/d"), app_id="vtstream"), "tansu_cluster").as_posix()
    '/d/tansu_cluster.vtstream'
    """
    def safe(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]", "_", text) or "unknown"
    return settings.data_dir / f"{safe(cluster)}.{safe(settings.app_id)}"


async def _prepare(settings: Settings) -> str:
    """Fail fast on a broker that refuses us or an ACL that denies us, create the catalog's topics; the cluster id."""
    needs = required("worker", settings)
    await check_access(settings, "worker", needs)
    await ensure_topics(settings, used_topics(topic_catalog(settings), needs))
    return await cluster_id(settings)


def run_worker(settings: Settings) -> None:
    """Create the catalog's topics, then run a worker until SIGINT/SIGTERM."""
    state_dir = state_dir_for(settings, asyncio.run(_prepare(settings)))
    state_dir.mkdir(parents=True, exist_ok=True)
    log.info("table state in %s", state_dir)
    app, _ = create_app(settings, state_dir=state_dir)
    app.task(_freeze_startup_objects)
    worker = _Worker(app, log_format=settings.log_format, loglevel=settings.log_level, quiet=True)
    watch = KafkaWatch(settings)

    async def stop_soon() -> None:  # as SIGTERM does; faust's stop without Kafka can hang: end after 20 s
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(20)
        os.write(2, f"Error: {watch.verdict}\n".encode())  # fd 2: faust has taken over sys.stderr
        os._exit(1)

    async def watch_kafka() -> None:
        await watch.run(stop=stop_soon)

    app.task(watch_kafka)
    try:
        worker.execute_from_commandline()
    except SystemExit:
        if watch.verdict is not None:
            raise ConfigError(watch.verdict) from None
        raise

