"""Kafka security on Apache Kafka itself: SCRAM-SHA-512 over SASL_SSL, mutual TLS, refusals, least-privilege ACLs.

The broker is :mod:`pipeline.devtools.apache` (StandardAuthorizer,
allow.everyone.if.no.acl.found=false). Every command runs as its own SCRAM
user with exactly the ``kafka-acls`` lines docs/kafka.md gives for it;
results are read with confluent-kafka (librdkafka), an off-the-shelf client,
over the same listener.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from tests.support.apache import PRINCIPALS, acl_lines, bindings, grant, revoke
from tests.support.security import fails_fast, read_summaries, run
from tests.support.settings import worker_env_for_tests

from pipeline.devtools.apache.launcher import ApacheKafka
from pipeline.devtools.broker import free_port
from pipeline.devtools.certs import Authority
from pipeline.devtools.rig import WorkerProcess, child_env, wait_until
from pipeline.kafka.acls import COMMANDS
from topics import DEAD, ENRICHED, RAW

pytestmark = [pytest.mark.integration, pytest.mark.apache]


def as_user(kafka: ApacheKafka, command: str, **settings: str) -> dict[str, str]:
    """The environment of ``command`` run as its documented principal over SASL_SSL."""
    return child_env(**{**kafka.client_env(PRINCIPALS[command]), "VTSTREAM_WEB_PORT": "0",
                        **{f"VTSTREAM_{k.upper()}": v for k, v in settings.items()}})


def scram_reader(kafka: ApacheKafka, user: str) -> dict[str, str]:
    """confluent-kafka's settings for ``user`` on the SASL_SSL listener."""
    return {"bootstrap.servers": kafka.client_bootstrap, "security.protocol": "SASL_SSL",
            "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": user, "sasl.password": kafka.users[user],
            "ssl.ca.location": str(kafka.ca.pem.cert), "ssl.endpoint.identification.algorithm": "https"}


def grant_documented(kafka: ApacheKafka) -> None:
    for command in COMMANDS:
        grant(kafka, acl_lines(command))


def start_worker(kafka: ApacheKafka, emulator_url: str, tmp_path: Path, env: dict[str, str]) -> WorkerProcess:
    full = worker_env_for_tests(kafka.client_bootstrap, emulator_url, tmp_path / "data", **{
        k: v for k, v in env.items() if k.startswith("VTSTREAM_")})
    return WorkerProcess(full, tmp_path / "worker.log")


def test_every_command_runs_over_scram_with_exactly_the_documented_acls(apache_kafka, emulator, tmp_path):
    kafka = apache_kafka
    grant_documented(kafka)
    created = run(as_user(kafka, "topics create"), "topics", "create")
    assert created.returncode == 0, created.stdout
    worker = start_worker(kafka, emulator.url, tmp_path, as_user(kafka, "worker", outputs="events,stix"))
    try:
        produced = run(as_user(kafka, "produce"), "produce", "8.8.8.8", "example.com")
        assert produced.returncode == 0, produced.stdout
        assert read_summaries(scram_reader(kafka, PRINCIPALS["tail"]), {"8.8.8.8", "example.com"}) == {
            "8.8.8.8", "example.com"}, worker.tail()
        tail = run(as_user(kafka, "tail"), "tail", "--from-beginning", "--json", "--idle-exit", "3")
        assert tail.returncode == 0 and "8.8.8.8" in tail.stdout, tail.stdout[-2000:]
        status = run(as_user(kafka, "status"), "status", "--json")
        assert status.returncode == 0, status.stdout[-2000:]
        assert json.loads(status.stdout)["dead_letters"]["count"] == 0
        replay = run(as_user(kafka, "replay"), "replay", "--topic", RAW, "--from", "1h", "--run", "acl")
        assert replay.returncode == 0, replay.stdout[-2000:]
        port = free_port()
        taxii = subprocess.Popen([sys.executable, "-m", "pipeline", "taxii", "--port", str(port)],
                                 env=as_user(kafka, "taxii", taxii_anonymous="true"), text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}/taxii2/"
            wait_until(lambda: _answers(url) or taxii.poll() is not None, timeout=60, what="the TAXII server")
            assert taxii.poll() is None, taxii.communicate()[0]
            wait_until(lambda: _taxii_objects(port) > 0, timeout=60, what="STIX objects served over TAXII")
        finally:
            taxii.terminate()
            taxii.communicate(timeout=10)
        assert worker.alive(), worker.tail()
    finally:
        worker.stop()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "application/taxii+json;version=2.1"}),
                                    timeout=3):
            return True
    except OSError:
        return False


def _taxii_objects(port: int) -> int:
    base = f"http://127.0.0.1:{port}/taxii2/"
    accept = {"Accept": "application/taxii+json;version=2.1"}
    with urllib.request.urlopen(urllib.request.Request(base, headers=accept), timeout=5) as resp:
        root = json.loads(resp.read())["api_roots"][0]
    with urllib.request.urlopen(urllib.request.Request(root + "collections/", headers=accept), timeout=5) as resp:
        collection = json.loads(resp.read())["collections"][0]["id"]
    with urllib.request.urlopen(urllib.request.Request(f"{root}collections/{collection}/objects/", headers=accept),
                                timeout=5) as resp:
        return len(json.loads(resp.read()).get("objects", []))


@pytest.mark.parametrize("command, resource, name, operation, args", [
    ("worker", "TOPIC", DEAD, "WRITE", ("worker",)),
    ("produce", "TOPIC", RAW, "WRITE", ("produce", "8.8.8.8")),
    ("status", "GROUP", "vtstream", "DESCRIBE", ("status",)),
    ("tail", "TOPIC", ENRICHED, "READ", ("tail", "--idle-exit", "1")),
])
def test_a_missing_acl_is_named_with_its_operation_and_resource(apache_kafka, command, resource, name, operation,
                                                                args):
    kafka = apache_kafka
    grant_documented(kafka)
    assert run(as_user(kafka, "topics create"), "topics", "create").returncode == 0
    (victim,) = [b for line in acl_lines(command) for b in bindings(line)
                 if (b.restype.name, b.name, b.operation.name) == (resource, name, operation)]
    revoke(kafka, victim)
    started = time.monotonic()
    done = run(as_user(kafka, command), *args)
    assert time.monotonic() - started < 60
    errors = [ln for ln in done.stdout.splitlines() if ln.startswith("Error:")]
    assert done.returncode != 0 and len(errors) == 1, done.stdout[-2000:]
    named = f"{operation.title()} on {resource.lower()} {name}"
    assert named in errors[0] and f"for {command}" in errors[0], errors[0]


def test_a_worker_enriches_over_mutual_tls_and_a_soc_client_reads_over_the_same_listener(apache_kafka, emulator,
                                                                                          tmp_path):
    kafka = apache_kafka
    grant_documented(kafka)  # a certificate's CN is its principal: the same ACLs as the SCRAM users
    assert run(as_user(kafka, "topics create"), "topics", "create").returncode == 0
    mtls = {command: child_env(**kafka.mtls_env(PRINCIPALS[command]), VTSTREAM_WEB_PORT="0")
            for command in ("worker", "produce")}
    worker = start_worker(kafka, emulator.url, tmp_path, mtls["worker"])
    try:
        produced = run(mtls["produce"], "produce", "1.1.1.1", "github.com")
        assert produced.returncode == 0, produced.stdout
        reader = kafka.client_certificate(PRINCIPALS["tail"])
        config = {"bootstrap.servers": kafka.mtls_bootstrap, "security.protocol": "SSL",
                  "ssl.ca.location": str(kafka.ca.pem.cert), "ssl.certificate.location": str(reader.cert),
                  "ssl.key.location": str(reader.key), "ssl.endpoint.identification.algorithm": "https"}
        assert read_summaries(config, {"1.1.1.1", "github.com"}) == {"1.1.1.1", "github.com"}, worker.tail()
    finally:
        worker.stop()


def test_a_wrong_password_fails_fast_naming_the_sasl_settings(apache_kafka):
    output = fails_fast(as_user(apache_kafka, "worker") | apache_kafka.client_env("vtstream", "not-the-password"),
                        "VTSTREAM_KAFKA_SASL_PASSWORD", "rejected the SASL SCRAM-SHA-512 login")
    assert "not-the-password" not in output


def test_an_unknown_user_fails_fast_naming_the_sasl_settings(apache_kafka):
    fails_fast(as_user(apache_kafka, "worker") | apache_kafka.client_env("mallory", "whatever"),
               "VTSTREAM_KAFKA_SASL_USERNAME", "user 'mallory'")


def test_an_untrusted_certificate_authority_fails_fast(apache_kafka, tmp_path):
    (tmp_path / "other").mkdir()
    stranger = Authority(tmp_path / "other", "someone else's CA")
    fails_fast(as_user(apache_kafka, "worker", kafka_ssl_cafile=str(stranger.pem.cert)),
               "VTSTREAM_KAFKA_SSL_CAFILE", "not trusted")


def test_a_broker_address_its_certificate_does_not_name_fails_fast(apache_kafka):
    wrong_host = apache_kafka.client_bootstrap.replace("localhost", "127.0.0.1")  # the certificate names localhost
    fails_fast(as_user(apache_kafka, "worker", kafka_bootstrap=wrong_host), "VTSTREAM_KAFKA_BOOTSTRAP",
               "not for '127.0.0.1'")


def test_a_client_certificate_the_broker_does_not_trust_fails_fast(apache_kafka, tmp_path):
    (tmp_path / "other").mkdir()
    forged = Authority(tmp_path / "other", "someone else's CA").issue("forged", PRINCIPALS["worker"], server=False)
    env = child_env(**apache_kafka.mtls_env(PRINCIPALS["worker"], forged), VTSTREAM_WEB_PORT="0")
    fails_fast(env, "VTSTREAM_KAFKA_SSL_CERTFILE", "refused our TLS client certificate")
