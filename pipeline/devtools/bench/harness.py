"""What every benchmark scenario shares: the rig (broker, emulator, workers), Kafka I/O, reporting.

A scenario opens a :class:`Rig` (an ExitStack: whatever it starts is stopped
when the scenario ends, also on error or Ctrl-C), produces inputs with
:func:`produce`, watches ``indicators.enriched`` through a :class:`Tap`, and
prints a :class:`BenchReport`: a table, then the one line the scenario is judged
on, last. Workers are real ``python -m pipeline worker`` child processes, as
an operator runs them, so the figures include everything a deployment pays.
The processes, their environment and the producer are the test suite's too
(:mod:`pipeline.devtools.rig`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Iterable, Iterator

import click
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import NewTopic
from tqdm import tqdm

from topics import DEAD, ENRICHED, RAW, intake_group

from pipeline.devtools import rig
from pipeline.devtools.broker import EmbeddedBroker
from pipeline.devtools.rig import EmulatorProcess, WorkerProcess, emulator_control, group_members
from pipeline.kafka.admin import ensure_topics, make_admin, make_consumer, topic_catalog
from pipeline.settings import Settings

#: Variables a given (``--bootstrap``) broker's TLS/SASL settings live in.
SECURITY_VARIABLES = ("VTSTREAM_KAFKA_SECURITY_", "VTSTREAM_KAFKA_SASL_", "VTSTREAM_KAFKA_SSL_")
#: The benchmark's consumer group / faust app id; fixed, so reruns on an existing broker resume.
APP_ID = "vtstream-bench"
PARTITIONS = 4
TYPES = ("ip", "domain", "url", "md5", "sha1", "sha256")
_SUMMARY = b'"kind":"summary"'
#: An interim summary (a URL scan submitted, a quota wait): the final one for that sighting follows.
_INTERIM = b'"pending":true'


# --------------------------------------------------------------------------- click options

BROKERS = ("embedded", "apache")
_BROKER_KEY = "vtstream.bench.broker"


def _remember_broker(ctx: click.Context, _param: click.Parameter, value: str) -> str:
    ctx.meta[_BROKER_KEY] = value
    return value


def chosen_broker() -> str:
    """The ``--broker`` of the running scenario (kept in click's context, so scenarios need no parameter)."""
    ctx = click.get_current_context(silent=True)
    return str(ctx.meta.get(_BROKER_KEY, "embedded")) if ctx is not None else "embedded"


def rig_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--broker / --bootstrap / --vt-url / --keep: which broker to start, or existing services; keep the work folder."""
    func = click.option("--keep", is_flag=True, help="Keep the work folder (worker logs, table state).")(func)
    func = click.option("--broker", type=click.Choice(BROKERS), default="embedded", show_default=True,
                        expose_value=False, is_eager=True, callback=_remember_broker,
                        help="The broker to start: the embedded one (tansu) or Apache Kafka 4.1 (a JDK 17+ and "
                             "Maven; one node, its plaintext listener). Ignored with --bootstrap.")(func)
    func = click.option("--vt-url", help="Use this VirusTotal emulator (http://host:port) instead of "
                                         "starting one; its config and counters are reset.")(func)
    func = click.option("--bootstrap", help="Use this Kafka broker instead of starting the embedded "
                                            "one (dedicate it to the benchmark).")(func)
    return func


# --------------------------------------------------------------------------- indicators

def indicator(i: int, salt: str) -> tuple[str, str]:
    """The i-th synthetic indicator of a run, cycling through every type: (type, value).

    ``salt`` keeps runs apart on a reused broker (a fresh run must not hit an old cache).
    """
    kind = TYPES[i % len(TYPES)]
    n = i // len(TYPES)
    if kind == "ip":  # 23.0.0.0/8 is public unicast; the salt picks a starting point in it
        base = int(hashlib.sha256(salt.encode()).hexdigest()[:6], 16) % (1 << 23)
        x = (23 << 24) + ((base + n) % (1 << 24))
        return kind, f"{x >> 24}.{(x >> 16) & 255}.{(x >> 8) & 255}.{x & 255}"
    if kind == "domain":
        return kind, f"h{n}.{salt}.bench-vtstream.com"
    if kind == "url":
        return kind, f"http://u{n}.{salt}.bench-vtstream.com/p?i={n}"
    digest = getattr(hashlib, kind)(f"{salt}:{n}".encode()).hexdigest()
    return kind, digest


def raw_record(i: int, salt: str, record_id: str | None = None) -> bytes:
    """One indicators.raw record, as a SIEM would send it."""
    kind, value = indicator(i, salt)
    return orjson.dumps({"value": value, "type": kind, "id": record_id or str(i), "source": "bench"})


def new_salt() -> str:
    return f"{random.getrandbits(32):08x}"


# --------------------------------------------------------------------------- processes

class Rig:
    """Broker + emulator + workers for one scenario; a context manager that stops all it started.

    Example (not a doctest: it starts processes)::

        with Rig(None, None, rate_per_minute=None) as rig:
            rig.start_worker(VTSTREAM_STORE="memory://")
    """

    def __init__(self, bootstrap: str | None, vt_url: str | None, *, rate_per_minute: int | None,
                 keep: bool = False) -> None:
        self._stack = ExitStack()
        self._given = (bootstrap, vt_url)
        self._rate = rate_per_minute
        self.keep = keep
        self.workdir = Path(tempfile.mkdtemp(prefix="vtstream-bench-"))
        self.bootstrap = bootstrap or ""
        # A given broker may need TLS/SASL: its VTSTREAM_KAFKA_SECURITY/SASL/SSL settings reach the workers.
        self._security = {k: v for k, v in os.environ.items() if k.startswith(SECURITY_VARIABLES)} if bootstrap else {}
        self.vt_url = vt_url or ""
        self.workers: list[WorkerProcess] = []
        self.salt = new_salt()

    def __enter__(self) -> "Rig":
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None:
            for w in self.workers:
                if w.tail():
                    click.echo(f"--- {w.log} (last lines)\n{w.tail()}", err=True)
        self._stack.close()
        if self.keep or exc is not None:
            click.echo(f"work folder kept: {self.workdir}", err=True)
        else:
            _rmtree(self.workdir)

    def _start(self) -> None:
        given_bootstrap, given_vt = self._given
        if not given_bootstrap and chosen_broker() == "apache":
            from pipeline.devtools.apache.launcher import ApacheKafka

            self.bootstrap = self._stack.enter_context(ApacheKafka(self.workdir / "apache")).bootstrap
        elif not given_bootstrap:
            broker = self._stack.enter_context(EmbeddedBroker())
            self.bootstrap = broker.bootstrap
        if not given_vt:
            emulator = EmulatorProcess(log=self.workdir / "emulator.log")
            self._stack.callback(emulator.stop)
            self.vt_url = emulator.url
        # Same path for a given and a started emulator: configure and zero it over HTTP.
        self.emulator("/_emulator/config", {"rate_per_minute": self._rate, "daily_quota": None,
                                            "latency_ms": 0.0, "not_found_ratio": 0.0, "scan_seconds": 0.5})
        self.emulator("/_emulator/reset", {})
        asyncio.run(ensure_topics(self.kafka, topic_catalog(self.kafka)))

    def worker_env(self, **overrides: str) -> dict[str, str]:
        return rig.worker_env(self.bootstrap, self.vt_url, self.workdir / f"data{len(self.workers)}", **{
            "VTSTREAM_APP_ID": APP_ID, "VTSTREAM_PARTITIONS": str(PARTITIONS),
            "VTSTREAM_KAFKA_SESSION_TIMEOUT": "6", "VTSTREAM_LOG_LEVEL": "WARNING",
            "VTSTREAM_VT_RATE_PER_MINUTE": "60000", "VTSTREAM_VT_DAILY_QUOTA": "100000000",
            # URL rescans park on retry tiers; short tiers (and 0.5 s emulator scans) keep runs short.
            "VTSTREAM_RETRY_TIERS": "1s,10s,1m,10m", **self._security, **overrides})

    def settings(self) -> Settings:
        return Settings.from_env(self.worker_env())

    @property
    def kafka(self) -> Settings:
        """How the bench's own clients reach the broker (the workers' settings)."""
        return self.settings()

    def start_worker(self, prefix: Iterable[str] = (), **env: str) -> WorkerProcess:
        """Start one worker; ``prefix`` wraps the interpreter call (e.g. a profiler)."""
        worker = WorkerProcess(self.worker_env(**env), self.workdir / f"worker{len(self.workers)}.log", prefix)
        self._stack.callback(worker.stop)
        self.workers.append(worker)
        return worker

    def check_workers(self) -> None:
        """Raise if a worker died: a benchmark of a crashed pipeline would only wait."""
        for w in self.workers:
            if not w.alive():
                raise click.ClickException(f"worker pid {w.pid} exited with code {w.proc.returncode}:\n"
                                           f"{w.tail()}")

    def emulator(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """GET (or POST ``body`` to) an emulator control endpoint; decoded JSON."""
        return emulator_control(self.vt_url, path, body)

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.emulator("/_emulator/stats")
        return stats


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- Kafka I/O

def progress(total: int | None, desc: str, unit: str = "ev", disable: bool = False) -> tqdm:
    """A progress bar on stderr (stdout carries the table and the judged line)."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, mininterval=0.5, leave=False,
                dynamic_ncols=True, disable=disable)


async def produce(kafka: Settings, topic: str, records: Iterable[bytes], *, total: int | None = None,
                  desc: str = "produce") -> float:
    """Send every record (acks=all, no key), wait for all acks, with a progress bar; seconds taken."""
    started = time.perf_counter()
    with progress(total, desc) as bar:
        await rig.produce(kafka, topic, records, on_acked=bar.update, max_batch_size=256 * 1024)
    return time.perf_counter() - started


async def create_topic(kafka: Settings, name: str, partitions: int = PARTITIONS) -> None:
    """A scratch topic (the baseline's input and output); an existing one is kept."""
    admin = make_admin(kafka)
    await admin.start()
    try:
        if name not in await admin.list_topics():
            await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def wait_for_group(kafka: Settings, members: int, timeout: float = 90.0) -> float:
    """Wait until ``members`` workers are in both of a worker's groups (faust's and intake's)
    and both are stable; seconds waited. Intake joins its own group after faust's: inputs
    produced before it has its partitions wait out that join (2-3 s) in the figure."""
    started = time.perf_counter()
    stable_since: float | None = None
    while time.perf_counter() - started < timeout:
        try:
            ok = all([await group_members(kafka, group) >= members for group in (APP_ID, intake_group(APP_ID))])
        except Exception:  # broker not ready, group unknown yet
            ok = False
        now = time.perf_counter()
        if ok:
            stable_since = stable_since or now
            if now - stable_since >= 2.0:   # stays stable: agents have their partitions
                return now - started
        else:
            stable_since = None
        await asyncio.sleep(0.5)
    raise click.ClickException(f"the {members} workers did not form a stable group in {timeout:.0f}s")


@dataclass
class Tap:
    """Reads a topic from the moment :meth:`start` is called; counts events by ``kind``.

    ``summaries`` counts final summaries (one per input); interim "pending" ones are counted
    apart, under ``kinds["summary (interim)"]``. It follows vt.dead too: :meth:`read` fails the
    scenario at the first dead letter instead of waiting out its timeout.

    Positions are pinned at start, before inputs are produced, so everything the
    scenario causes is seen and nothing older is.
    """

    kafka: Settings
    topic: str = ENRICHED
    partitions: int = PARTITIONS
    #: Called per final summary with (value, time read, the record's timestamp in ms).
    on_summary: Callable[[bytes, float, int], None] | None = None
    kinds: dict[str, int] = field(default_factory=dict)
    summaries: int = 0
    dead: list[bytes] = field(default_factory=list)
    first_summary: float | None = None
    last_summary: float | None = None
    _consumer: AIOKafkaConsumer | None = None

    async def start(self) -> "Tap":
        self._consumer = make_consumer(self.kafka, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=10)
        await self._consumer.start()
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)] + [TopicPartition(DEAD, 0)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:
            await self._consumer.position(tp)
        return self

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def read(self, want: int, timeout: float, check: Callable[[], None] | None = None,
                   desc: str = "summaries", quiet: bool = False) -> int:
        """Read until ``want`` summaries in total have arrived or ``timeout`` passes; summaries seen."""
        assert self._consumer is not None
        deadline = time.perf_counter() + timeout
        last_check = 0.0
        with progress(want, desc, disable=quiet) as bar:
            bar.update(self.summaries)
            while self.summaries < want and time.perf_counter() < deadline:
                batch = await self._consumer.getmany(timeout_ms=100, max_records=5000)
                now = time.perf_counter()
                before = self.summaries
                for tp, records in batch.items():
                    if tp.topic == DEAD:
                        self.dead.extend(r.value or b"" for r in records)
                        continue
                    for record in records:
                        self._count(record.value or b"", now, record.timestamp)
                bar.update(self.summaries - before)
                if self.dead:
                    raise click.ClickException(f"{len(self.dead)} record(s) went to vt.dead; the first: "
                                               f"{self.dead[0][:1500].decode(errors='replace')}")
                if check is not None and now - last_check > 2.0:
                    check()
                    last_check = now
        return self.summaries

    def _count(self, value: bytes, now: float, timestamp_ms: int) -> None:
        if _SUMMARY in value and _INTERIM in value:
            self.kinds["summary (interim)"] = self.kinds.get("summary (interim)", 0) + 1
        elif _SUMMARY in value:
            self.summaries += 1
            if self.first_summary is None:
                self.first_summary = now
            self.last_summary = now
            self.kinds["summary"] = self.kinds.get("summary", 0) + 1
            if self.on_summary is not None:
                self.on_summary(value, now, timestamp_ms)
            return
        start = value.find(b'"kind":"')
        kind = value[start + 8: value.find(b'"', start + 8)].decode() if start >= 0 else "?"
        self.kinds[kind] = self.kinds.get(kind, 0) + 1


async def warm_cache(rig: "Rig", tap: Tap, unique: int, timeout: float) -> None:
    """Enrich the first ``unique`` indicators of the run once, so the cache holds them; fail if it does not."""
    await produce(rig.kafka, RAW, (raw_record(i, rig.salt, f"warm-{i}") for i in range(unique)),
                  total=unique, desc="warm-up")
    await tap.read(tap.summaries + unique, timeout, rig.check_workers, desc="warm-up summaries")
    if tap.summaries < unique:
        raise click.ClickException(f"warm-up: {tap.summaries}/{unique} summaries in {timeout:.0f}s")


# --------------------------------------------------------------------------- memory

def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in kB, from /proc/<pid>/status; (0, 0) once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    values = {}
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, number = line.split(":", 1)
            values[name] = int(number.split()[0])
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


class RssSampler:
    """Samples a process's RSS every ``interval`` s in a thread (the event loop may be busy)."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self.last_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> int:
        rss, hwm = rss_kb(self.pid)
        if rss:
            self.last_kb = rss
            self.peak_kb = max(self.peak_kb, rss, hwm)
        return rss

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


# --------------------------------------------------------------------------- reporting

@dataclass
class BenchReport:
    """The table a scenario prints, then its judged line, last."""

    title: str
    rows: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, value: Any) -> None:
        self.rows.append((name, _fmt(value)))

    def emit(self, judged_name: str, judged_value: str, *more: tuple[str, str]) -> None:
        """The table, then the judged line(s): ``judged_name: judged_value`` and each of ``more``, in order."""
        judged = [(judged_name, judged_value), *more]
        width = max([len(n) for n, _ in self.rows] + [len(n) for n, _ in judged])
        click.echo(f"\n{self.title}")
        click.echo(f"{'metric':<{width}}  value")
        click.echo(f"{'-' * width}  {'-' * 12}")
        for name, value in self.rows:
            click.echo(f"{name:<{width}}  {value}")
        for name, value in judged:
            click.echo(f"{name}: {value}")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def chunks(n: int, make: Callable[[int], bytes]) -> Iterator[bytes]:
    for i in range(n):
        yield make(i)
