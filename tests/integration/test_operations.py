"""One short mixed run of a real worker against the emulator, observed from outside as an operator would:
/ready, /metrics (parsed with prometheus_client's own parser), JSON logs, and `vtstream status`."""

from __future__ import annotations

import json
import time
import urllib.error
from typing import Any, Callable

import orjson
import pytest
from click.testing import CliRunner
from tests.support.kafka import produce, wait_finals
from tests.support.web import get as _get
from tests.support.settings import fast_retries
from prometheus_client.parser import text_string_to_metric_families

from pipeline.cli.status import status_command
from pipeline.devtools.broker import free_port
from topics import POLLS, RAW, REQUESTS

pytestmark = pytest.mark.integration

FAULTY, FOUND, INTERNAL = "151.101.0.1", "wikipedia.org", "build.corp.acme-test.net"


def _wait(what: str, probe: Callable[[], Any], timeout: float = 90.0) -> Any:
    """Call ``probe`` until it returns something true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _ready_answers(url: str) -> list[tuple[int, dict[str, Any]]]:
    """Every /ready answer until the first 200 (connection refused before the web server is up)."""
    answers: list[tuple[int, dict[str, Any]]] = []

    def probe() -> bool:
        try:
            status, body = _get(url)
        except (urllib.error.URLError, ConnectionError):
            return False
        answers.append((status, json.loads(body)))
        return status == 200

    _wait("/ready to answer 200", probe, timeout=120)
    return answers


def _samples(web: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics parsed by prometheus_client: (sample name, sorted labels) -> value."""
    status, body = _get(web + "/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def _status(bootstrap: str) -> dict[str, Any]:
    result = CliRunner().invoke(status_command, ["--json"], env={"VTSTREAM_KAFKA_BOOTSTRAP": bootstrap})
    assert result.exit_code == 0, result.output
    return orjson.loads(result.output)


def test_a_mixed_run_shows_in_metrics_ready_logs_and_status(kafka, emulator, worker_factory):
    emulator.control("/_emulator/config", {"latency_ms": 1000})  # duplicates arrive while a call is out
    emulator.control("/_emulator/faults", {"mode": "500", "count": 1, "match": FAULTY})
    port = free_port()
    web = f"http://127.0.0.1:{port}"
    worker = worker_factory(kafka, emulator.url, web_port=str(port), log_format="json",
                            vt_rate_per_minute="600", internal_domains="corp.acme-test.net",
                            **fast_retries("1s,2s"))

    answers = _ready_answers(web + "/ready")
    assert answers[0][0] == 503 and answers[0][1]["ready"] is False and answers[0][1]["waiting_for"]
    assert answers[-1] == (200, {"ready": True, "waiting_for": []})
    assert _get(web + "/health")[0] == 200

    siem = {"source": "siem"}
    produce(kafka, RAW, [{"value": FAULTY, **siem}, {"value": FOUND, **siem}, {"value": FOUND, **siem},
                         INTERNAL, "this is not an indicator"])
    wait_finals(kafka, 4)  # FAULTY after one parked retry, FOUND twice (one coalesced), INTERNAL skipped
    produce(kafka, RAW, [{"value": FOUND, **siem}])  # a cache hit
    wait_finals(kafka, 5)

    def settled() -> Any:
        samples = _samples(web)
        lag = {k: v for k, v in samples.items() if k[0] == "vtstream_consumer_lag"}
        done = (_value(samples, "vtstream_enrich_seconds_count") == 5 and lag
                and not any(lag.values()) and not _total(samples, "vtstream_parked_records"))
        return samples if done else None

    samples = _wait("every record committed and every summary observed", settled)
    assert _value(samples, "vtstream_records_total", stage="intake") == 6
    assert _value(samples, "vtstream_records_total", stage="gateway") == 2  # FAULTY and FOUND
    assert _value(samples, "vtstream_records_total", stage="gateway_polls") == 1  # FAULTY's retry
    assert _value(samples, "vtstream_records_total", stage="retry.1s") == 1
    assert _total(samples, "vtstream_cache_hits_total") == 1
    hit_paths = {dict(labels)["path"] for (name, labels), v in samples.items()
                 if name == "vtstream_cache_hits_total" and v}
    assert hit_paths <= {"one-hop", "lookup"}
    assert _value(samples, "vtstream_coalesced_total") == 1
    assert _value(samples, "vtstream_policy_skips_total", rule="internal_domain") == 1
    assert _total(samples, "vtstream_policy_skips_total") == 1
    assert _value(samples, "vtstream_dead_letters_total", stage="intake") == 1
    assert _total(samples, "vtstream_dead_letters_total") == 1
    requests = {(dict(labels)["endpoint"], dict(labels)["status"]): v for (name, labels), v in samples.items()
                if name == "vtstream_vt_requests_total"}
    # the key's allowances, read at start: the key in that path is never a label
    assert requests == {("GET /api/v3/ip_addresses/{id}", "500"): 1, ("GET /api/v3/ip_addresses/{id}", "200"): 1,
                        ("GET /api/v3/domains/{id}", "200"): 1, ("GET /api/v3/users/***/overall_quotas", "200"): 1}
    assert _value(samples, "vtstream_vt_request_seconds_count") == 4
    assert _value(samples, "vtstream_quota_used", window="day") == 3
    assert _value(samples, "vtstream_quota_remaining", window="day") == 1_000_000 - 3
    assert _value(samples, "vtstream_enrich_seconds_count") == 5
    assert _value(samples, "vtstream_enrich_seconds_sum") >= 1.0  # at least the emulator's latency, once

    # faust commits every few seconds: wait for status to see every record committed
    status = _wait("status to show no lag", lambda: (lambda st: st if not any(st["lag"].values()) else None)(
        _status(kafka)))
    quota = status["quota"]
    assert (quota["used_today"], quota["rate_per_minute"], quota["rate_from"]) == (3, 600, "gateway")
    assert status["sources"] == {"siem": {"used_today": 3, "cap": None}}
    assert status["lag"][REQUESTS] == 0 and status["lag"][POLLS] == 0  # 2 and 1 records
    assert not any(status["parked"].values()) and status["dead_letters"]["count"] == 1
    assert status["blocked"]["blocked"] is False

    # VirusTotal says 429: the gateway pauses every call, and status shows the pause it stored.
    emulator.control("/_emulator/config", {"retry_after_s": 600})
    emulator.control("/_emulator/faults", {"mode": "429", "count": 1})
    produce(kafka, RAW, ["151.101.0.2"])
    blocked = _wait("status to show the pause", lambda: _status(kafka)["blocked"]["blocked"] and _status(kafka))
    assert "429" in blocked["blocked"]["reason"]

    worker.stop()
    lines = [line for line in worker.output().splitlines() if line.strip()]
    logged = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any(entry["stage"] == "gateway" and entry["key"] == f"ip:{FAULTY}" and entry["level"] == "WARNING"
               for entry in logged), lines
