"""`vtstream replay` counted against what the VirusTotal emulator saw: the budget as a ceiling, every request
in the report, and one report over every invocation of a run (resumed, interrupted)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from tests.support.kafka import collect
from tests.support.replay import (ARCHIVE, FROM_MS, HOUR_MS, archive, dry_counts, iso, replay, replay_args,
                                  replay_env, status_of)
from tests.support.settings import fast_retries

from topics import LOOKUPS

pytestmark = pytest.mark.integration

#: Scans are polled after 1 s (the emulator finishes them in 1 s); 8 polls allowed, as by default;
#: tiers are checked every 5 s, the default slice.
RETRIES = fast_retries("1s,2s,5s", slice_s="5s")


def seen_by_virustotal(emulator: Any) -> list[dict[str, str]]:
    """The API requests the emulator received, less the key's own quota reads (no run causes those)."""
    return [r for r in emulator.control("/_emulator/requests") if "/users/" not in r["target"]]


def test_a_budget_is_a_ceiling_on_what_virustotal_sees_and_the_report_counts_every_request(
        kafka, emulator, worker_factory, tmp_path: Path):
    """The issue's case: 20 URLs VirusTotal does not know, --budget 20. Each costs a lookup, a submission,
    polls and the report; each reserves its worst case (11) before it is fed."""
    emulator.control("/_emulator/config", {"not_found_ratio": 1.0})
    worker_factory(kafka, emulator.url, **RETRIES)
    archive(kafka, [(FROM_MS + i * 1000, f"http://unknown-{i}.example.net/landing?id={i}") for i in range(20)],
            partitions=1)
    report = tmp_path / "report.json"
    dry = replay(kafka, emulator.url, "--run", "urls", "--dry-run", **RETRIES)
    assert dry.returncode == 0, dry.stderr
    counts = dry_counts(dry.stdout)  # the same worst case the budget reserves: 1 + 1 + 8 polls + 1 each
    assert (counts["to look up"], counts["of which may scan"], counts["VirusTotal requests"]) == (20, 20, 220)
    assert seen_by_virustotal(emulator) == [], "a dry run called VirusTotal"

    first = replay(kafka, emulator.url, "--run", "urls", "--budget", "20", "--report", str(report), **RETRIES)
    assert first.returncode == 0, first.stderr
    fed = json.loads(report.read_text())["records"]
    assert "budget of 20 VirusTotal requests spent: stopped reading at partition 0 at" in first.stderr
    seen = seen_by_virustotal(emulator)
    doc = json.loads(report.read_text())
    assert 0 < len(seen) <= 20, [r["target"] for r in seen]
    status = status_of(kafka, "urls")
    assert doc["vt_requests"] == len(seen) == status["vt_requests"]
    assert (status["records"], status["unique"], status["state"]) == (doc["records"], doc["unique"], doc["state"])
    assert {r["method"] for r in seen} == {"GET", "POST"}  # lookups, polls, reports; submissions
    assert doc["state"] == "budget spent" and 0 < doc["records"] < 20

    second = replay(kafka, emulator.url, "--run", "urls", "--budget", "20", "--report", str(report), **RETRIES)
    assert second.returncode == 0, second.stderr
    again = seen_by_virustotal(emulator)
    doc = json.loads(report.read_text())
    assert 0 < len(again) - len(seen) <= 20  # each invocation within its own budget
    assert doc["vt_requests"] == len(again) == status_of(kafka, "urls")["vt_requests"]
    assert doc["invocations"] == 2 and doc["records"] > fed


def test_every_request_a_run_causes_is_counted_as_the_server_saw_it(kafka, emulator, worker_factory,
                                                                     tmp_path: Path):
    """URL rescans (lookup, submission, polls, report), file hashes with their behaviour summary, domains
    with a fetched relationship: the report's count is the emulator's request log, request for request."""
    settings = {**RETRIES, "url_max_age": "1s", "vt_behaviour": "true", "vt_relationships": "resolutions"}
    worker_factory(kafka, emulator.url, **settings)
    values = ["http://www.example.com/a", "http://www.example.org/b", "http://example.net/c",
              "44d88612fea8a8f36de82e1278abb02f", "3395856ce81f2b7382dee72602f798b642f14140",
              "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
              "phish.example.com", "example.com", "8.8.8.8", "1.1.1.1"]
    archive(kafka, [(FROM_MS + i * 60_000, value) for i, value in enumerate(values + values[:4])])
    report = tmp_path / "report.json"
    run = replay(kafka, emulator.url, "--run", "mix", "--report", str(report), **settings)
    assert run.returncode == 0, run.stderr
    doc = json.loads(report.read_text())
    stats = emulator.stats()
    assert stats["submission_requests"] == 3 and stats["analysis_requests"] >= 3
    assert stats["behaviour_summary_requests"] >= 1 and stats["relationship_requests"] >= 2
    assert doc["vt_requests"] == len(seen_by_virustotal(emulator)) == status_of(kafka, "mix")["vt_requests"]
    assert (doc["state"], doc["records"], doc["unique"], doc["unanswered"]) == ("finished", 14, 10, 0)


def test_a_run_resumed_three_times_reports_as_one(kafka, emulator, worker_factory, tmp_path: Path):
    """--budget 1 lets each invocation feed one new indicator; four invocations add up to one report."""
    worker_factory(kafka, emulator.url)
    records: list[tuple[int, str | dict[str, Any]]] = [
        (FROM_MS + 2 * HOUR_MS, {"value": "phish.example.com", "source": "fw"}),
        (FROM_MS, "8.8.8.8"),
        (FROM_MS + HOUR_MS, {"value": "phish.example.com", "source": "dns"}),
        (FROM_MS + 3 * HOUR_MS, "example.com"),
        (FROM_MS + 4 * HOUR_MS, "1.1.1.1"),
        (FROM_MS + 5 * HOUR_MS, {"value": "phish.example.com", "source": "proxy"}),
        (FROM_MS + 6 * HOUR_MS, "8.8.8.8"),
    ]
    archive(kafka, records, partitions=1)
    report = tmp_path / "report.json"
    states = []
    for _ in range(6):
        run = replay(kafka, emulator.url, "--run", "resumed", "--budget", "1", "--report", str(report))
        assert run.returncode == 0, run.stderr
        states.append(json.loads(report.read_text())["state"])
        if states[-1] == "finished":
            break
    assert states == ["budget spent"] * 3 + ["finished"]
    doc = json.loads(report.read_text())
    assert (doc["invocations"], doc["records"], doc["unique"], doc["vt_requests"], doc["cache_hits"]) == \
        (4, 7, 4, 4, 3)
    (bad,) = [row for row in doc["detected"] if row["indicator"]["value"] == "phish.example.com"]
    assert bad["sightings"] == 3 and bad["sources"] == ["dns", "fw", "proxy"]
    assert (bad["first_seen"], bad["last_seen"]) == (iso(FROM_MS + HOUR_MS), iso(FROM_MS + 5 * HOUR_MS))
    assert emulator.stats()["lookups"] == 4


def test_answers_to_records_an_interrupted_invocation_fed_reach_the_report(kafka, emulator, worker_factory,
                                                                           tmp_path: Path):
    """Ctrl-C while the answers are still on their way: the next invocation takes them from where the
    first stopped following, and the finished report has every sighting and request."""
    emulator.control("/_emulator/config", {"latency_ms": 4000})  # answers take 4 s
    worker_factory(kafka, emulator.url)
    archive(kafka, [(FROM_MS, {"value": "phish.example.com", "source": "fw"}), (FROM_MS + 1000, "8.8.8.8"),
                    (FROM_MS + 2000, {"value": "phish.example.com", "source": "dns"})], partitions=1)
    report = tmp_path / "report.json"
    first = subprocess.Popen(replay_args("--run", "cut", "--report", str(report)),
                             env=replay_env(kafka, emulator.url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    collect(kafka, LOOKUPS, lambda evs: len(evs) >= 2)  # both indicators fed, no answer yet
    time.sleep(1.0)  # the run has saved its state since
    first.send_signal(signal.SIGINT)
    _out, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    cut = status_of(kafka, "cut")
    assert cut["state"] == "interrupted" and cut["unanswered"] == 3 and cut["vt_requests"] == 0

    emulator.control("/_emulator/config", {"latency_ms": 0})
    second = replay(kafka, emulator.url, "--run", "cut", "--report", str(report))
    assert second.returncode == 0, second.stderr
    doc = json.loads(report.read_text())
    assert (doc["state"], doc["records"], doc["unanswered"], doc["invocations"]) == ("finished", 3, 0, 2)
    assert doc["vt_requests"] == len(seen_by_virustotal(emulator)) == 2
    (bad,) = [row for row in doc["detected"] if row["indicator"]["value"] == "phish.example.com"]
    assert bad["sightings"] == 2 and bad["sources"] == ["dns", "fw"]
    assert ARCHIVE in doc["topic"]


def test_retries_of_failed_requests_stay_within_the_reservation(kafka, emulator, worker_factory, tmp_path: Path):
    """Server errors are retried through the tiers, and retries are not in an indicator's worst case: only
    the allowance the driver sends with each miss stops them at what was reserved."""
    worker_factory(kafka, emulator.url, **RETRIES)
    archive(kafka, [(FROM_MS + i * 1000, f"151.101.7.{i + 1}") for i in range(2)], partitions=1)
    dry = replay(kafka, emulator.url, "--run", "errors", "--dry-run", **RETRIES)
    assert dry.returncode == 0, dry.stderr
    budget = dry_counts(dry.stdout)["VirusTotal requests"]  # both indicators' worst case: no retry in it
    emulator.control("/_emulator/faults", {"mode": "500", "count": 6, "match": "ip_addresses"})
    report = tmp_path / "report.json"
    run = replay(kafka, emulator.url, "--run", "errors", "--budget", str(budget), "--report", str(report),
                 **RETRIES)
    assert run.returncode == 0, run.stderr
    seen, doc = seen_by_virustotal(emulator), json.loads(report.read_text())
    assert 0 < len(seen) <= budget, [r["target"] for r in seen]
    assert doc["vt_requests"] == len(seen) and (doc["records"], doc["unanswered"]) == (2, 0)
