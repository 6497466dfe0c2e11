"""The TAXII server's surfaces from outside: bad requests, where it listens, how it logs in to Kafka.

The bad requests go to a running `vtstream taxii` over HTTP; the listening
rule and the server's own Kafka login are checked on the command as an
operator starts it (the login against the embedded broker with SASL SCRAM
required, which has no users, so the broker's refusal names who tried).
"""

from __future__ import annotations

import subprocess
import sys
from typing import Iterator

import pytest
import requests
from tests.integration.test_stix_taxii import PASSWORD, USER, Taxii, publish_golden_bundles, taxii_env
from tests.integration.test_taxii2_client_paging import collection_of

from pipeline.devtools.broker import EmbeddedBroker, free_port, wait_for_port

pytestmark = pytest.mark.integration

TAXII_JSON = {"Accept": "application/taxii+json;version=2.1"}


def test_bad_requests_get_taxii_errors_from_the_running_server(kafka):
    publish_golden_bundles(kafka)  # the topic and its partitions exist: bad values reach the Kafka calls
    taxii = Taxii(kafka)
    try:
        objects = f"{taxii.url}/vtstream/collections/{collection_of(taxii).id}/objects/"
        cases = [({"next": "not-a-token"}, {}), ({"next": "eyIwIjpbLTEsMF19"}, {}),  # {"0":[-1,0]}
                 ({"added_after": "1969-12-31T23:59:59Z"}, {}), ({"limit": "0"}, {}),
                 ({}, {"Authorization": "Basic zürich"}), ({}, {"Authorization": "Basic !!!"})]
        for params, headers in cases:
            answer = requests.get(objects, params=params, auth=None if headers else (USER, PASSWORD),
                                  headers={**TAXII_JSON, **headers})
            assert answer.status_code == 400, (params, headers, answer.text)
            assert answer.headers["Content-Type"] == "application/taxii+json;version=2.1"
            assert answer.json()["http_status"] == "400" and answer.json()["title"] == "Bad request"
    finally:
        taxii.stop()


def taxii_command(bootstrap: str, host: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`vtstream taxii` run until it exits (or 60 s pass: then it was serving, and is stopped)."""
    command = [sys.executable, "-m", "pipeline", "taxii", "--host", host, "--port", str(free_port())]
    try:
        return subprocess.run(command, env=taxii_env(bootstrap, **env), capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(command, 0, exc.stdout or "", "still serving after 60 s")


def test_plain_http_beyond_loopback_is_refused_unless_insecure(kafka):
    refused = taxii_command(kafka, "0.0.0.0")
    assert refused.returncode != 0 and "VTSTREAM_TAXII_INSECURE" in refused.stderr, refused.stderr
    assert "VTSTREAM_TAXII_CERT" in refused.stderr

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "taxii", "--host", "0.0.0.0", "--port", str(port)],
                            env=taxii_env(kafka, VTSTREAM_TAXII_INSECURE="true"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        wait_for_port("127.0.0.1", port, timeout=60)
        assert requests.get(f"http://127.0.0.1:{port}/taxii2/", auth=(USER, PASSWORD)).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()


@pytest.fixture
def sasl_kafka() -> Iterator[str]:
    with EmbeddedBroker(authentication=True) as broker:
        yield broker.bootstrap


def test_the_taxii_server_logs_in_to_kafka_as_itself_and_falls_back_to_the_workers_login(sasl_kafka, tmp_path):
    secret = tmp_path / "taxii-password"
    secret.write_text("reader-secret-not-shown\n")
    worker = {"VTSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "VTSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
              "VTSTREAM_KAFKA_SASL_USERNAME": "worker", "VTSTREAM_KAFKA_SASL_PASSWORD": "worker-secret-not-shown"}
    own = taxii_command(sasl_kafka, "127.0.0.1", **worker, VTSTREAM_TAXII_KAFKA_SASL_USERNAME="taxii-reader",
                        VTSTREAM_TAXII_KAFKA_SASL_PASSWORD_FILE=str(secret))
    assert own.returncode != 0 and "'taxii-reader'" in own.stderr, own.stderr
    assert "VTSTREAM_TAXII_KAFKA_SASL_USERNAME" in own.stderr and "not-shown" not in own.stderr

    fallback = taxii_command(sasl_kafka, "127.0.0.1", **worker)
    assert fallback.returncode != 0 and "'worker'" in fallback.stderr, fallback.stderr
    assert "not-shown" not in fallback.stderr
