"""Kafka security: TLS, mutual TLS and SASL on every client, and failing fast when Kafka refuses us.

The TLS endpoint is a TLS terminator (tests/support/tls.py) in front of the
embedded broker, which advertises the terminator's port; the SASL broker is
the embedded broker with ``--authentication`` (SCRAM). Results are read with
confluent-kafka (librdkafka), an off-the-shelf client, through the same TLS
endpoint the worker used.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from tests.support.security import FAIL_FAST_S, cli_env, fails_fast, read_summaries, run, vtstream
from tests.support.tls import TlsProxy

from pipeline.devtools.broker import EmbeddedBroker, free_port
from pipeline.devtools.certs import Authority, Pem
from pipeline.devtools.rig import wait_until
from topics import ENRICHED

pytestmark = pytest.mark.integration



@dataclass
class TlsKafka:
    """A plaintext embedded broker behind a TLS terminator that it advertises."""

    bootstrap: str       # the TLS endpoint
    plaintext: str       # the broker's own plaintext port
    ca: Authority        # signed the terminator's certificate (and the client's)
    client: Pem          # a client certificate signed by ``ca``


def _tls_kafka(tmp_path: Path, mutual: bool, names: tuple[str, ...] = ("localhost", "127.0.0.1")
               ) -> Iterator[TlsKafka]:
    ca = Authority(tmp_path)
    server = ca.issue("broker", names[0], server=True, names=names)
    client = ca.issue("worker", "vtstream-worker", server=False)
    tls_port = free_port()
    with EmbeddedBroker(advertised_port=tls_port) as broker:
        proxy = TlsProxy(tls_port, broker.port, server, client_ca=ca.pem.cert if mutual else None).start()
        try:
            yield TlsKafka(f"127.0.0.1:{tls_port}", broker.bootstrap, ca, client)
        finally:
            proxy.stop()


@pytest.fixture
def tls_kafka(tmp_path: Path) -> Iterator[TlsKafka]:
    yield from _tls_kafka(tmp_path, mutual=False)


@pytest.fixture
def mtls_kafka(tmp_path: Path) -> Iterator[TlsKafka]:
    yield from _tls_kafka(tmp_path, mutual=True)


def _confluent_tls(kafka: TlsKafka, mutual: bool) -> dict[str, str]:
    config = {"bootstrap.servers": kafka.bootstrap, "security.protocol": "SSL",
              "ssl.ca.location": str(kafka.ca.pem.cert), "ssl.endpoint.identification.algorithm": "https"}
    if mutual:
        config.update({"ssl.certificate.location": str(kafka.client.cert), "ssl.key.location": str(kafka.client.key)})
    return config


def test_a_worker_enriches_through_mutual_tls_and_a_soc_client_reads_the_results(mtls_kafka, emulator,
                                                                                   worker_factory) -> None:
    tls = {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": str(mtls_kafka.ca.pem.cert),
           "kafka_ssl_certfile": str(mtls_kafka.client.cert), "kafka_ssl_keyfile": str(mtls_kafka.client.key)}
    worker_factory(mtls_kafka.bootstrap, emulator.url, **tls)  # `topics create` runs through TLS first
    produced = run(cli_env(mtls_kafka.bootstrap, **tls), "produce", "8.8.8.8", "example.com")
    assert produced.returncode == 0, produced.stdout
    assert read_summaries(_confluent_tls(mtls_kafka, mutual=True), {"8.8.8.8", "example.com"}) == {
        "8.8.8.8", "example.com"}


def test_produce_and_tail_over_tls_with_the_ca_as_the_only_trust(tls_kafka) -> None:
    tls = {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": str(tls_kafka.ca.pem.cert)}
    env = cli_env(tls_kafka.bootstrap, **tls)
    assert run(env, "topics", "create").returncode == 0
    event = {"kind": "summary", "indicator": {"type": "ip", "value": "9.9.9.9"}, "summary": {"found": True}}
    assert run(env, "produce", "--topic", ENRICHED, json.dumps(event)).returncode == 0
    tail = run(env, "tail", "--from-beginning", "--json", "--idle-exit", "2")
    assert tail.returncode == 0 and "9.9.9.9" in tail.stdout, tail.stdout
    status = run(env, "status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["bootstrap"] == tls_kafka.bootstrap, status.stdout
    assert read_summaries(_confluent_tls(tls_kafka, mutual=False), {"9.9.9.9"}, timeout=30) == {"9.9.9.9"}


def test_an_untrusted_certificate_authorityfails_fast(tls_kafka, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    stranger = Authority(tmp_path / "other", "someone else's CA")
    fails_fast(cli_env(tls_kafka.bootstrap, kafka_security_protocol="SSL", kafka_ssl_cafile=str(stranger.pem.cert)),
                "VTSTREAM_KAFKA_SSL_CAFILE", "not trusted")


def test_a_certificate_for_another_hostfails_fast(tmp_path: Path) -> None:
    for kafka in _tls_kafka(tmp_path, mutual=False, names=("kafka.example",)):  # the client dials 127.0.0.1
        fails_fast(cli_env(kafka.bootstrap, kafka_security_protocol="SSL", kafka_ssl_cafile=str(kafka.ca.pem.cert)),
                    "VTSTREAM_KAFKA_BOOTSTRAP", "not for '127.0.0.1'")


def test_a_plaintext_client_on_the_tls_portfails_fast(tls_kafka) -> None:
    fails_fast(cli_env(tls_kafka.bootstrap), "VTSTREAM_KAFKA_SECURITY_PROTOCOL", "speaks TLS")


def test_a_tls_client_on_the_plaintext_portfails_fast(tls_kafka) -> None:
    fails_fast(cli_env(tls_kafka.plaintext, kafka_security_protocol="SSL", kafka_ssl_cafile=str(tls_kafka.ca.pem.cert)),
                "VTSTREAM_KAFKA_SECURITY_PROTOCOL", "speaks plaintext")


def test_mutual_tls_without_a_client_certificatefails_fast(mtls_kafka) -> None:
    fails_fast(cli_env(mtls_kafka.bootstrap, kafka_security_protocol="SSL",
                     kafka_ssl_cafile=str(mtls_kafka.ca.pem.cert)),
                "VTSTREAM_KAFKA_SSL_CERTFILE", "mutual TLS")


@pytest.fixture
def sasl_kafka() -> Iterator[str]:
    """The embedded broker with SASL SCRAM required. It has no users: `tansu user create` needs an
    unauthenticated connection, which this broker refuses, and its storage is per process."""
    with EmbeddedBroker(authentication=True) as broker:
        yield broker.bootstrap


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256"])
def test_wrong_sasl_credentials_fail_fast_without_showing_the_password(sasl_kafka, mechanism: str,
                                                                        tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("hunter2-not-this-one\n")
    env = cli_env(sasl_kafka, kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism=mechanism,
               kafka_sasl_username="alice", kafka_sasl_password_file=str(secret))
    assert "hunter2" not in fails_fast(env, "VTSTREAM_KAFKA_SASL_PASSWORD", "rejected the SASL")


def test_a_client_without_sasl_on_a_sasl_brokerfails_fast(sasl_kafka) -> None:
    fails_fast(cli_env(sasl_kafka), "VTSTREAM_KAFKA_SECURITY_PROTOCOL", "require SASL")


def test_a_broker_that_comes_up_late_is_waited_for_and_the_wait_is_logged() -> None:
    port = free_port()
    env = cli_env(f"127.0.0.1:{port}")
    create = vtstream(env, "topics", "create", "--wait", "40")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(create.stdout or ()), daemon=True)
    reader.start()
    # Nothing listens yet: the command must say so and keep trying, not give up. (Waiting for its
    # line, not a fixed 2 s: on a loaded box its start-up alone took longer, and it met the broker.)
    wait_until(lambda: "does not answer yet" in "".join(lines) or create.poll() is not None, timeout=30,
               what="the command's first retry")
    assert create.poll() is None, "".join(lines)
    with EmbeddedBroker(port=port):
        create.wait(timeout=FAIL_FAST_S)
        reader.join(timeout=10)
    assert create.stdout is not None
    create.stdout.close()
    out = "".join(lines)
    assert create.returncode == 0, out
    assert "does not answer yet" in out and "retrying" in out, out
