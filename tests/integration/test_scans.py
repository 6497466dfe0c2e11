"""submit_url and submit_file through the delayed-retry tiers, over a real broker and the emulator."""

from __future__ import annotations

import base64

import pytest
from tests.support.kafka import collect, finals, produce, summaries, wait_finals
from tests.support.settings import fast_retries

from topics import DEAD, ENRICHED, RAW, RESPONSES

pytestmark = pytest.mark.integration




def attribute_names(events, value):
    return {e["attribute"]["name"] for e in events
            if e["kind"] == "attribute" and e["indicator"]["value"] == value}


@pytest.mark.parametrize("api", ["v3", "v2"])
def test_url_scan_completes_through_the_tiers(kafka, emulator_factory, worker_factory, api):
    emulator = emulator_factory("--scan-seconds", "2", "--not-found-ratio", "1.0")
    worker_factory(kafka, emulator.url, vt_api_version=api, **fast_retries())
    url = "http://scan-me.example.net/landing?id=7"
    produce(kafka, RAW, [url])
    events = wait_finals(kafka, 1)
    interim = [e for e in summaries(events) if e["summary"].get("pending")]
    assert len(interim) == 1 and interim[0]["summary"]["checked"] is False
    (final,) = finals(events)
    assert final["summary"]["found"] is True and final["summary"]["scan_finished"] is True
    names = attribute_names(events, url)
    assert "VirusTotal Scan ID" in names  # the scan step, emitted at once
    assert any(e["kind"] == "report" for e in events)  # the report step, when ready
    scan_ids = [e for e in events if e["kind"] == "attribute" and e["attribute"]["name"] == "VirusTotal Scan ID"]
    first_report = next(i for i, e in enumerate(events) if e["kind"] == "report")
    assert events.index(scan_ids[0]) < first_report
    stats = emulator.stats()
    assert stats["submission_requests"] == 1 and stats["analysis_requests"] >= 1


@pytest.mark.parametrize("api", ["v3", "v2"])
def test_file_upload_scan_completes(kafka, emulator_factory, worker_factory, tmp_path, api):
    emulator = emulator_factory("--scan-seconds", "1", "--not-found-ratio", "1.0")
    root = tmp_path / "files"
    root.mkdir()
    (root / "dropper.bin").write_bytes(b"MZ" + b"\x90" * 5000 + b"not really a PE")
    worker_factory(kafka, emulator.url, vt_api_version=api, upload_labels="TLP:CLEAR", file_root=str(root),
                   **fast_retries())
    inline = base64.b64encode(b"inline sample content " * 20).decode()
    produce(kafka, RAW, [
        {"file": {"name": "inline.bin", "content_b64": inline}, "labels": ["TLP:CLEAR"]},
        {"file": {"name": "dropper.bin", "uri": (root / "dropper.bin").as_uri()}, "labels": ["TLP:CLEAR"]},
        {"file": {"name": "kept.bin", "content_b64": base64.b64encode(b"private").decode()},
         "labels": ["TLP:GREEN"]},
    ])
    events = wait_finals(kafka, 3)
    by_name = {e["origin"]["file_name"]: e for e in finals(events)}
    assert by_name["inline.bin"]["summary"]["found"] is True
    assert by_name["dropper.bin"]["summary"]["found"] is True
    assert all(e["action"] == "submit_file" for e in finals(events))
    kept = by_name["kept.bin"]["summary"]
    assert kept["found"] is False and any("not uploaded" in n for n in kept["notes"])
    assert emulator.stats()["submission_requests"] == 2


def test_file_events_with_bad_references_are_refused_with_reasons(kafka, emulator, worker_factory, tmp_path):
    root = tmp_path / "files"
    root.mkdir()
    outside = tmp_path / "secret.txt"
    outside.write_text("top secret")
    (root / "link").symlink_to(outside)
    worker_factory(kafka, emulator.url, file_root=str(root))
    bad = [
        {"file": {"name": "x", "uri": (root / ".." / "secret.txt").as_uri()}},
        {"file": {"name": "x", "uri": "file://" + str(root) + "/../secret.txt"}},
        {"file": {"name": "x", "uri": (root / "link").as_uri()}},
        {"file": {"name": "x", "uri": "http://example.com/x.exe"}},
        {"file": {"name": "x", "uri": (root / "missing.bin").as_uri()}},
        {"file": {"name": "x", "content_b64": "!!! not base64 !!!"}},
        {"file": {"name": "x", "content_b64": ""}},
        {"file": {"name": "x"}},
        {"file": "just a string"},
    ]
    produce(kafka, RAW, bad)
    dead = collect(kafka, DEAD, lambda recs: len(recs) >= len(bad), timeout=60)
    reasons = sorted(d["reason"] for d in dead)
    assert len(reasons) == len(bad)
    assert sum("outside VTSTREAM_FILE_ROOT" in r for r in reasons) == 3
    assert any("not valid base64" in r for r in reasons)
    assert any("local file:// URI" in r for r in reasons)
    assert any("does not exist" in r for r in reasons)
    assert emulator.stats()["accepted"] == 0


def test_a_scan_that_never_finishes_ends_in_dead_letters(kafka, emulator_factory, worker_factory):
    emulator = emulator_factory("--not-found-ratio", "1.0")
    emulator.control("/_emulator/config", {"never_complete": True})
    worker_factory(kafka, emulator.url, retry_max_attempts="3", **fast_retries())
    produce(kafka, RAW, ["http://never.example.org/stuck"])
    events = wait_finals(kafka, 1)
    (final,) = finals(events)
    assert final["summary"]["checked"] is False and "did not finish the scan after 3 polls" in final["summary"]["reason"]
    dead = collect(kafka, DEAD, lambda recs: len(recs) >= 1, timeout=10)
    assert dead[0]["stage"] == "gateway" and dead[0]["attempts"] == 3
    assert dead[0]["original"]["record"]["analysis_id"]
    assert emulator.stats()["analysis_requests"] == 3


def test_pending_scans_do_not_delay_fresh_lookups(kafka, emulator_factory, worker_factory):
    """50 URLs are submitted first; their polls come due while 500 IP lookups queue behind them.
    The gateway must answer every IP lookup before it fetches any scan's final report: compared
    by the send times of the gateway's answers on vt.responses (one producer, so one clock)."""
    emulator = emulator_factory("--scan-seconds", "0.5")
    worker_factory(kafka, emulator.url, vt_rate_per_minute="3000", url_max_age="1s", **fast_retries())
    urls = [f"http://pending-{i}.example.com/page" for i in range(50)]
    ips = [f"93.184.{i // 250}.{i % 250 + 1}" for i in range(500)]
    produce(kafka, RAW, urls)
    produce(kafka, RAW, ips)
    wait_finals(kafka, 550, timeout=180)
    answers = collect(kafka, RESPONSES, lambda recs: len(recs) >= 600, timeout=30, timestamps=True)
    ip_done = [a["_ts"] for a in answers if a["indicator"]["type"] == "ip"]
    reports = [a["_ts"] for a in answers if a["indicator"]["type"] == "url" and a["step"] == "report"]
    assert len(ip_done) == 500 and len(reports) == 50
    assert max(ip_done) <= min(reports), "a scan report was fetched before a fresh lookup was answered"


@pytest.mark.both_brokers
def test_parked_scans_survive_a_worker_restart(kafka, emulator_factory, worker_factory):
    emulator = emulator_factory("--scan-seconds", "6", "--not-found-ratio", "1.0")
    first = worker_factory(kafka, emulator.url, **fast_retries())
    urls = [f"http://restart-{i}.example.org/" for i in range(10)]
    produce(kafka, RAW, urls)
    events = collect(kafka, ENRICHED, lambda evs: sum(bool(e["summary"].get("pending"))
                                                       for e in summaries(evs)) >= 10, timeout=60)
    assert sum(bool(e["summary"].get("pending")) for e in summaries(events)) == 10
    first.stop()
    worker_factory(kafka, emulator.url, **fast_retries())
    events = wait_finals(kafka, 10, timeout=120)
    assert {e["indicator"]["value"] for e in finals(events)} == set(urls)
    contents: dict = {}
    for e in events:  # a duplicate, if any, is the same event
        key = e["event_id"]
        body = {k: v for k, v in e.items() if k != "enriched_at"}
        assert contents.setdefault(key, body) == body
