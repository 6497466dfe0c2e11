"""The Apache Kafka broker configuration: the one place the tests, the benchmarks and deploy/ take it from.

Every node is a combined broker and KRaft controller with four listeners:

========== ============= ==========================================================
ADMIN      PLAINTEXT     loopback only; the rig's own admin and the brokers' replication
                         (principal ``User:ANONYMOUS``, a super user)
CLIENT     SASL_SSL      SCRAM-SHA-512 users created at format time (``--add-scram``)
MTLS       SSL           client certificates required; the principal is the certificate's CN
CONTROLLER PLAINTEXT     the KRaft quorum
========== ============= ==========================================================

:data:`SECURITY` is what a SOC's cluster would carry too: SCRAM-SHA-512 on the
client listener, PEM key and trust stores, mutual TLS required on the MTLS
listener, ``StandardAuthorizer`` with ``allow.everyone.if.no.acl.found=false``
(a principal may do only what an ACL grants), and no automatic topic creation
(vtstream creates its topics with their intended partition counts).
:func:`node_properties` adds one node's ports and folders; :func:`compose_properties`
renders the same settings for ``deploy/kafka/server.properties``, which a unit
test keeps equal to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: SCRAM user of the rig's super user on the CLIENT listener (the compose file's ``topics`` step too).
ADMIN_USER = "admin"
#: Listener name -> security protocol.
LISTENERS = {"ADMIN": "PLAINTEXT", "CLIENT": "SASL_SSL", "MTLS": "SSL", "CONTROLLER": "PLAINTEXT"}
SCRAM = "SCRAM-SHA-512"

SECURITY: dict[str, str] = {
    "listener.security.protocol.map": ",".join(f"{name}:{protocol}" for name, protocol in LISTENERS.items()),
    "inter.broker.listener.name": "ADMIN",
    "controller.listener.names": "CONTROLLER",
    "sasl.enabled.mechanisms": SCRAM,
    "listener.name.client.sasl.enabled.mechanisms": SCRAM,
    "listener.name.client.scram-sha-512.sasl.jaas.config":
        "org.apache.kafka.common.security.scram.ScramLoginModule required;",
    "listener.name.mtls.ssl.client.auth": "required",
    # "CN=vtstream-worker" -> User:vtstream-worker, so ACLs name a certificate as they name a SCRAM user
    "ssl.principal.mapping.rules": "RULE:^CN=([^,]+)$/$1/,DEFAULT",
    "ssl.keystore.type": "PEM",
    "ssl.truststore.type": "PEM",
    "ssl.endpoint.identification.algorithm": "https",
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "allow.everyone.if.no.acl.found": "false",
    # the ADMIN listener's and the controllers' principal, and the SCRAM admin
    "super.users": f"User:ANONYMOUS;User:{ADMIN_USER}",
    "auto.create.topics.enable": "false",
}


@dataclass(frozen=True)
class NodePorts:
    """One node's listener ports on ``host``."""

    admin: int
    client: int
    mtls: int
    controller: int
    host: str = "127.0.0.1"

    def address(self, listener: str) -> str:
        return f"{self.host}:{getattr(self, listener.lower())}"


@dataclass(frozen=True)
class NodeFiles:
    """Where one node keeps its data and finds its certificates."""

    log_dir: Path
    keystore: Path       # PEM: the private key, then the certificate chain
    truststore: Path     # PEM: the CA certificates it trusts (clients' on MTLS, as well)


def replication_defaults(nodes: int) -> dict[str, str]:
    """Replication of Kafka's own topics and of topics created without a factor, for ``nodes`` brokers."""
    factor = str(min(nodes, 3))
    return {"offsets.topic.replication.factor": factor, "transaction.state.log.replication.factor": factor,
            "transaction.state.log.min.isr": str(min(nodes, 2)), "default.replication.factor": factor,
            "min.insync.replicas": str(min(nodes, 2))}


def node_properties(node_id: int, ports: NodePorts, voters: dict[int, NodePorts], files: NodeFiles,
                    advertised_host: str = "localhost") -> dict[str, str]:
    """server.properties of node ``node_id`` in a quorum of ``voters`` (node id -> ports), static voters.

    Clients are told ``advertised_host`` (the certificates name it), whatever
    address they bootstrapped from.
    """
    listeners = {name: ports.address(name) for name in LISTENERS}
    advertised = {name: f"{advertised_host}:{getattr(ports, name.lower())}" for name in LISTENERS
                  if name != "CONTROLLER"}
    return {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": ",".join(f"{n}@{p.address('CONTROLLER')}" for n, p in sorted(voters.items())),
        "listeners": ",".join(f"{name}://{address}" for name, address in listeners.items()),
        "advertised.listeners": ",".join(f"{name}://{address}" for name, address in advertised.items()),
        "log.dirs": str(files.log_dir),
        "ssl.keystore.location": str(files.keystore),
        "ssl.truststore.location": str(files.truststore),
        **SECURITY,
        **replication_defaults(len(voters)),
        # a test broker: small, quick to start and to notice a dead peer
        "num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",  # the tests' workers use 3 s (VTSTREAM_KAFKA_SESSION_TIMEOUT)
        "log.segment.bytes": str(64 * 1024 * 1024),
        "num.network.threads": "2",
        "num.io.threads": "4",
    }


def render(properties: dict[str, str]) -> str:
    """A Java properties file, one ``key=value`` a line (values here need no escaping)."""
    return "".join(f"{key}={value}\n" for key, value in properties.items())


#: What deploy/docker-compose.yml's broker differs in: one node named ``kafka``, the CLIENT listener
#: published on 9093, ADMIN only on the container's loopback, certificates from the certs volume.
COMPOSE_PORTS = NodePorts(admin=9092, client=9093, mtls=9095, controller=9094, host="0.0.0.0")
COMPOSE_FILES = NodeFiles(Path("/var/lib/kafka/data"), Path("/certs/kafka.keystore.pem"), Path("/certs/ca.crt"))


def compose_properties() -> dict[str, str]:
    """deploy/kafka/server.properties: the rig's node, as the compose file's single ``kafka`` service."""
    properties = node_properties(1, COMPOSE_PORTS, {1: COMPOSE_PORTS}, COMPOSE_FILES, advertised_host="kafka")
    properties["listeners"] = ("ADMIN://127.0.0.1:9092,CLIENT://0.0.0.0:9093,MTLS://0.0.0.0:9095,"
                               "CONTROLLER://127.0.0.1:9094")
    properties["controller.quorum.voters"] = "1@127.0.0.1:9094"
    properties["advertised.listeners"] = "ADMIN://127.0.0.1:9092,CLIENT://kafka:9093,MTLS://kafka:9095"
    # the rig's small-broker tuning is not for a lab that runs for days
    for key in ("log.segment.bytes", "num.network.threads", "num.io.threads", "group.min.session.timeout.ms",
                "group.initial.rebalance.delay.ms"):
        del properties[key]
    return properties


COMPOSE_HEADER = ("# Generated from pipeline/devtools/apache/config.py (compose_properties), the configuration the\n"
                  "# test suite runs on Apache Kafka; tests/unit/test_apache_config.py fails when they differ.\n"
                  "# Regenerate: python -m pipeline.devtools.apache.config > deploy/kafka/server.properties\n")


if __name__ == "__main__":
    print(COMPOSE_HEADER + render(compose_properties()), end="")
