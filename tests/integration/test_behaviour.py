"""VTSTREAM_VT_BEHAVIOUR over a real broker and the emulator: what a hash lookup costs and yields."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.kafka import collect, produce, summaries
from tests.integration.test_vtclient import run

from pipeline.rules.indicators import classify
from pipeline.vt.behaviour import NO_SANDBOX_REPORT
from pipeline.vt.client import LookupResult, VirusTotalClient
from topics import ENRICHED, RAW

pytestmark = pytest.mark.integration

#: The emulator has sandbox reports for this file ...
SANDBOXED = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
#: ... and none for these (pipeline.devtools.emulator.v3.has_sandbox_report): a 404 and an empty summary.
NOT_SANDBOXED = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
EMPTY_SUMMARY = "1523456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"


def lookup(value: str, **settings: Any) -> tuple[LookupResult, int]:
    """One client lookup against an in-process emulator: the result and how often it asked the pace."""
    paced, api = 0, settings.pop("api", "v3")

    async def pace() -> None:
        nonlocal paced
        paced += 1

    async def scenario(client: VirusTotalClient, emu: Any) -> LookupResult:
        return await client.lookup(classify(value), pace, api=api)

    return run(scenario, **settings), paced


def test_client_fetches_the_summary_through_the_pace_and_merges_it():
    result, paced = lookup(SANDBOXED, vt_behaviour=True)
    assert (result.status, paced, result.notes) == ("found", 2, [])
    summary = result.body["data"]["behaviour_summary"]
    assert summary["processes_tree"][0]["children"] and summary["mitre_attack_techniques"]


@pytest.mark.parametrize("value", [NOT_SANDBOXED, EMPTY_SUMMARY])
def test_client_notes_a_file_without_a_sandbox_report(value):
    result, paced = lookup(value, vt_behaviour=True)
    assert (result.status, paced, result.notes) == ("found", 2, [NO_SANDBOX_REPORT])
    assert "behaviour_summary" not in result.body["data"]


@pytest.mark.parametrize("value, settings", [
    (SANDBOXED, {}),                                      # the setting is off by default
    (SANDBOXED, {"vt_behaviour": True, "api": "v2"}),     # v2 has behaviour in allinfo already
    ("8.8.8.8", {"vt_behaviour": True}),                  # only files have sandbox reports
    (SANDBOXED, {"vt_behaviour": True, "config": {"not_found_ratio": 1.0}}),  # nothing to summarise
])
def test_client_asks_once_when_there_is_no_summary_to_fetch(value, settings):
    result, paced = lookup(value, **settings)
    assert paced == 1
    assert "behaviour_summary" not in str(result.body)


def enrich(kafka: str, values: list[str]) -> list[dict[str, Any]]:
    produce(kafka, RAW, values)
    events = collect(kafka, ENRICHED, lambda evs: len(summaries(evs)) >= len(values), timeout=90)
    assert len(summaries(events)) == len(values)
    return events


def behaviour_events(events: list[dict[str, Any]], value: str) -> list[Any]:
    """The events only a behaviour summary yields: mutexes, file paths, techniques, process names."""
    mine = [e for e in events if e["indicator"]["value"] == value]
    return ([e["relation"] for e in mine if e["kind"] == "relation" and e["relation"]["type"] in ("Mutex", "File Path")]
            + [e["attribute"] for e in mine if e["kind"] == "attribute"
               and e["attribute"]["name"] == "MITRE ATT&CK Technique"]
            + [a for e in mine if e["kind"] == "report" for a in e["report"]["attributes"]
               if a["name"] in ("Process Name", "Runtime DLL")])


def summary_of(events: list[dict[str, Any]], value: str) -> dict[str, Any]:
    (summary,) = [e["summary"] for e in summaries(events) if e["indicator"]["value"] == value]
    return summary


def test_with_the_setting_a_hash_lookup_costs_two_requests_and_yields_behaviour(kafka, emulator, worker_factory):
    worker_factory(kafka, emulator.url, vt_behaviour="true")
    events = enrich(kafka, [SANDBOXED, NOT_SANDBOXED])
    stats = emulator.stats()
    assert (stats["accepted"], stats["object_requests"], stats["behaviour_summary_requests"]) == (4, 2, 2)
    found = behaviour_events(events, SANDBOXED)
    names = {r.get("name") for r in found} | {r.get("type") for r in found}
    assert {"Mutex", "File Path", "MITRE ATT&CK Technique", "Process Name", "Runtime DLL"} <= names
    mutexes = {r["value"]: r["attributes"] for r in found if r.get("type") == "Mutex"}
    assert mutexes["ShimCacheMutex"] == [{"name": "Opened Mutex", "value": "Yes"}]
    assert "notes" not in summary_of(events, SANDBOXED)
    # a file no sandbox ran: the same two requests, a note, no behaviour events
    assert summary_of(events, NOT_SANDBOXED)["notes"] == ["behaviour_summary: no sandbox report"]
    assert behaviour_events(events, NOT_SANDBOXED) == []


def test_without_the_setting_a_hash_lookup_costs_one_request_and_yields_none(kafka, emulator, worker_factory):
    worker_factory(kafka, emulator.url)
    events = enrich(kafka, [SANDBOXED])
    stats = emulator.stats()
    assert (stats["accepted"], stats["object_requests"], stats["behaviour_summary_requests"]) == (1, 1, 0)
    assert behaviour_events(events, SANDBOXED) == []
    assert summary_of(events, SANDBOXED)["found"] is True
