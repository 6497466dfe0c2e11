"""The least-privilege table: docs/kafka.md prints exactly what pipeline/kafka/acls.py requires."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.kafka.acls import COMMANDS, Need, kafka_acls, required, used_topics
from pipeline.kafka.admin import topic_catalog
from pipeline.settings import Settings
from topics import REPLAY_RUNS, REQUESTS, RETRY_PREFIX, SIGHTINGS, VERDICT_TABLE, changelog_name, retry_topic

pytestmark = pytest.mark.unit

DOCS = (Path(__file__).resolve().parents[3] / "docs" / "kafka.md").read_text()


def _principal(line: str) -> str:
    match = re.search(r"--allow-principal (\S+)", line)
    assert match, line
    return match.group(1)


def _documented(command: str) -> tuple[str, list[str]]:
    match = re.search(rf"^# {re.escape(command)}\n((?:kafka-acls .*\n)+)", DOCS, flags=re.M)
    assert match, command
    lines = match.group(1).splitlines()
    (principal,) = {_principal(line) for line in lines}
    return principal, lines


@pytest.mark.parametrize("command", COMMANDS)
def test_the_docs_give_each_command_exactly_the_acls_it_requires(command):
    principal, lines = _documented(command)
    assert lines == kafka_acls(command, principal)


def test_every_topic_a_worker_touches_is_in_the_catalog_and_the_worker_ensures_only_those():
    settings = Settings()
    catalog = {spec.name for spec in topic_catalog(settings)}
    needs = required("worker", settings)
    for need in needs:
        if need.resource == "topic":
            assert any(need.covers(name) for name in catalog), need
    assert REPLAY_RUNS not in {spec.name for spec in used_topics(topic_catalog(settings), needs)}


def test_a_prefixed_need_covers_every_retry_tier_and_only_them():
    tiers = Need("topic", RETRY_PREFIX, ("Read",), prefixed=True)
    assert tiers.covers(retry_topic("30s")) and tiers.covers(retry_topic("1h")) and not tiers.covers(REQUESTS)


def test_replay_of_one_run_needs_that_runs_group_and_the_given_topic():
    needs = required("replay", Settings(app_id="soc"), topic="siem.archive", run="november")
    assert Need("group", "soc.replay.november", ("Read",)) in needs
    assert Need("topic", "siem.archive", ("Read",)) in needs
    assert Need("topic", "soc-cache-changelog", ("Read",)) in needs


def test_the_worker_needs_the_verdict_memory_topics_only_when_verdict_changes_are_on():
    on = {need.name for need in required("worker", Settings()) if need.resource == "topic"}
    off = {need.name for need in required("worker", Settings.of(outputs_verdict_changes=False))
           if need.resource == "topic"}
    assert on - off == {SIGHTINGS, changelog_name("vtstream", VERDICT_TABLE)}
