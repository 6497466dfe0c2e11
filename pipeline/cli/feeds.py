"""The feed servers' command line: ``vtstream misp-feed``, and how every feed server runs (also ``taxii``)."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Awaitable, Callable

import click

from pipeline.cli.options import bootstrap_option, cli_settings
from pipeline.errors import ConfigError
from pipeline.settings import Settings, settings_doc

Serve = Callable[[Settings, str, int, asyncio.Event], Awaitable[None]]


def run_server(serve: Serve, settings: Settings, host: str, port: int) -> None:
    """Run a feed server's ``serve`` until SIGTERM or Ctrl-C; a setting it refuses stops it with the reason."""
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, host, port, stop)

    try:
        asyncio.run(run())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _misp_env_help() -> str:
    """The settings the MISP feed reads (Kafka's too), for its --help."""
    wanted = ("VTSTREAM_MISP_FEED_", "VTSTREAM_KAFKA_", "VTSTREAM_APP_ID", "VTSTREAM_STIX_INDICATOR_AT")
    lines = ["\b", "Environment:"]
    lines += [f"  {env:<36} {default}" for env, default, _ in settings_doc() if env.startswith(wanted)]
    return "\n".join(lines)


@click.command(epilog=_misp_env_help())
@click.option("--port", type=int, default=9600, show_default=True, help="Port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; beyond loopback it needs HTTPS or VTSTREAM_MISP_FEED_INSECURE=true.")
@bootstrap_option
def misp_feed_command(port: int, host: str, bootstrap: str | None) -> None:
    """Serve the enrichment results as a MISP feed MISP pulls (type "MISP Feed").

    One MISP event per UTC day ("vtstream: VirusTotal enrichment YYYY-MM-DD"); in it, for each
    enriched indicator, its object (domain-ip, ip-port, url or file) analysed-with a
    virustotal-report object, tlp: tags from the sightings' labels, to_ids on what is now
    malicious. Paths: /manifest.json, /hashes.csv, /<event uuid>.json. A verdict change gives
    the day's event a later timestamp, so MISP pulls it again. Reads indicators.enriched from
    the first day served on, a batch at a time; answers 503 until it has read to the end.
    HTTP Basic from VTSTREAM_MISP_FEED_USERNAME and VTSTREAM_MISP_FEED_PASSWORD (or _FILE);
    HTTPS with VTSTREAM_MISP_FEED_CERT and VTSTREAM_MISP_FEED_KEY. Adding it to MISP: docs/misp.md.

    \b
    Example:
      VTSTREAM_MISP_FEED_USERNAME=misp VTSTREAM_MISP_FEED_PASSWORD_FILE=/run/secrets/misp-feed \\
      VTSTREAM_MISP_FEED_CERT=feed.crt VTSTREAM_MISP_FEED_KEY=feed.key \\
      vtstream misp-feed --host 0.0.0.0 --port 9600
    """
    from pipeline.outputs.misp.server import serve

    run_server(serve, cli_settings(kafka_bootstrap=bootstrap), host, port)
