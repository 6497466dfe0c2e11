"""`vtstream replay` over a real broker, the emulator and a worker: window, calls, marking, report, budget, priority."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.support.kafka import collect, finals, produce
from tests.support.replay import ARCHIVE, FROM_MS, HOUR_MS, TO_MS, archive, dry_counts, iso, replay, status_of

from topics import ENRICHED, LOOKUPS, RAW

pytestmark = pytest.mark.integration

@pytest.mark.both_brokers
def test_replay_window_calls_marking_report_and_dry_run(kafka, emulator, worker_factory, tmp_path: Path):
    worker_factory(kafka, emulator.url)
    produce(kafka, RAW, ["9.9.9.9"])  # answered live before the replay: cached, costs the replay nothing
    collect(kafka, ENRICHED, lambda evs: len(finals(evs)) >= 1)
    before = FROM_MS - HOUR_MS
    inside = [FROM_MS, FROM_MS + HOUR_MS, FROM_MS + 30 * HOUR_MS, TO_MS - 1]
    records: list[tuple[int, str | dict[str, Any]]] = [
        (before, "203.0.113.200"),  # before --from
        (TO_MS, "203.0.113.201"),  # at --to: excluded
        (inside[2], {"value": "8.8.8.8", "source": "fw"}),
        (inside[0], {"value": "8.8.8.8", "source": "proxy"}),  # timestamps not monotonic on purpose
        (inside[1], "8.8.8.8"),
        (inside[3], "example.com"),
        (inside[0], {"value": "phish.example.com", "source": "dns"}),
        (inside[3], {"value": "phish.example.com", "source": "fw"}),
        (inside[1], "9.9.9.9"),  # cached
        (inside[1], "10.0.0.1"),  # private: skipped by policy
        (inside[2], "not an indicator at all"),  # dead letter
        (TO_MS + HOUR_MS, "8.8.4.4"),  # after --to
    ]
    archive(kafka, records)
    in_range = [r for ts, r in records if FROM_MS <= ts < TO_MS]
    calls = emulator.stats()["lookups"]

    dry = replay(kafka, emulator.url, "--dry-run", "--run", "dry")
    assert dry.returncode == 0, dry.stderr
    counts = dry_counts(dry.stdout)
    assert counts["records in range"] == len(in_range) == 9
    assert counts["valid indicators"] == 8
    assert counts["unique indicators"] == 5  # 8.8.8.8, example.com, phish.example.com, 9.9.9.9, 10.0.0.1
    assert counts["already answered"] == 1  # 9.9.9.9
    assert counts["VirusTotal requests"] == 3
    assert emulator.stats()["lookups"] == calls, "a dry run called VirusTotal"

    report_file = tmp_path / "report.json"
    run = replay(kafka, emulator.url, "--run", "retro", "--report", str(report_file))
    assert run.returncode == 0, run.stderr
    assert emulator.stats()["lookups"] - calls == 3  # one per unique uncached indicator

    events = collect(kafka, ENRICHED, lambda evs: len([e for e in finals(evs) if e.get("replay")]) >= 8)
    replayed = [e for e in finals(events) if e.get("replay") == "retro"]
    refs = {e["origin"]["ref"] for e in replayed}
    assert len(replayed) == len(refs) == 8, "one final summary per valid in-range record"
    assert all(ref.startswith(f"{ARCHIVE}/") for ref in refs)
    values = sorted(e["indicator"]["value"] for e in replayed)
    assert values == sorted(["8.8.8.8"] * 3 + ["phish.example.com"] * 2 + ["example.com", "9.9.9.9", "10.0.0.1"])
    assert not any(v.startswith("203.0.113.") or v == "8.8.4.4" for v in values), "out-of-range record replayed"
    (cached,) = [e for e in replayed if e["indicator"]["value"] == "9.9.9.9"]
    assert cached["summary"]["cached"] is True
    lookups = collect(kafka, LOOKUPS, lambda evs: len(evs) >= 7)  # 1 live + 6 replayed misses
    fed = sorted(r["indicator"]["value"] for r in lookups if r["origin"].get("replay") == "retro")
    assert fed == sorted(["8.8.8.8"] * 3 + ["phish.example.com"] * 2 + ["example.com"]), \
        "a cached record is answered in one hop, without vt.lookups"
    live = [e for e in events if e.get("origin", {}).get("ref", "").startswith(f"{RAW}/")]
    assert live and all("replay" not in e for e in live)
    assert all(e.get("replay") == "retro" for e in events if e["kind"] != "summary"
               and e["indicator"]["value"] in ("8.8.8.8", "example.com", "phish.example.com"))

    doc = json.loads(report_file.read_text())
    assert {"run", "topic", "from", "to", "records", "unique", "cache_hits", "vt_requests", "detected"} <= set(doc)
    assert (doc["run"], doc["topic"], doc["records"], doc["vt_requests"]) == ("retro", ARCHIVE, 9, 3)
    assert doc["cache_hits"] == 1 and doc["skipped_by_policy"] == 1 and doc["dead_letters"] == 1
    checked = {e["indicator"]["value"]: e["summary"] for e in replayed if e["summary"].get("checked")}
    expected = {v for v, s in checked.items() if (s.get("positives") or 0) >= 1}
    assert expected, "the emulator detects phish.example.com (12 engines): the report must list something"
    assert {row["indicator"]["value"] for row in doc["detected"]} == expected
    sightings = {"8.8.8.8": 3, "example.com": 1, "phish.example.com": 2, "9.9.9.9": 1}
    for row in doc["detected"]:
        value = row["indicator"]["value"]
        assert row["sightings"] == sightings[value]
        assert row["positives"] == checked[value]["positives"]
    (bad,) = [r for r in doc["detected"] if r["indicator"]["value"] == "phish.example.com"]
    assert (bad["first_seen"], bad["last_seen"]) == (iso(inside[0]), iso(inside[3]))
    assert bad["sources"] == ["dns", "fw"]

    again = replay(kafka, emulator.url, "--run", "retro")
    assert again.returncode == 0 and "is finished" in again.stdout
    assert emulator.stats()["lookups"] - calls == 3


def test_budget_stops_the_run_and_the_same_command_resumes_and_finishes(kafka, emulator, worker_factory):
    worker_factory(kafka, emulator.url)
    values = ["1.0.0.1", "1.0.0.2", "1.0.0.3", "1.0.0.4", "1.0.0.5", "1.0.0.6"]
    archive(kafka, [(FROM_MS + i * HOUR_MS, value) for i, value in enumerate(values + values[:2])])
    calls = emulator.stats()["lookups"]

    first = replay(kafka, emulator.url, "--run", "budgeted", "--budget", "3")
    assert first.returncode == 0, first.stderr
    assert "budget of 3 VirusTotal requests spent: stopped reading at partition" in first.stderr
    assert emulator.stats()["lookups"] - calls == 3
    run = status_of(kafka, "budgeted")
    assert run["state"] == "budget spent" and run["vt_requests"] == 3 and 3 <= run["records"] < 8

    second = replay(kafka, emulator.url, "--run", "budgeted", "--budget", "3")
    assert second.returncode == 0, second.stderr
    assert "budget" not in second.stderr and "finished" in second.stdout
    assert emulator.stats()["lookups"] - calls == 6  # each indicator once over both invocations
    run = status_of(kafka, "budgeted")
    assert (run["state"], run["records"], run["vt_requests"]) == ("finished", 8, 6), "resumed where it stopped"
    events = collect(kafka, ENRICHED, lambda evs: len([e for e in finals(evs) if e.get("replay")]) >= 8)
    refs = [e["origin"]["ref"] for e in finals(events) if e.get("replay") == "budgeted"]
    assert len(refs) == len(set(refs)) == 8, "every record answered once across the two invocations"

    third = replay(kafka, emulator.url, "--run", "budgeted", "--budget", "3")
    assert third.returncode == 0 and "is finished" in third.stdout
    assert emulator.stats()["lookups"] - calls == 6


def test_live_indicators_are_answered_before_the_replays_remaining_work(kafka, emulator, worker_factory):
    worker_factory(kafka, emulator.url, vt_rate_per_minute="120")  # a call every 0.5 s: the gateway stays busy
    archive(kafka, [(FROM_MS + i * 1000, f"45.33.32.{i + 1}") for i in range(20)])
    feeding = replay(kafka, emulator.url, "--run", "prio", "--no-wait")
    assert feeding.returncode == 0, feeding.stderr

    def replayed(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in finals(evs) if e.get("replay") == "prio"]

    started = len(replayed(collect(kafka, ENRICHED, lambda evs: len(replayed(evs)) >= 3)))
    live_values = [f"8.8.4.{i}" for i in range(1, 6)]
    produce(kafka, RAW, live_values)

    def live(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in finals(evs) if "replay" not in e]

    events = collect(kafka, ENRICHED, lambda evs: len(replayed(evs)) >= 20 and len(live(evs)) >= 5,
                     timestamps=True)
    assert sorted(e["indicator"]["value"] for e in live(events)) == live_values
    assert len(replayed(events)) == 20
    # Order of completion (the results stage's send order on the worker), not elapsed time. The live
    # records first cross intake and lookup while the replay keeps calling; once they reach the
    # gateway they go next, together, and most of the replay's work comes after them.
    order = sorted(replayed(events) + live(events), key=lambda e: e["_ts"])
    is_live = ["replay" not in e for e in order]
    first, last = is_live.index(True), len(is_live) - 1 - is_live[::-1].index(True)
    assert last - first - 4 <= 1, f"replay answers between the live ones: {is_live}"
    assert len(order) - 1 - last >= 5, f"the replay's remaining work did not wait: {is_live}"
    assert first - started <= 10, f"{first - started} replay answers while the live records crossed intake"
