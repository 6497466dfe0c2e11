"""The one Kafka configuration: the rig's, deploy/kafka/server.properties and the compose file agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pipeline.devtools.apache import config
from pipeline.devtools.apache.fetch import kafka_version
from pipeline.kafka.acls import kafka_acls

pytestmark = pytest.mark.unit

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_the_compose_brokers_properties_are_generated_from_the_rigs_configuration():
    assert (DEPLOY / "kafka" / "server.properties").read_text() == config.COMPOSE_HEADER + config.render(
        config.compose_properties()), "regenerate: python -m pipeline.devtools.apache.config > deploy/kafka/server.properties"


def test_the_security_settings_the_tests_run_are_the_compose_brokers():
    deployed = _properties((DEPLOY / "kafka" / "server.properties").read_text())
    assert {k: deployed.get(k) for k in config.SECURITY} == config.SECURITY
    assert deployed["authorizer.class.name"].endswith("StandardAuthorizer")
    assert deployed["allow.everyone.if.no.acl.found"] == "false"


def test_compose_runs_the_poms_kafka_with_scram_users_made_at_format_time_and_the_documented_acls():
    services = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    assert services["kafka"]["image"] == f"apache/kafka:{kafka_version()}"
    start = services["kafka"]["command"][0]
    assert "kafka-storage.sh format" in start and "--add-scram \"SCRAM-SHA-512=[name=vtstream," in start
    assert "PLAIN" not in start
    worker = services["worker"]
    client = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["x-kafka-client"]
    assert client["VTSTREAM_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512" and client["VTSTREAM_KAFKA_SASL_USERNAME"] == "vtstream"
    assert worker["environment"]["VTSTREAM_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    granted = [line.strip() for line in services["acls"]["command"][0].splitlines()
               if line.strip().startswith("kafka-acls --")]
    expected = [line for command in ("topics create", "worker", "replay")  # replay: the retrohunt service
                for line in kafka_acls(command, "User:vtstream", bootstrap="kafka:9093", config="/tmp/admin.properties")]
    assert granted == expected


def test_a_cluster_of_three_replicates_kafkas_own_topics_and_names_every_voter(tmp_path):
    ports = {n: config.NodePorts(9000 + n, 9100 + n, 9200 + n, 9300 + n) for n in (1, 2, 3)}
    files = config.NodeFiles(tmp_path / "data", tmp_path / "key.pem", tmp_path / "ca.pem")
    properties = config.node_properties(2, ports[2], ports, files)
    assert properties["controller.quorum.voters"] == "1@127.0.0.1:9301,2@127.0.0.1:9302,3@127.0.0.1:9303"
    assert properties["offsets.topic.replication.factor"] == "3" and properties["min.insync.replicas"] == "2"
    assert re.fullmatch(r"ADMIN://localhost:9002,CLIENT://localhost:9102,MTLS://localhost:9202",
                        properties["advertised.listeners"])
