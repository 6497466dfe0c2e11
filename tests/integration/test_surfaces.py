"""The worker's web port serves /health, /ready and /metrics, and none of faust's own views: /table/
would read the cache (waiting sightings, with URLs as the SIEM sent them), /router/ maps the cluster."""

from __future__ import annotations

import time
import urllib.error

import pytest
from tests.support.kafka import produce
from tests.support.web import get

from pipeline.contracts.indicator import Indicator
from pipeline.devtools.broker import free_port
from topics import RAW

pytestmark = pytest.mark.integration

SECRET_URL = "https://portal.example.com/reset?token=Hunter2secret&lang=en"


def ready(web: str) -> int | None:
    try:
        return get(web + "/ready")[0]
    except (urllib.error.URLError, ConnectionError):  # the port is not open yet
        return None


def test_faust_views_answer_404_and_the_probes_remain(kafka, emulator, worker_factory):
    emulator.control("/_emulator/config", {"latency_ms": 20000})  # the sighting waits in the cache meanwhile
    port = free_port()
    web = f"http://127.0.0.1:{port}"
    worker_factory(kafka, emulator.url, web_port=str(port))
    deadline = time.monotonic() + 90
    while ready(web) != 200:
        assert time.monotonic() < deadline, "the worker never became ready"
        time.sleep(0.5)
    produce(kafka, RAW, [SECRET_URL])
    time.sleep(3)  # intake -> lookup: the entry is in flight, its waiter in the table
    key = Indicator("url", "https://portal.example.com/reset?lang=en").key
    for path in ("/table/", "/table/cache/", f"/table/cache/{key}/", "/router/", "/router/cache/",
                 f"/router/cache/{key}/", "/router/topics", "/graph/", "/performance/", "/assignment/", "/stats/"):
        status, body = get(web + path)
        assert status == 404, (path, status)
        assert b"Hunter2secret" not in body
    assert get(web + "/health")[0] == 200
    status, body = get(web + "/metrics")
    assert status == 200 and b"vtstream_records_total" in body
    assert get(web + "/ready")[0] == 200
