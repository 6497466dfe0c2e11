"""Verdict changes end to end: a real broker, the emulator with verdicts that change, a worker, `vtstream replay`.

An indicator answered clean, then flagged on a later lookup (the cache expired),
produces exactly one verdict_change benign -> malicious; the STIX bundle after
it carries an indicator; when the indicator turns clean again the same indicator
id is published with revoked: true. A retro-hunt run (`vtstream replay` with a
date-named run and a share of the daily quota) that finds a change marks it with
its run. Every bundle passes the OASIS validator.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest
from stix2validator import ValidationOptions, validate_instance
from tests.support.kafka import collect, finals, produce

from pipeline.devtools.rig import child_env
from topics import ENRICHED, RAW, SIGHTINGS, STIX

pytestmark = pytest.mark.integration

DOMAIN = "verdict-turns.net"
TTL_S = 6


def flag(emulator: Any, positives: int) -> None:
    emulator.control("/_emulator/verdicts", {"type": "domain", "value": DOMAIN, "positives": positives})


def sighting(i: int) -> dict[str, Any]:
    return {"value": DOMAIN, "id": f"s{i}", "source": "proxy", "labels": ["TLP:GREEN"]}


def changes(kafka: str, n: int | None, timeout: float = 90) -> list[dict[str, Any]]:
    """The verdict_change events on indicators.enriched once there are ``n`` (None: all of them after
    ``timeout``); a record handled twice (at-least-once) is the same event, counted once."""
    def of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return list({e["event_id"]: e for e in events if e.get("kind") == "verdict_change"}.values())
    return of(collect(kafka, ENRICHED, lambda evs: n is not None and len(of(evs)) >= n, timeout=timeout))


def answered(kafka: str, n: int) -> None:
    """Wait until ``n`` final summaries of the indicator are on indicators.enriched."""
    collect(kafka, ENRICHED, lambda evs: len([e for e in finals(evs) if e["indicator"]["value"] == DOMAIN]) >= n,
            timeout=90)


def indicators(kafka: str, n: int) -> list[dict[str, Any]]:
    """The STIX indicators of every bundle so far, once there are ``n``; each bundle passes the validator."""
    bundles = collect(kafka, STIX, lambda got: len([o for b in got for o in b["objects"]
                                                    if o["type"] == "indicator"]) >= n, timeout=90)
    for bundle in bundles:
        result = validate_instance(bundle, ValidationOptions(version="2.1"))
        assert result.is_valid, [str(e) for e in result.errors]
    return [o for b in bundles for o in b["objects"] if o["type"] == "indicator"]


def expire() -> None:
    """Let the cache entry expire (VTSTREAM_CACHE_TTL), so the next sighting is looked up again."""
    time.sleep(TTL_S + 0.5)


def retrohunt(kafka: str, emulator_url: str) -> subprocess.CompletedProcess[str]:
    """The CronJob's command, as deploy/kubernetes/retrohunt.yaml runs it."""
    env = child_env(VTSTREAM_KAFKA_BOOTSTRAP=kafka, VTSTREAM_VT_BASE_URL=emulator_url,
                    VTSTREAM_VT_DAILY_QUOTA="1000", VTSTREAM_RETROHUNT_BUDGET="10%")
    return subprocess.run([sys.executable, "-m", "pipeline", "replay", "--topic", RAW, "--from", "1h",
                           "--max-age", "1s", "--budget", env["VTSTREAM_RETROHUNT_BUDGET"],
                           "--run", "retrohunt-{date}"], env=env, capture_output=True, text=True, timeout=180)


def test_clean_then_flagged_is_one_change_an_indicator_and_its_revocation_and_a_retrohunt_marks_its_change(
        kafka, emulator, worker_factory):
    flag(emulator, 0)
    worker_factory(kafka, emulator.url, outputs="events,stix", cache_ttl=str(TTL_S))
    produce(kafka, RAW, [sighting(0)])
    answered(kafka, 1)  # clean: the first thing vtstream knows of it
    produce(kafka, RAW, [sighting(i) for i in (1, 2, 3)])  # answered from the cache: counted, not asked
    tallies = collect(kafka, SIGHTINGS, lambda got: sum(t["count"] for t in got) >= 3, timeout=60)
    assert sum(t["count"] for t in tallies) == 3

    flag(emulator, 12)
    expire()
    produce(kafka, RAW, [sighting(4)])
    (change,) = changes(kafka, 1)
    assert (change["previous"]["verdict"], change["current"]["verdict"]) == ("benign", "malicious")
    assert (change["previous"]["positives"], change["current"]["positives"]) == (0, 12)
    assert change["sightings"] == 4 and change["first_seen"]  # three from the cache and the one that asked
    assert change["indicator"] == {"type": "domain", "value": DOMAIN} and "replay" not in change
    assert change["origin"]["id"] == "s4"
    (malicious,) = indicators(kafka, 1)  # the bundle after the change carries the indicator
    assert "revoked" not in malicious

    flag(emulator, 0)
    expire()
    produce(kafka, RAW, [sighting(5)])
    first, back = changes(kafka, 2)
    assert first == change and (back["previous"]["verdict"], back["current"]["verdict"]) == ("malicious", "benign")
    same, revoked = indicators(kafka, 2)
    assert same == malicious and revoked["id"] == malicious["id"] and revoked["revoked"] is True
    assert revoked["modified"] > malicious["modified"] and revoked["created"] == malicious["created"]

    # the daily retro-hunt looks it up again (the worker has not seen it since): flagged once more
    flag(emulator, 9)
    expire()
    hunt = retrohunt(kafka, emulator.url)
    assert hunt.returncode == 0, hunt.stderr
    run = f"retrohunt-{time.strftime('%Y-%m-%d', time.gmtime())}"
    assert f"run {run}:" in hunt.stdout
    *_, found = changes(kafka, 3)
    assert (found["previous"]["verdict"], found["current"]["verdict"], found["replay"]) == ("benign", "malicious", run)
    assert found["sightings"] == 0  # replayed sightings were seen before; nothing live since the last check
    *_, renewed = indicators(kafka, 3)
    assert renewed["id"] != malicious["id"] and "revoked" not in renewed  # a revoked indicator stays revoked
    again = retrohunt(kafka, emulator.url)  # the same day: the finished run does nothing
    assert again.returncode == 0 and "is finished" in again.stdout
    assert len(changes(kafka, None, timeout=5)) == 3, "exactly one verdict_change per change"
