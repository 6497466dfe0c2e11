"""``vtstream replay``: retro-hunt a past range of a raw-indicator topic against today's VirusTotal verdicts.

The command parses its options, shows progress and prints the report; the
work is :mod:`pipeline.replay.driver`, the rules :mod:`pipeline.rules.runs`.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click
import orjson

from topics import RAW

from pipeline.cli.options import bootstrap_option, cli_settings
from pipeline.cli.status import span
from pipeline.contracts.events import iso_utc
from pipeline.contracts.run_state import BUDGET_SPENT, INTERRUPTED, WAITING, DetectedRow, RunState
from pipeline.errors import ConfigError
from pipeline.kafka.acls import check_access, required
from pipeline.rules.runs import budget_requests, default_run_name, duration_s, parse_time
from pipeline.rules.runs import run_name as run_name_of
from pipeline.settings import parse_duration


def report(state: RunState, detected: tuple[DetectedRow, ...]) -> dict[str, Any]:
    """The retro-hunt report (``--report FILE``) of a run, over every invocation so far."""
    return {"run": state.run, "topic": state.topic, "from": iso_utc(state.since), "to": iso_utc(state.until),
            "state": state.state, "lookup": state.lookup, "position": dict(state.position),
            "invocations": state.invocations, "records": state.records, "unique": state.unique,
            "cache_hits": state.cache_hits, "vt_requests": state.vt_requests, "skipped_by_policy": state.skipped,
            "dead_letters": state.dead, "unanswered": state.unanswered,
            "detected": [row.to_dict() for row in detected]}


def render_report(doc: dict[str, Any]) -> str:
    """The report as a table: the counts, then one line per detected indicator."""
    lines = [f"run {doc['run']}: {doc['topic']} [{doc['from']}, {doc['to']}) - {doc['state']}"
             f" (invocations: {doc['invocations']})",
             f"records {doc['records']}  unique {doc['unique']}  cache hits {doc['cache_hits']}  "
             f"VirusTotal requests {doc['vt_requests']}  skipped by policy {doc['skipped_by_policy']}  "
             f"dead letters {doc['dead_letters']}  unanswered {doc['unanswered']}",
             f"detected now: {len(doc['detected'])}"]
    if doc["detected"]:
        lines.append(f"  {'indicator':<48} {'detections':>10} {'sightings':>9}  {'first seen':<20} "
                     f"{'last seen':<20} sources")
        for row in doc["detected"]:
            ind = f"{row['indicator']['type']} {row['indicator']['value']}"
            lines.append(f"  {ind[:48]:<48} {row['positives']}/{row['total']!s:<6} {row['sightings']:>9}  "
                         f"{row['first_seen']:<20} {row['last_seen']:<20} {','.join(row['sources']) or '-'}")
    return "\n".join(lines)


class _Bars:
    """tqdm bars on stderr: one while reading, one while waiting for answers (both with ETA)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._reading: Any = None
        self._waiting: Any = None
        self._answered = 0

    def reading(self, total: int) -> None:
        from tqdm import tqdm

        self._reading = tqdm(total=total, unit="rec", desc="reading", file=sys.stderr, disable=not self.enabled)

    def read(self, n: int) -> None:
        if self._reading is not None:
            self._reading.update(n)

    def waiting(self, total: int) -> None:
        from tqdm import tqdm

        if self._reading is not None:
            self._reading.close()
        self._waiting = tqdm(total=total, initial=self._answered, unit="ans", desc="answers", file=sys.stderr,
                             disable=not self.enabled)

    def answered(self, n: int) -> None:
        self._answered += n
        if self._waiting is not None:
            self._waiting.update(n)

    def close(self) -> None:
        for bar in (self._reading, self._waiting):
            if bar is not None:
                bar.close()


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--topic", default=RAW, show_default=True, help="Topic of raw indicator records to replay.")
@click.option("--from", "since", required=True, help="Start of the range: ISO 8601 or a span back (7d, 12h).")
@click.option("--to", "until", help="End of the range (exclusive); default: when the run first started.")
@click.option("--run", "run_name", help="Run name; default derived from topic and range as written. {date} in it "
              "becomes today's UTC date (retrohunt-{date}), so a daily job started again the same day resumes.")
@click.option("--dry-run", is_flag=True, help="Read the range, call nothing, print counts, cost and duration.")
@click.option("--budget", help="Most VirusTotal requests this invocation may cause, a ceiling (each new indicator "
              "reserves its worst case before it is fed): a number (400) or a share of VTSTREAM_VT_DAILY_QUOTA "
              "(15%). Default: VTSTREAM_RETROHUNT_BUDGET of the daily quota.")
@click.option("--max-age", "max_age", help="Accept cache entries up to this age (e.g. 30d) instead of the TTL.")
@click.option("--detected-at", type=click.IntRange(min=1), default=1, show_default=True,
              help="Positives from which an indicator counts as detected in the report.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report to this file as JSON.")
@click.option("--no-wait", is_flag=True, help="Return right after feeding, without waiting for the answers.")
@bootstrap_option
def replay_command(topic: str, since: str, until: str | None, run_name: str | None, dry_run: bool,
                   budget: str | None, max_age: str | None, detected_at: int, report_path: Path | None,
                   no_wait: bool, bootstrap: str | None) -> None:
    """Replay a past time range of a topic through the pipeline, at replay priority.

    Reads the records of TOPIC whose Kafka timestamps fall in [--from, --to)
    and feeds them through intake's rules: a record whose answer is in the
    cache is answered at once, the rest go through the lookup stage and the
    gateway's replay lane (after live lookups, before polls and retries).
    Every event they cause carries "replay": "<run>"; each summary's
    origin.ref names the source record. Repeats and cached indicators cost
    nothing. --budget is a ceiling on the VirusTotal requests this invocation
    causes: each new indicator reserves its worst case (the dry run prints the
    same figure). The run is resumable: the same command continues where a
    budget or Ctrl-C stopped it, and the report adds up every invocation; a
    finished run says so and does nothing. Workers must be running (except
    for --dry-run).

    The budget keeps the live lane's share of the key: without --budget a run
    may spend VTSTREAM_RETROHUNT_BUDGET (default 15%) of VTSTREAM_VT_DAILY_QUOTA
    per invocation.

    \b
    Examples:
      vtstream replay --from 30d --dry-run
      vtstream replay --from 2026-11-01T00:00:00Z --to 2026-12-01T00:00:00Z \\
          --run november --budget 400 --max-age 30d --report november.json
      # the daily retro-hunt (deploy/kubernetes/retrohunt.yaml runs it once a day):
      vtstream replay --topic indicators.raw --from 7d --max-age 1d --budget 15% --run 'retrohunt-{date}'
    """
    from pipeline.replay.driver import ReplayOptions, describe_position, run_replay
    from pipeline.replay.dry_run import dry_run as count_range

    settings = cli_settings(kafka_bootstrap=bootstrap)
    try:
        now = time.time()
        limit = budget or str(settings.replay.retrohunt_budget)
        options = ReplayOptions(
            run=run_name_of(run_name, now) if run_name else default_run_name(topic, since, until), topic=topic,
            since=parse_time(since, now), until=parse_time(until, now) if until else now,
            budget=budget_requests(limit, settings.vt.daily_quota),
            max_age_s=parse_duration(max_age) if max_age else None, detected_at=detected_at, wait=not no_wait)
    except (ConfigError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    if options.until <= options.since:
        raise click.UsageError("--to must be later than --from")
    _run(check_access(settings, "replay", required("replay", settings, topic=topic, run=options.run)))
    if dry_run:
        counts = _run(count_range(settings, options, now))
        requests = counts.requests
        click.echo(f"dry run {options.run}: {topic} [{iso_utc(options.since)}, {iso_utc(options.until)}) "
                   f"(start found by {counts.lookup}: {describe_position(sorted(counts.starts.items()))}); "
                   "nothing was called")
        click.echo(f"records in range      {counts.records}\nvalid indicators      {counts.valid}\n"
                   f"unique indicators     {counts.unique}\nalready answered      {counts.answered}"
                   f"{' (within --max-age)' if max_age else ''}\nto look up            {counts.to_request}\n"
                   f"of which may scan     {counts.scans}\n"
                   f"VirusTotal requests   {requests}\n"
                   f"  (at most: each indicator's worst case, the figure --budget reserves)\n"
                   f"duration              {span(duration_s(requests, settings.vt.rate_per_minute, settings.vt.daily_quota))}"
                   f" at {settings.vt.rate_per_minute}/min and {settings.vt.daily_quota}/day")
        return
    bars = _Bars(sys.stderr.isatty())
    from pipeline.replay.driver import Progress

    progress = Progress(reading=bars.reading, read=bars.read, waiting=bars.waiting, answered=bars.answered)
    try:
        result = _run(_with_stop(lambda stop: run_replay(settings, options, stop=stop, progress=progress)))
    finally:
        bars.close()
    state = result.state
    doc = report(state, result.detected)
    if result.already_finished:
        click.echo(f"run {options.run} is finished ({state.records} records, {state.vt_requests} VirusTotal "
                   "requests); nothing to do. Pick another --run to replay again.")
        _write(report_path, doc)
        return
    where = describe_position(sorted(state.position.items()))
    if state.state == BUDGET_SPENT:
        click.echo(f"budget of {options.budget} VirusTotal requests spent: stopped reading at {where} of {topic}; "
                   "run the same command to resume.", err=True)
    elif state.state == INTERRUPTED:
        click.echo(f"interrupted at {where} of {topic}; run the same command to resume.", err=True)
    elif state.state == WAITING:
        click.echo(f"every record is fed; {state.unanswered} still wait for their answers. Run the same command "
                   "to wait for them and finish the report.", err=True)
    click.echo(render_report(doc))
    _write(report_path, doc)
    if state.state == INTERRUPTED:
        sys.exit(130)


def _write(path: Path | None, doc: dict[str, Any]) -> None:
    if path is not None:
        path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


async def _with_stop(start: Any) -> Any:
    """Run ``start(stop)``; Ctrl-C or SIGTERM sets ``stop``, so the run commits what it fed and says where."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await start(stop)
