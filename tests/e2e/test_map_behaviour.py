"""`vtstream map --behaviour`: a saved behaviour_summary mapped together with its saved file object."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.devtools.rig import child_env

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[1] / "golden" / "fixtures" / "v3"
FILE = FIXTURES / "file_699ec052_synthetic.json"
SUMMARY = FIXTURES / "behaviour_summary_699ec052_realistic.json"


def vtstream_map(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    env = child_env()
    return subprocess.run([sys.executable, "-m", "pipeline", "map", *map(str, args)], env=env,
                          capture_output=True, timeout=120)


def events(result: subprocess.CompletedProcess[bytes]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def relation_types(evs: list[dict[str, Any]]) -> set[str]:
    return {e["relation"]["type"] for e in evs if e["kind"] == "relation"}


def test_map_renders_the_summary_with_its_file_object() -> None:
    evs = events(vtstream_map("--api", "v3", "--action", "submit_hash", "--behaviour", SUMMARY, FILE))
    assert {e["indicator"]["value"] for e in evs} == {"699ec052ecc898bdbdafea0027c4ab44c3d01ae011c17745dd2b7fbddaa077f3"}
    assert {"Mutex", "File Path", "FQDN", "IP Address", "SHA-256"} <= relation_types(evs)
    (report,) = [e["report"] for e in evs if e["kind"] == "report"]
    assert "C:\\Windows\\System32\\shutdown.exe" in [a["value"] for a in report["attributes"]
                                                      if a["name"] == "Process Name"]
    assert "T1547.001 Creates an autostart registry key" in [
        e["attribute"]["value"] for e in evs if e["kind"] == "attribute" and e["attribute"]["name"] == "MITRE ATT&CK Technique"]
    (summary,) = [e["summary"] for e in evs if e["kind"] == "summary"]
    assert summary["found"] is True and "notes" not in summary
    without = events(vtstream_map("--action", "submit_hash", FILE))
    assert not {"Mutex", "File Path", "FQDN", "IP Address"} & relation_types(without)


def test_map_says_when_there_is_no_sandbox_report(tmp_path: Path) -> None:
    empty = tmp_path / "behaviour_summary.json"
    empty.write_text('{"data": {}}')
    evs = events(vtstream_map("--action", "submit_file", "--behaviour", empty, FILE))
    (summary,) = [e["summary"] for e in evs if e["kind"] == "summary"]
    assert summary["notes"] == ["behaviour_summary: no sandbox report"]
    assert not {"Mutex", "File Path"} & relation_types(evs)


def test_map_refuses_a_summary_without_one_v3_file_object() -> None:
    for args in (("--api", "v2", "--action", "submit_file", "--behaviour", SUMMARY, FILE),
                 ("--action", "submit_file", "--behaviour", SUMMARY, FILE, FILE)):
        result = vtstream_map(*args)
        assert result.returncode != 0 and not result.stdout
        assert "behaviour_summary goes with one saved v3 file object" in result.stderr.decode()
