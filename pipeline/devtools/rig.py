"""The rig the benchmarks and the test suite share: child processes, their environment, a producer, waiting.

Workers and the VirusTotal emulator run as ``python -m pipeline ...`` child
processes, as an operator runs them; a worker's environment starts from the
caller's without any ``VTSTREAM_*`` variable, so a developer's shell settings
never leak into a run. Records are produced with a plain aiokafka producer
(acks=all), as any client would. :func:`wait_until` waits on a condition,
never on the clock alone, so a loaded machine makes a run slower, not wrong.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, Any, Callable, Iterable

from aiokafka.errors import CoordinatorLoadInProgressError, GroupCoordinatorNotAvailableError

from pipeline.devtools.broker import free_port, stop_process, wait_for_port
from pipeline.kafka.admin import make_admin, make_producer
from pipeline.settings import DEMO_API_KEY, Settings


def wait_until(condition: Callable[[], bool], timeout: float = 120.0, interval: float = 0.1,
               what: str = "the condition") -> None:
    """Return as soon as ``condition()`` holds; fail with ``what`` after ``timeout`` seconds.

    >>> calls = []
    >>> wait_until(lambda: calls.append(1) or len(calls) == 3, interval=0)
    >>> len(calls)
    3
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not hold within {timeout:.0f}s")
        time.sleep(interval)


def child_env(**variables: str) -> dict[str, str]:
    """The caller's environment without ``VTSTREAM_*``, plus ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VTSTREAM_")}
    env.update(variables)
    return env


def worker_env(bootstrap: str, vt_url: str, data_dir: Path, **variables: str) -> dict[str, str]:
    """A worker's environment: the broker, the emulator with its demo key, memory tables, no web page.

    ``variables`` (full names, ``VTSTREAM_...``) come last and win.
    """
    return child_env(**{
        "VTSTREAM_KAFKA_BOOTSTRAP": bootstrap, "VTSTREAM_VT_BASE_URL": vt_url,
        "VTSTREAM_VT_API_KEY": DEMO_API_KEY, "VTSTREAM_STORE": "memory://",
        "VTSTREAM_DATA_DIR": str(data_dir), "VTSTREAM_WEB_PORT": "0", **variables})


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) process ``pid`` has used so far; None where there is no ``/proc``.
    Unlike a rate, it hardly moves with the broker or the machine's neighbours."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": field 3 on; utime, stime are 14, 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class WorkerProcess:
    """A ``python -m pipeline worker`` child writing to ``log``; ``prefix`` wraps the call (a profiler)."""

    def __init__(self, env: dict[str, str], log: Path, prefix: Iterable[str] = ()) -> None:
        self.log = log
        self._handle: IO[bytes] = log.open("ab")
        self.proc = subprocess.Popen([*prefix, sys.executable, "-m", "pipeline", "worker"], env=env,
                                     stdout=self._handle, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self.pid)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``: a graceful stop, as an orchestrator does it."""
        stop_process(self.proc, timeout)
        self._handle.close()

    def kill(self) -> None:
        """SIGKILL at once: a crash."""
        self.proc.kill()
        self.proc.wait()
        self._handle.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.output().splitlines()[-lines:])
        except OSError:
            return ""


def emulator_control(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """GET (or POST ``body`` to) an emulator control endpoint such as ``/_emulator/stats``; decoded JSON.

    The timeout is generous: an emulator just started on a box busy with brokers and workers
    (the suite runs four tests at once on two cores) has been seen to take over 10 s to answer."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method="GET" if data is None else "POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read() or b"null")


class EmulatorProcess:
    """``vtstream emulator`` in a child process on a free port; ``args`` are its options."""

    def __init__(self, *args: str, log: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._handle: IO[bytes] | None = log.open("wb") if log is not None else None
        out = self._handle if self._handle is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline", "emulator", "--port", str(self.port),
                                      *args], env=child_env(), stdout=out, stderr=subprocess.STDOUT)
        wait_for_port("127.0.0.1", self.port)

    def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return emulator_control(self.url, path, body)

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.control("/_emulator/stats")
        return stats

    def stop(self) -> None:
        stop_process(self.proc, 10.0)
        if self._handle is not None:
            self._handle.close()


def _kafka(kafka: str | Settings) -> Settings:
    """A plaintext bootstrap address (the tests' brokers) or full Settings (the bench, any security)."""
    return Settings.of(kafka_bootstrap=kafka) if isinstance(kafka, str) else kafka


#: What the rig's producer, a stand-in for a SIEM, sends at most in one record.
SIEM_MAX_REQUEST_SIZE = 16 * 1024 * 1024


async def produce(kafka: str | Settings, topic: str, values: Iterable[bytes], *, key: bytes | None = None,
                  on_acked: Callable[[int], None] = lambda n: None, **options: Any) -> int:
    """Send every value (acks=all), wait for every ack; how many were sent.

    ``on_acked`` hears how many were acknowledged, every few thousand records. It writes as a SIEM
    would, so records larger than vtstream's own limit are sent too (up to 16 MiB).
    """
    producer = make_producer(_kafka(kafka), **{"max_request_size": SIEM_MAX_REQUEST_SIZE, **options})
    await producer.start()
    sent = 0
    try:
        pending = []
        for value in values:
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                on_acked(len(pending))
                sent += len(pending)
                pending = []
        await asyncio.gather(*pending)
        on_acked(len(pending))
        sent += len(pending)
    finally:
        await producer.stop()
    return sent


async def group_members(kafka: str | Settings, group: str) -> int:
    """Members of a consumer group in state Stable (0 when it is not stable or not known)."""
    admin = make_admin(_kafka(kafka))
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group])
    except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError):
        return 0  # Apache Kafka, before its __consumer_offsets topic is ready
    finally:
        await admin.close()
    for response in described:
        for grp in response.groups:
            _err, _gid, state, _ptype, _proto, members = grp[:6]
            return len(members) if state == "Stable" else 0
    return 0
