"""One builder of Kafka connection options, the security settings' checks, and the heal rule."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest
from click.testing import CliRunner

from pipeline.cli.main import main
from pipeline.devtools.certs import Authority
from pipeline.errors import ConfigError, KafkaAccessDenied
from pipeline.kafka.security import client_options, faust_credentials
from pipeline.rules.changelog import ahead_of_changelog
from pipeline.settings import Settings

pytestmark = pytest.mark.unit

SECRET = "s3cr3t-kafka-password"


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("pki")
    ca = Authority(folder)
    client = ca.issue("client", "vtstream", server=False)
    return ca.pem.cert, client.cert, client.key


def test_plaintext_is_the_default_and_carries_no_credentials() -> None:
    assert client_options(Settings.of(kafka_bootstrap="k1:9092,k2:9092")) == {
        "bootstrap_servers": "k1:9092,k2:9092", "security_protocol": "PLAINTEXT"}
    assert faust_credentials(Settings()) is None


def test_sasl_ssl_gives_aiokafka_and_faust_the_same_login_and_a_verifying_context(pems, tmp_path: Path) -> None:
    cafile, certfile, keyfile = pems
    password_file = tmp_path / "password"
    password_file.write_text(SECRET + "\n")  # as a Kubernetes secret mounted from `echo`
    settings = Settings.from_env({
        "VTSTREAM_KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "VTSTREAM_KAFKA_SASL_MECHANISM": "scram-sha-512",
        "VTSTREAM_KAFKA_SASL_USERNAME": "vtstream", "VTSTREAM_KAFKA_SASL_PASSWORD_FILE": str(password_file),
        "VTSTREAM_KAFKA_SSL_CAFILE": str(cafile), "VTSTREAM_KAFKA_SSL_CERTFILE": str(certfile),
        "VTSTREAM_KAFKA_SSL_KEYFILE": str(keyfile)})
    options = client_options(settings)
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "vtstream" and options["sasl_plain_password"] == SECRET
    context = options["ssl_context"]
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL" and credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.password == SECRET and credentials.ssl_context is not None


def test_ssl_alone_gives_faust_ssl_credentials(pems) -> None:
    settings = Settings.of(kafka_security_protocol="SSL", kafka_ssl_cafile=pems[0])
    assert isinstance(faust_credentials(settings), faust.SSLCredentials)
    assert "sasl_plain_password" not in client_options(settings)


@pytest.mark.parametrize("env, needle", [
    ({"VTSTREAM_KAFKA_SECURITY_PROTOCOL": "TLS"}, "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
    ({"VTSTREAM_KAFKA_SASL_MECHANISM": "GSSAPI"}, "VTSTREAM_KAFKA_SASL_MECHANISM"),
    ({"VTSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "VTSTREAM_KAFKA_SASL_PASSWORD": "x"},
     "needs VTSTREAM_KAFKA_SASL_USERNAME"),
    ({"VTSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "VTSTREAM_KAFKA_SASL_USERNAME": "u"},
     "exactly one of VTSTREAM_KAFKA_SASL_PASSWORD"),
    ({"VTSTREAM_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/password"}, "VTSTREAM_KAFKA_SASL_PASSWORD_FILE"),
])
def test_security_settings_that_cannot_connect_are_refused_by_name(env, needle) -> None:
    with pytest.raises(ConfigError, match=needle):
        Settings.from_env(env)


def test_tls_files_need_a_tls_protocol_and_come_in_pairs(pems) -> None:
    cafile, certfile, _ = pems
    with pytest.raises(ConfigError, match="set it to SSL or SASL_SSL"):
        Settings.from_env({"VTSTREAM_KAFKA_SSL_CAFILE": str(cafile)})
    with pytest.raises(ConfigError, match="both VTSTREAM_KAFKA_SSL_CERTFILE and VTSTREAM_KAFKA_SSL_KEYFILE"):
        Settings.from_env({"VTSTREAM_KAFKA_SECURITY_PROTOCOL": "SSL", "VTSTREAM_KAFKA_SSL_CERTFILE": str(certfile)})


def test_the_password_is_never_in_repr_errors_or_help() -> None:
    env = {"VTSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "VTSTREAM_KAFKA_SASL_USERNAME": "u",
           "VTSTREAM_KAFKA_SASL_PASSWORD": SECRET}
    settings = Settings.from_env(env)
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    assert SECRET not in repr(faust_credentials(settings))
    help_text = CliRunner().invoke(main, ["worker", "--help"], env=env).output
    assert "VTSTREAM_KAFKA_SASL_PASSWORD" in help_text and SECRET not in help_text


def test_a_refusal_is_a_fatal_config_error() -> None:
    assert issubclass(KafkaAccessDenied, ConfigError) and not KafkaAccessDenied.retryable


@pytest.mark.parametrize("persisted, end, ahead", [
    (41, 42, False),   # the store applied the last record: in step
    (42, 42, True),    # the store has a record the changelog never wrote
    (9, 0, True),      # an empty changelog (a fresh broker) and a store that remembers one
    (None, 0, False),  # nothing stored yet
    (-1, 0, False),    # faust's "nothing applied"
    (5, None, False),  # end unknown: never judged
])
def test_a_store_is_ahead_when_its_offset_is_not_below_the_changelog_end(persisted, end, ahead) -> None:
    assert (ahead_of_changelog({"p": persisted}, {"p": end}) == {"p": (persisted, end)}) is ahead
