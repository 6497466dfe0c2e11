"""The CLI as a user runs it: real processes, real exit codes, real output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import SAMPLES

from pipeline.devtools.rig import child_env
from topics import DEAD, ENRICHED, LOOKUPS, RAW, REQUESTS, RESPONSES, changelog_name

pytestmark = pytest.mark.e2e

COMMANDS = ["worker", "demo", "broker", "emulator", "produce", "tail", "map", "topics", "status", "replay", "bench",
            "taxii"]


def vtstream(*args: str, env: dict[str, str] | None = None, input: bytes | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    full_env = child_env(**(env or {}))
    return subprocess.run([sys.executable, "-m", "pipeline", *args], env=full_env, input=input,
                          capture_output=True, timeout=timeout)


def test_help_teaches_every_command():
    top = vtstream("--help")
    assert top.returncode == 0
    for name in COMMANDS:
        assert name in top.stdout.decode()
        sub = vtstream(name, "--help")
        assert sub.returncode == 0, sub.stderr
        assert "Example" in sub.stdout.decode() or name == "topics", name


def test_worker_help_lists_every_setting():
    text = vtstream("worker", "--help").stdout.decode()
    assert "VTSTREAM_VT_API_KEY" in text and "VTSTREAM_VT_RATE_PER_MINUTE" in text


def test_bad_setting_is_refused_with_its_name():
    result = vtstream("worker", env={"VTSTREAM_VT_API_VERSION": "v9"})
    assert result.returncode == 2
    assert b"VTSTREAM_VT_API_VERSION" in result.stderr


def test_unreachable_kafka_is_a_clear_error():
    result = vtstream("topics", "create", "--wait", "2", env={"VTSTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1"}, timeout=90)
    assert result.returncode == 1
    assert b"cannot reach Kafka at 127.0.0.1:1" in result.stderr


def _action(path: Path) -> str:
    name = path.name
    for prefix, action in [("ip_address", "submit_ip"), ("domain", "submit_domain"), ("url", "submit_url"),
                           ("analysis_completed_url", "submit_url"), ("analysis_queued_url", "submit_url"),
                           ("file", "submit_file"), ("analysis_queued_file", "submit_file"),
                           ("private_analysis", "submit_file"), ("intelligence_search", "submit_hash")]:
        if name.startswith(prefix):
            return action
    return "submit_hash"


@pytest.mark.parametrize("api", ["v2", "v3"])
def test_map_prints_json_lines_for_every_sample(api):
    folder = SAMPLES / api
    groups: dict[str, list[str]] = {}
    for path in sorted(folder.glob("*.json")):
        groups.setdefault(_action(path), []).append(str(path))
    assert groups, f"no recorded samples in {folder}"
    for action, files in groups.items():
        result = vtstream("map", "--api", api, "--action", action, *files)
        assert result.returncode == 0, (action, result.stderr.decode()[-2000:])
        lines = result.stdout.decode().splitlines()
        events = [json.loads(line) for line in lines]
        assert events and all(e["kind"] in ("attribute", "relation", "report", "summary") for e in events)
        assert sum(e["kind"] == "summary" for e in events) >= len(files)


def test_map_refuses_a_file_that_is_not_json(tmp_path):
    bad = tmp_path / "report.json"
    bad.write_text("<html>rate limited</html>")
    result = vtstream("map", "--api", "v3", "--action", "submit_ip", str(bad))
    assert result.returncode == 1 and b"report.json" in result.stderr


def test_topics_describe_names_the_catalog():
    out = vtstream("topics", "describe").stdout.decode()
    for topic in [RAW, LOOKUPS, REQUESTS, RESPONSES, ENRICHED, DEAD, changelog_name("vtstream")]:
        assert topic in out
    assert "partitions=1" in out


def test_produce_and_tail_round_trip(kafka):
    env = {"VTSTREAM_KAFKA_BOOTSTRAP": kafka}
    assert vtstream("topics", "create", env=env).returncode == 0
    sent = vtstream("produce", "--source", "fw", "--label", "TLP:GREEN", "8.8.8.8", "example.com", env=env)
    assert sent.returncode == 0 and b"sent 2 records" in sent.stderr
    piped = vtstream("produce", env=env, input=b"# comment\n\n1.1.1.1\n{\"value\": \"x.example\"}\n")
    assert b"sent 2 records" in piped.stderr
    tail = vtstream("tail", "--topic", RAW, "--from-beginning", "--json", "--idle-exit", "3", env=env)
    assert set(tail.stdout.decode().splitlines()) == {
        '{"value":"8.8.8.8","source":"fw","labels":["TLP:GREEN"]}',
        '{"value":"example.com","source":"fw","labels":["TLP:GREEN"]}',
        "1.1.1.1", '{"value": "x.example"}'}


def test_demo_runs_and_stops_cleanly():
    result = vtstream("demo", timeout=240)
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert "demo finished; everything stopped." in out
    assert "NOT CHECKED" in out and "dead " in out


def test_map_format_stix_prints_valid_marked_bundles_and_taxii_needs_credentials():
    from stix2validator import ValidationOptions, validate_instance

    fixture = Path(__file__).resolve().parents[1] / "golden" / "fixtures" / "v3" / "domain_relationships_synthetic.json"
    out = vtstream("map", "--action", "submit_domain", "--format", "stix", "--label", "TLP:GREEN", str(fixture))
    assert out.returncode == 0, out.stderr.decode()
    (bundle,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert validate_instance(bundle, ValidationOptions(version="2.1")).is_valid
    assert {"domain-name", "file", "url", "relationship", "malware-analysis"} <= {o["type"] for o in bundle["objects"]}
    refused = vtstream("taxii", "--port", "0")
    assert refused.returncode != 0 and b"VTSTREAM_TAXII_USERNAME" in refused.stderr
