"""``vtstream status``: how much VirusTotal quota is left and where work is waiting.

An operator's first question when enrichment slows down is "are we out of
quota, or stuck?". This answers it from the broker alone, with no worker
running: the gateway's governor keeps its counters on the compacted topic
``vt.quota``; parked records, dead letters and lag are offsets of the retry,
dead-letter and input topics against the workers' consumer group (faust
commits under ``VTSTREAM_APP_ID``).

Split in two so the formatting is testable without a broker:
:func:`gather_status` reads the broker into a :class:`StatusSnapshot` (I/O);
:func:`summarize` and :func:`render` turn a snapshot into the ``--json``
object and the table (pure; the snapshot carries its own clock).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

import click
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from topics import DEAD, LOOKUPS, POLLS, QUOTA, RAW, REPLAY, REQUESTS, RESPONSES, intake_group, retry_topic

from pipeline.cli.options import bootstrap_option, cli_settings
from pipeline.contracts.quota import GOVERNOR_KEY, QuotaState
from pipeline.contracts.run_state import RunState
from pipeline.errors import ConfigError
from pipeline.errors import RecordError
from pipeline.kafka.acls import check_access
from pipeline.kafka.reading import latest_by_key, true_ends
from pipeline.kafka.security import check_connection, client_options
from pipeline.replay.driver import load_runs
from pipeline.settings import Settings

#: Seconds the whole status read may take before we call the broker unreachable.
DEFAULT_TIMEOUT = 12.0
_LABEL_WIDTH = 19


@dataclass(frozen=True)
class StatusSnapshot:
    """What the broker said at ``now``; everything ``vtstream status`` prints comes from it.

    ``governor`` is the gateway's last record on ``vt.quota`` as written, with
    its per-source counts (``by_source``) and any pause (day roll-over is
    applied when summarizing, against ``now``). Counts are
    ``None`` when their topic does not exist. ``daily_quota``,
    ``monthly_quota``, ``rate_per_minute`` and ``source_caps`` are the local
    settings, used only where the governor has not written its own yet.
    """

    now: float
    bootstrap: str
    group: str
    daily_quota: int
    monthly_quota: int = 0
    rate_per_minute: int = 4
    source_caps: Mapping[str, int] = field(default_factory=dict)
    governor: QuotaState | None = None
    parked: Mapping[str, int | None] = field(default_factory=dict)
    dead: int | None = 0
    lag: Mapping[str, int | None] = field(default_factory=dict)
    missing_topics: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    #: Each replay run's last state on vt.replay.runs.
    replay_runs: tuple[RunState, ...] = ()


# ---------------------------------------------------------------- pure part


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else _utc(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


def _next_midnight(now: float) -> float:
    day = _utc(now).replace(hour=0, minute=0, second=0, microsecond=0)
    return (day + timedelta(days=1)).timestamp()


def span(seconds: float) -> str:
    """'12s', '4m05s', '5h12m', '2d03h': short enough for one status line."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def summarize(snap: StatusSnapshot) -> dict[str, Any]:
    """The ``--json`` object: counters with day/month roll-over applied, times as ISO UTC.

    A counter written on an earlier UTC day (or month) counts as 0: the
    governor only rewrites its record on its next call, so a quiet night would
    otherwise show yesterday's usage as today's.
    """
    recorded = snap.governor is not None
    gov = (snap.governor or QuotaState(day="", month="", daily_quota=snap.daily_quota,
                                       monthly_quota=snap.monthly_quota)).rolled(snap.now)
    today, month = gov.day, gov.month
    daily, used_today, monthly, used_month = gov.daily_quota, gov.used_today, gov.monthly_quota, gov.used_month
    last_call = gov.last_call_at
    resets = _next_midnight(snap.now)
    until, reason = gov.blocked_until, gov.blocked_reason
    blocked = until is not None and until > snap.now
    if not blocked and recorded and used_today >= daily:  # the gateway parks every call until midnight
        blocked, until, reason = True, resets, f"daily quota of {daily} requests spent"
    sources: dict[str, dict[str, Any]] = {
        name: {"used_today": 0, "cap": cap} for name, cap in snap.source_caps.items()}
    for name, used in gov.by_source.items():
        sources[name] = {"used_today": used, "cap": snap.source_caps.get(name)}
    ordered = sorted(sources.items(), key=lambda kv: (-kv[1]["used_today"], kv[0]))
    return {
        "at": _iso(snap.now),
        "bootstrap": snap.bootstrap,
        "group": snap.group,
        "quota": {
            "recorded": recorded,
            "day": today,
            "recorded_day": snap.governor.day if snap.governor else None,
            "used_today": used_today,
            "daily_quota": daily,
            "remaining_today": max(0, daily - used_today),
            "resets_at": _iso(resets),
            "resets_in_s": int(resets - snap.now),
            "month": month,
            "used_month": used_month,
            "monthly_quota": monthly or None,
            "remaining_month": max(0, monthly - used_month) if monthly else None,
            "rate_per_minute": gov.rate_per_minute or snap.rate_per_minute,
            # the gateway's own pace once it has written its record; until then this shell's setting
            "rate_from": "gateway" if gov.rate_per_minute else "local settings",
            "last_call_at": _iso(last_call),
            "last_call_ago_s": None if last_call is None else round(max(0.0, snap.now - last_call), 1),
            "updated_at": _iso(gov.updated_at),
        },
        "allowances": _allowances(snap, gov),
        "blocked": {"blocked": blocked, "until": _iso(until) if blocked else None,
                    "reason": reason if blocked else None},
        "sources": dict(ordered),
        "parked": dict(snap.parked),
        "parked_total": sum(n or 0 for n in snap.parked.values()),
        "dead_letters": {"topic": DEAD, "count": snap.dead},
        "lag": dict(snap.lag),
        "missing_topics": list(snap.missing_topics),
        "notes": list(snap.notes),
        "replay_runs": [_replay_run(run) for run in snap.replay_runs],
    }


def _replay_run(run: RunState) -> dict[str, Any]:
    """One replay run for ``--json``: range as ISO UTC, position, records done, requests spent, state."""
    return {"run": run.run, "topic": run.topic, "from": _iso(run.since), "to": _iso(run.until),
            "position": dict(run.position), "records": run.records, "unique": run.unique,
            "cache_hits": run.cache_hits, "vt_requests": run.vt_requests, "unanswered": run.unanswered,
            "invocations": run.invocations, "state": run.state, "updated_at": _iso(run.updated_at)}


def _allowances(snap: StatusSnapshot, gov: QuotaState) -> dict[str, Any]:
    """Both views of the key's allowances: the configured ones, and VirusTotal's (None when it did not say)."""
    configured = gov.configured or {"per_minute": snap.rate_per_minute, "daily": snap.daily_quota,
                                    "monthly": snap.monthly_quota}
    return {"configured": dict(configured), "virustotal": gov.virustotal, "virustotal_note": gov.virustotal_note}


def _allowance_line(view: Mapping[str, Any]) -> str:
    vt = view["virustotal"]
    c = view["configured"]
    configured = f"configured {c.get('per_minute')}/min, {c.get('daily')}/day, {c.get('monthly') or 'unlimited'}/month"
    if not vt:
        return f"{configured}; VirusTotal's: not reported ({view['virustotal_note'] or 'not asked yet'})"

    def period(name: str) -> str:
        allowed, used = vt.get(name), vt.get(f"{name}_used")
        return "-" if allowed is None else f"{used if used is not None else '?'} / {allowed}"
    return (f"{configured}; VirusTotal's: hourly {period('hourly')}, daily {period('daily')}, "
            f"monthly {period('monthly')} (used / allowed; the smaller of the two views counts)")


def _counts(counts: Mapping[str, int | None]) -> str:
    if not counts:
        return "-"
    return ", ".join(f"{name} {'missing' if n is None else n}" for name, n in counts.items())


def render(snap: StatusSnapshot) -> str:
    """The human table: one labelled line per question (quota, blocked, sources, parked, dead, lag)."""
    s = summarize(snap)
    q = s["quota"]
    monthly = (f"{q['used_month']} / {q['monthly_quota']} ({q['remaining_month']} left)"
               if q["monthly_quota"] else f"{q['used_month']} / unlimited")
    if not q["recorded"]:
        last = "no calls recorded yet"
    elif q["last_call_ago_s"] is None:
        last = "no calls made yet"
    else:
        last = f"last call {span(q['last_call_ago_s'])} ago"
    quota = (f"used today {q['used_today']} / {q['daily_quota']} ({q['remaining_today']} left, "
             f"resets 00:00 UTC in {span(q['resets_in_s'])}); this month {monthly}; "
             f"pace {q['rate_per_minute']}/min{'' if q['rate_from'] == 'gateway' else ' (local setting)'}; {last}")
    if q["recorded_day"] is not None and q["recorded_day"] != q["day"]:
        quota += f" (counter last written on {q['recorded_day']})"
    b = s["blocked"]
    blocked = f"until {b['until']}: {b['reason'] or 'no reason given'}" if b["blocked"] else "no"
    sources = ", ".join(f"{name} {v['used_today']} / {v['cap'] if v['cap'] is not None else '-'}"
                        for name, v in s["sources"].items()) or "none recorded"
    dead = s["dead_letters"]
    dead_line = f"{DEAD} missing" if dead["count"] is None else f"{dead['count']} on {DEAD}"
    tiers = set(snap.parked)
    lag = {t: n for t, n in snap.lag.items() if t not in tiers}
    rows = [
        ("VirusTotal quota", quota),
        ("allowances", _allowance_line(s["allowances"])),
        ("blocked", blocked),
        ("per source", sources),
        ("parked", _counts(snap.parked)),
        ("dead letters", dead_line),
        ("consumer lag", f"{_counts(lag)} (group {snap.group})"),
    ]
    for run in s["replay_runs"]:
        position = ", ".join(f"p{p}@{o}" for p, o in sorted(run["position"].items())) or "-"
        rows.append((f"replay {run['run']}", f"{run['topic']} [{run['from']}, {run['to']}) at {position}; "
                     f"{run['records']} records, {run['vt_requests']} requests, {run['unanswered']} unanswered; "
                     f"{run['state']}"))
    if snap.missing_topics:
        rows.append(("missing topics", ", ".join(snap.missing_topics) + " (run 'vtstream topics create')"))
    rows += [("note", note) for note in snap.notes]
    return "\n".join(f"{label:<{_LABEL_WIDTH}}{text}" for label, text in rows)


# ---------------------------------------------------------------- broker part


def input_topics(settings: Settings) -> list[str]:
    """Topics the workers consume, retry tiers last."""
    return [RAW, LOOKUPS, REQUESTS, REPLAY, POLLS, RESPONSES] + [retry_topic(d) for d in settings.retry.tiers]


def consumer_groups(settings: Settings, consumed: list[str]) -> dict[str, list[str]]:
    """Which group commits which topics: intake runs in its own group (plain aiokafka)."""
    return {intake_group(settings.app_id): [RAW], settings.app_id: [t for t in consumed if t != RAW]}


async def gather_status(settings: Settings, *, timeout: float = DEFAULT_TIMEOUT,
                        now: float | None = None) -> StatusSnapshot:
    """Read quota records and offsets from the broker; never creates a topic.

    Raises ConfigError naming the bootstrap address when the broker cannot be
    reached or does not answer within ``timeout`` seconds.
    """
    bootstrap = settings.kafka.bootstrap
    try:
        return await asyncio.wait_for(_gather(settings, now), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        raise ConfigError(f"cannot reach Kafka at {bootstrap}: no answer within {timeout:g}s "
                          "(set --bootstrap or VTSTREAM_KAFKA_BOOTSTRAP)") from None
    except KafkaError as exc:
        raise ConfigError(f"Kafka at {bootstrap} answered with an error: {exc}") from exc


async def _gather(settings: Settings, now: float | None) -> StatusSnapshot:
    bootstrap = settings.kafka.bootstrap
    await check_connection(settings, timeout=0)  # one try: status answers at once; a refusal names the setting
    await check_access(settings, "status")
    common: dict[str, Any] = {**client_options(settings), "request_timeout_ms": 10000, "client_id": "vtstream-status"}
    admin = AIOKafkaAdminClient(**common)
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **common)
    try:
        try:
            await admin.start()
            await consumer.start()
        except Exception as exc:  # KafkaConnectionError and friends
            raise ConfigError(f"cannot reach Kafka at {bootstrap}: {exc} "
                              "(set --bootstrap or VTSTREAM_KAFKA_BOOTSTRAP)") from exc
        # Ask for all topics: naming a missing one in a metadata request makes
        # some brokers auto-create it with their own partition count.
        partitions = {t["topic"]: sorted(p["partition"] for p in t["partitions"])
                      for t in await admin.describe_topics() if not t.get("error_code")}
        consumed = input_topics(settings)
        tiers = [retry_topic(d) for d in settings.retry.tiers]
        wanted = [QUOTA, DEAD, *consumed]
        missing = tuple(t for t in wanted if t not in partitions)
        tps = [TopicPartition(t, p) for t in wanted if t in partitions for p in partitions[t]]
        begin: dict[TopicPartition, int] = await consumer.beginning_offsets(tps) if tps else {}
        listed: dict[TopicPartition, int] = await consumer.end_offsets(tps) if tps else {}
        committed: dict[TopicPartition, int] = {}
        for group, topics in consumer_groups(settings, consumed).items():
            group_tps = [tp for tp in tps if tp.topic in topics]
            if group_tps:
                offsets = await admin.list_consumer_group_offsets(group, partitions=group_tps)
                committed.update({tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0})
        end = await true_ends(consumer, begin, listed)

        def waiting(topic: str) -> int | None:
            if topic not in partitions:
                return None
            total = 0
            for p in partitions[topic]:
                tp = TopicPartition(topic, p)
                start = max(committed.get(tp, begin[tp]), begin[tp])
                total += max(0, end[tp] - start)
            return total

        dead = None if DEAD not in partitions else sum(
            end[TopicPartition(DEAD, p)] - begin[TopicPartition(DEAD, p)] for p in partitions[DEAD])
        governor, notes = _decode_quota(await latest_by_key(settings, QUOTA) if QUOTA in partitions else {})
        runs = tuple((await load_runs(settings)).values())
        return StatusSnapshot(
            now=time.time() if now is None else now, bootstrap=bootstrap, group=settings.app_id,
            daily_quota=settings.vt.daily_quota, monthly_quota=settings.vt.monthly_quota,
            rate_per_minute=settings.vt.rate_per_minute, source_caps=dict(settings.vt.source_daily_caps),
            governor=governor,
            parked={t: waiting(t) for t in tiers}, dead=dead,
            lag={t: waiting(t) for t in consumed}, missing_topics=missing, notes=tuple(notes),
            replay_runs=runs)
    finally:
        await consumer.stop()
        await admin.close()


def _decode_quota(latest: Mapping[bytes, bytes]) -> tuple[QuotaState | None, list[str]]:
    """The governor record; an undecodable value becomes a note, not a crash."""
    stored = latest.get(GOVERNOR_KEY)
    if stored is None:
        return None, []
    try:
        return QuotaState.from_bytes(stored), []
    except RecordError as exc:
        return None, [f"{QUOTA} record {GOVERNOR_KEY!r} is unreadable ({exc}); ignored"]


# ---------------------------------------------------------------- command


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@bootstrap_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
def status_command(bootstrap: str | None, as_json: bool) -> None:
    """Show VirusTotal quota use, parked and dead records, and consumer lag.

    Reads the broker only (no worker needs to run, nothing is written or
    created): the quota governor's counters on the compacted topic vt.quota,
    and the offsets of the workers' consumer group (VTSTREAM_APP_ID).

    \b
    What each line means:
      VirusTotal quota  calls the gateway made today (UTC) against the daily
                        quota, what is left and when it resets; this month's
                        calls; the gateway's request pace ('local setting'
                        until it has recorded one); when the last call went out.
                        A counter from an earlier UTC day counts as 0.
      blocked           whether the gateway is holding calls, until when, why
                        (e.g. the daily quota is spent, VirusTotal said 429).
      per source        calls today per input source against its cap
                        (VTSTREAM_SOURCE_DAILY_CAPS); '-' = no cap.
      parked            records waiting on each delayed-retry topic
                        (pending scans, retryable failures) not yet taken back.
      dead letters      records on vt.dead, which need a person to look at them.
      consumer lag      records on each input topic the workers have not
                        committed yet; a growing vt.requests with quota left
                        means the gateway is slow or stopped.
      replay <run>      each `vtstream replay` run: topic and range, position
                        (partition@next offset), records done, VirusTotal
                        requests spent, state (reading, budget spent,
                        interrupted, finished).

    'missing' means the topic does not exist: run 'vtstream topics create'.

    \b
    Example:
      $ vtstream status --bootstrap kafka1:9092
      VirusTotal quota   used today 123 / 500 (377 left, resets 00:00 UTC in 5h12m); this month
                         4021 / unlimited; pace 4/min; last call 12s ago
      blocked            no
      per source         siem 80 / 300, proxy 43 / -
      parked             vt.retry.30s 3, vt.retry.2m 0, vt.retry.10m 1, vt.retry.1h 0
      dead letters       17 on vt.dead
      consumer lag       indicators.raw 0, vt.lookups 12, vt.requests 340, vt.responses 0 (group vtstream)
      $ vtstream status --json | jq .quota.remaining_today
      377
    """
    settings = cli_settings(kafka_bootstrap=bootstrap)
    # aiokafka logs each failed connection attempt; the ClickException below says it once.
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        snap = asyncio.run(gather_status(settings))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        kafka_log.setLevel(level)
    if as_json:
        click.echo(orjson.dumps(summarize(snap), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(render(snap))
