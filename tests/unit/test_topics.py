"""The topic names, spelled out once.

They are a contract with everything outside vtstream: the SIEM that writes
indicators.raw, consumers of indicators.enriched and indicators.stix, operators'
ACLs and dashboards. Every other test takes the names from ``topics``, so a rename
there would pass them all: this test is where it fails.
"""

from __future__ import annotations

import pytest

from topics import (DEAD, ENRICHED, LOOKUPS, POLLS, QUOTA, RAW, REPLAY, REPLAY_RUNS, REPLAY_SIGHTINGS, REQUESTS,
                    RESPONSES, SIGHTINGS, STIX, VERDICT_TABLE, catalog, changelog_name, intake_group, replay_group,
                    retry_topic)

pytestmark = pytest.mark.unit


def test_the_topic_names_are_the_documented_ones():
    assert (RAW, ENRICHED, STIX) == ("indicators.raw", "indicators.enriched", "indicators.stix")
    assert (LOOKUPS, REQUESTS, POLLS, RESPONSES, DEAD, QUOTA, SIGHTINGS) == (
        "vt.lookups", "vt.requests", "vt.polls", "vt.responses", "vt.dead", "vt.quota", "vt.sightings")
    assert (REPLAY, REPLAY_RUNS, REPLAY_SIGHTINGS) == ("vt.replay", "vt.replay.runs", "vt.replay.sightings")
    assert retry_topic("30s") == "vt.retry.30s"
    assert changelog_name("vtstream") == "vtstream-cache-changelog"
    assert changelog_name("vtstream", VERDICT_TABLE) == "vtstream-verdicts-changelog"
    assert (intake_group("vtstream"), replay_group("vtstream", "nov")) == ("vtstream.intake", "vtstream.replay.nov")


def test_the_catalog_names_every_topic_and_no_other():
    assert sorted(spec.name for spec in catalog(4, "vtstream")) == [
        "indicators.enriched", "indicators.raw", "indicators.stix", "vt.dead", "vt.lookups", "vt.polls", "vt.quota",
        "vt.replay", "vt.replay.runs", "vt.replay.sightings", "vt.requests", "vt.responses", "vt.retry.10m",
        "vt.retry.1h", "vt.retry.2m", "vt.retry.30s", "vt.sightings", "vtstream-cache-changelog",
        "vtstream-verdicts-changelog"]
