"""The development commands: demo, broker, emulator, bench.

``vtstream`` finds them here by name when the ``dev`` extra is installed
(:mod:`pipeline.cli.main`'s command group loads this module on demand), so the
worker image's CLI carries none of them and imports nothing of the tools.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import click

from pipeline.devtools.bench import bench_command
from pipeline.devtools.broker import broker_command
from pipeline.devtools.demo import run_demo
from pipeline.devtools.emulator import EmulatorConfig, serve


@click.command()
@click.option("--port", default=9092, show_default=True, help="TCP port to listen on (127.0.0.1).")
def broker(port: int) -> None:
    """Run the embedded Kafka-compatible broker (tansu) in the foreground.

    For the demo and development: memory only, everything is gone when it
    stops. Production uses Apache Kafka (deploy/docker-compose.yml).

    \b
    Example:
      vtstream broker --port 9092
    """
    cmd = broker_command(port)
    click.echo(f"vtstream broker listening on 127.0.0.1:{port} (memory only; Ctrl-C stops it)", err=True)
    os.execvpe(cmd[0], cmd, {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")})


@click.command()
@click.option("--port", default=8079, show_default=True, help="TCP port (0 picks a free one).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--api-key", "api_keys", multiple=True, default=["vtstream-demo-key"], show_default=True,
              help="Accepted API key; repeat for several. Others get 401.")
@click.option("--rate-per-minute", type=int, help="Strict sliding-window limit; 429 (v3) / 204 (v2) above it.")
@click.option("--daily-quota", type=int, help="Requests per day before quota errors.")
@click.option("--scan-seconds", type=float, default=5.0, show_default=True,
              help="How long a submitted URL or file stays queued.")
@click.option("--not-found-ratio", type=float, default=0.0, show_default=True,
              help="Fraction of indicators VirusTotal 'does not know' (values containing 'notfound' always).")
@click.option("--latency-ms", type=float, default=0.0, show_default=True, help="Added to every answer.")
def emulator(port: int, host: str, api_keys: tuple[str, ...], rate_per_minute: int | None,
             daily_quota: int | None, scan_seconds: float, not_found_ratio: float, latency_ms: float) -> None:
    """Run the VirusTotal emulator: API v3 and v2 over HTTP, deterministic data for any indicator.

    It answers like VirusTotal (bodies shaped on real responses, 401 for a
    wrong key, 429 QuotaExceededError / v2 204 over the rate, queued scans)
    and counts every call: GET /_emulator/stats. Fault injection:
    POST /_emulator/faults {"mode": "500"|"503"|"timeout"|"truncated"|"malformed"|"reset", "count": N}.

    \b
    Example:
      vtstream emulator --port 8079 --rate-per-minute 240
      curl -H 'x-apikey: vtstream-demo-key' http://127.0.0.1:8079/api/v3/ip_addresses/8.8.8.8
    """
    config = EmulatorConfig(host=host, port=port, api_keys=api_keys, rate_per_minute=rate_per_minute,
                            daily_quota=daily_quota, scan_seconds=scan_seconds,
                            not_found_ratio=not_found_ratio, latency_ms=latency_ms)
    try:
        asyncio.run(serve(config))
    except KeyboardInterrupt:
        pass


@click.command()
@click.option("--file", "-f", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Indicators to feed (default: the bundled sample).")
@click.option("--api", "api_version", type=click.Choice(["v3", "v2"]), default="v3", show_default=True)
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Give up after this many seconds.")
@click.option("--verbose", "-v", is_flag=True, help="Print every event, not only the summaries.")
def demo(path: Path | None, api_version: str, timeout: float, verbose: bool) -> None:
    """Run everything on embedded defaults and show what comes out.

    Starts the embedded broker, the VirusTotal emulator and one worker, feeds a
    sample of IPs, domains, URLs and hashes (and a few bad lines), prints the
    enriched events and dead letters, and stops everything. No Kafka, no
    Docker, no API key needed.

    \b
    Examples:
      vtstream demo                      # summaries of the bundled sample
      vtstream demo --api v2 --verbose   # every event, through API v2
      vtstream demo --file my-iocs.txt   # your own indicators, one per line
    """
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(run_demo(path, api_version, timeout, verbose))


#: The development commands by name (the CLI's group lists and loads them from here).
COMMANDS: dict[str, click.Command] = {"bench": bench_command, "broker": broker, "demo": demo, "emulator": emulator}
