"""``vtstream demo``: broker, emulator and a worker on this machine, a sample in, events out.

Everything runs as child processes of the demo and is stopped when it ends,
also on Ctrl-C. The worker runs with the emulator unlimited, a fast pace (600
requests/minute; a real public key allows 4) and short retry tiers (2s, 5s,
30s) so submitted URL scans finish within seconds. Interim summaries ("scan
submitted") are shown; the demo ends when every indicator has its final one.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click
import orjson

from topics import DEAD, ENRICHED, RAW

from pipeline.cli.render import format_event
from pipeline.devtools.broker import EmbeddedBroker, free_port, stop_process, wait_for_port
from pipeline.kafka.admin import consume, ensure_topics, make_producer, topic_catalog
from pipeline.settings import Settings
from pipeline.stages.intake import Rejected, parse

SAMPLE = Path(__file__).resolve().parent / "samples" / "demo-indicators.txt"


def _child(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], env=env, stdout=handle,
                            stderr=subprocess.STDOUT)


def run_demo(path: Path | None, api: str, timeout: float, verbose: bool = False) -> int:
    """Run the demo; 0 when every sample indicator got its summary."""
    source = path or SAMPLE
    lines = [ln.strip() for ln in source.read_text(encoding="utf-8").splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    settings = Settings()
    expected = sum(1 for ln in lines if not isinstance(parse(ln.encode(), "demo", settings), Rejected))
    workdir = Path(tempfile.mkdtemp(prefix="vtstream-demo-"))
    with ExitStack() as stack:
        broker = stack.enter_context(EmbeddedBroker())
        vt_port = free_port()
        env = {**os.environ, "VTSTREAM_KAFKA_BOOTSTRAP": broker.bootstrap,
               "VTSTREAM_VT_BASE_URL": f"http://127.0.0.1:{vt_port}", "VTSTREAM_VT_API_VERSION": api,
               "VTSTREAM_VT_RATE_PER_MINUTE": "600", "VTSTREAM_STORE": "memory://",
               "VTSTREAM_DATA_DIR": str(workdir / "data"), "VTSTREAM_WEB_PORT": "0",
               "VTSTREAM_KAFKA_SESSION_TIMEOUT": "6", "VTSTREAM_LOG_LEVEL": "WARNING",
               "VTSTREAM_ADD_TAGS": "virustotal,vtstream-demo", "VTSTREAM_RETRY_TIERS": "2s,5s,30s",
               "VTSTREAM_UPLOAD_LABELS": "TLP:CLEAR"}
        click.echo(f"broker    {broker.bootstrap} (embedded tansu, memory only)")
        emulator = _child(["emulator", "--port", str(vt_port), "--scan-seconds", "3"], env, workdir / "emulator.log")
        stack.callback(stop_process, emulator)
        wait_for_port("127.0.0.1", vt_port)
        click.echo(f"emulator  http://127.0.0.1:{vt_port} (VirusTotal API {api}, demo key)")
        worker_settings = Settings.from_env(env)
        asyncio.run(ensure_topics(worker_settings, topic_catalog(worker_settings)))
        worker = _child(["worker"], env, workdir / "worker.log")
        stack.callback(stop_process, worker)
        click.echo(f"worker    pid {worker.pid}, log {workdir / 'worker.log'}")
        click.echo(f"feeding   {len(lines)} records from {source} ({expected} indicators, "
                   f"{len(lines) - expected} bad lines)\n")
        seen = asyncio.run(_feed_and_watch(worker_settings, lines, expected, timeout, worker, verbose))
    ok = seen["summary"] >= expected
    kinds = ", ".join(f"{seen[k]} {k}" for k in ("attribute", "relation", "report", "summary"))
    click.echo(f"\n{ENRICHED}: {kinds} events ({seen['summary']} summaries for {expected} indicators); "
               f"{DEAD}: {seen['dead']} records")
    if not verbose:
        click.echo("(vtstream demo --verbose prints every event; vtstream tail --json shows them as JSON)")
    if not ok:
        click.echo(f"demo incomplete after {timeout:.0f}s; see the logs in {workdir}", err=True)
        return 1
    click.echo("demo finished; everything stopped.")
    return 0


async def _feed_and_watch(kafka: Settings, lines: list[str], expected: int, timeout: float,
                          worker: subprocess.Popen[bytes], verbose: bool) -> dict[str, int]:
    producer = make_producer(kafka)
    await producer.start()
    try:
        for line in lines:
            await producer.send(RAW, line.encode())
        await producer.flush()
    finally:
        await producer.stop()
    seen = {"attribute": 0, "relation": 0, "report": 0, "summary": 0, "dead": 0}
    deadline = time.monotonic() + timeout

    async def watch(topic: str) -> None:
        async for _key, value in consume(kafka, topic, from_beginning=True, idle_timeout=1.0 + timeout):
            event: dict[str, Any] = orjson.loads(value or b"{}")
            if topic == DEAD:
                seen["dead"] += 1
                click.echo(f"dead      {event.get('reason')}")
                continue
            kind = str(event.get("kind"))
            interim = kind == "summary" and bool(event["summary"].get("pending"))
            seen[kind] = seen.get(kind, 0) + (0 if interim else 1)
            if verbose or kind == "summary":
                click.echo(format_event(event))
            if seen["summary"] >= expected:
                return

    dead_task = asyncio.create_task(watch(DEAD))
    try:
        await asyncio.wait_for(watch(ENRICHED), timeout=max(1.0, deadline - time.monotonic()))
    except asyncio.TimeoutError:
        if worker.poll() is not None:
            click.echo(f"worker exited with code {worker.returncode}", err=True)
    await asyncio.sleep(1.0)
    dead_task.cancel()
    try:
        await dead_task
    except asyncio.CancelledError:
        pass
    return seen
