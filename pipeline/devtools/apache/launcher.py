"""Apache Kafka in child processes: one node or a three-node KRaft cluster, with TLS, SCRAM and ACLs.

:class:`ApacheKafka` makes a throwaway CA and PEM certificates, formats each
node's storage with ``kafka.tools.StorageTool format`` (SCRAM-SHA-512 users
added with ``--add-scram``), starts each node as ``java -cp 'libs/*'
kafka.Kafka server.properties`` on free ports, and waits until every broker
is in the cluster's metadata. Nodes can be killed (SIGKILL: a crash) and
started again on the same log dir. The configuration is
:mod:`pipeline.devtools.apache.config`'s; the jars are
:mod:`pipeline.devtools.apache.fetch`'s.

Example (not a doctest: it starts a JVM)::

    with ApacheKafka(tmp_path, users={"vtstream": "s3cret"}) as kafka:
        env = kafka.client_env("vtstream")   # VTSTREAM_* for the SASL_SSL listener
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Callable, Mapping

from pipeline.devtools.apache import config
from pipeline.devtools.apache.config import ADMIN_USER, SCRAM, NodeFiles, NodePorts
from pipeline.devtools.apache.fetch import java, kafka_libs
from pipeline.devtools.broker import free_port, stop_process, wait_for_port
from pipeline.devtools.certs import Authority, Pem

#: JVM options of every node: a small heap and the serial collector (the machines have two cores).
JVM_OPTIONS = ("-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:MaxMetaspaceSize=128m", "-Djava.awt.headless=true")
#: Host name the brokers advertise and their certificates name (clients verify it).
HOST = "localhost"

LOG4J = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


def new_cluster_id(random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (as ``kafka-storage random-uuid``).

    Like Kafka's ``Uuid.randomUuid`` it never starts with ``-``: ``kafka-storage format --cluster-id -x…``
    reads such an id as an option and fails (one start in 64 did).
    """
    while (cluster_id := base64.urlsafe_b64encode(random_bytes(16)).decode().rstrip("=")).startswith("-"):
        pass
    return cluster_id


class KafkaNode:
    """One combined broker + controller: its folder, ports, properties and JVM process."""

    def __init__(self, node_id: int, folder: Path, ports: NodePorts, libs: Path) -> None:
        self.node_id, self.folder, self.ports, self.libs = node_id, folder, ports, libs
        self.properties_file = folder / "server.properties"
        self.log = folder / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    def configure(self, voters: dict[int, NodePorts], keystore: Path, truststore: Path) -> None:
        files = NodeFiles(self.folder / "data", keystore, truststore)
        properties = config.node_properties(self.node_id, self.ports, voters, files, advertised_host=HOST)
        self.properties_file.write_text(config.render(properties))
        (self.folder / "log4j2.properties").write_text(LOG4J.format(log=self.log))

    def _java(self, main: str, *args: str) -> list[str]:
        return [java(), *JVM_OPTIONS, f"-Dlog4j2.configurationFile={self.folder / 'log4j2.properties'}",
                "-cp", f"{self.libs}/*", main, *args]

    def format_command(self, cluster_id: str, users: Mapping[str, str]) -> list[str]:
        scram = [arg for name, password in users.items()
                 for arg in ("--add-scram", f"{SCRAM}=[name={name},password={password}]")]
        return self._java("kafka.tools.StorageTool", "format", "--cluster-id", cluster_id,
                          "--config", str(self.properties_file), *scram)

    def start(self) -> None:
        """Start the JVM on this node's log dir (formatted or not, as left)."""
        self._out = (self.folder / "stdout.log").open("ab")
        self.process = subprocess.Popen(self._java("kafka.Kafka", str(self.properties_file)),
                                        stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the broker dies mid-write, as in a power cut or an OOM kill."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close()

    def stop(self) -> None:
        """SIGTERM (a controlled shutdown), SIGKILL after 15 s."""
        if self.process is not None:
            stop_process(self.process, timeout=15)
        self._close()

    def _close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def tail(self, lines: int = 40) -> str:
        text = ""
        for path in (self.folder / "stdout.log", self.log):
            if path.exists():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text


class ApacheKafka:
    """Apache Kafka with ``nodes`` combined nodes (1 or 3) under ``folder``; a context manager.

    ``users``: SCRAM-SHA-512 users (name -> password) created at format time,
    besides the rig's super user ``admin``. :attr:`bootstrap` is the ADMIN
    listener (plaintext, a super user: the rig's own admin and topic setup).
    """

    def __init__(self, folder: Path, nodes: int = 1, users: Mapping[str, str] | None = None) -> None:
        self.folder = folder
        self.users = {ADMIN_USER: secrets.token_hex(12), **(users or {})}
        self.libs = kafka_libs()
        self.ports = {n: NodePorts(free_port(), free_port(), free_port(), free_port()) for n in range(1, nodes + 1)}
        self.nodes = [KafkaNode(n, folder / f"node{n}", ports, self.libs) for n, ports in self.ports.items()]
        self.ca = Authority(self._mkdir(folder / "ca"))
        self.cluster_id = new_cluster_id()

    @staticmethod
    def _mkdir(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ------------------------------------------------------------------ addresses
    def _bootstrap(self, listener: str, host: str) -> str:
        return ",".join(f"{host}:{getattr(p, listener)}" for p in self.ports.values())

    @property
    def bootstrap(self) -> str:
        """The ADMIN listeners (PLAINTEXT, super user): for the rig's setup and plain tests."""
        return self._bootstrap("admin", "127.0.0.1")

    @property
    def client_bootstrap(self) -> str:
        """The CLIENT listeners (SASL_SSL, SCRAM-SHA-512), by the host name the certificates name."""
        return self._bootstrap("client", HOST)

    @property
    def mtls_bootstrap(self) -> str:
        """The MTLS listeners (SSL, client certificate required)."""
        return self._bootstrap("mtls", HOST)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "ApacheKafka":
        try:
            # the certificate names the host name only: a client that dials 127.0.0.1 must fail verification
            server = self.ca.issue("broker", HOST, server=True, names=(HOST,))
            keystore = self.folder / "ca" / "broker.keystore.pem"  # PEM keystore: the key, then the chain
            keystore.write_text(server.key.read_text() + server.cert.read_text() + self.ca.pem.cert.read_text())
            for node in self.nodes:
                self._mkdir(node.folder)
                node.configure(self.ports, keystore, self.ca.pem.cert)
            formats = [subprocess.Popen(node.format_command(self.cluster_id, self.users), stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True) for node in self.nodes]
            for node, proc in zip(self.nodes, formats):
                out, _ = proc.communicate(timeout=120)
                if proc.returncode != 0:
                    raise RuntimeError(f"formatting node {node.node_id} failed:\n{out[-3000:]}")
            for node in self.nodes:
                node.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 120.0, nodes: int | None = None) -> None:
        """Until ``nodes`` brokers (default: all that run) are in the cluster's metadata."""
        want = nodes if nodes is not None else sum(node.alive() for node in self.nodes)
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.alive():
                try:
                    wait_for_port(node.ports.host, node.ports.admin, timeout=max(1.0, deadline - time.monotonic()))
                except TimeoutError:
                    raise RuntimeError(f"Apache Kafka node {node.node_id} did not open its port:\n"
                                       f"{node.tail()}") from None
        while True:
            dead = [node for node in self.nodes if node.process is not None and not node.alive()
                    and node.process.returncode not in (-9, None)]
            if dead:
                raise RuntimeError(f"Apache Kafka node {dead[0].node_id} exited:\n{dead[0].tail()}")
            if asyncio.run(self._brokers()) >= want:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Apache Kafka: fewer than {want} brokers ready after {timeout:.0f}s:\n"
                                   f"{self.nodes[0].tail()}")
            time.sleep(0.2)

    async def _brokers(self) -> int:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            return len((await admin.describe_cluster())["brokers"])
        except Exception:
            return 0
        finally:
            await admin.close()

    def kill(self, index: int = 0) -> None:
        """kill -9 node ``index`` (0-based)."""
        self.nodes[index].kill()

    def restart(self, index: int = 0) -> None:
        """Start node ``index`` again on the log dir it left, and wait until it is back in the cluster."""
        self.nodes[index].start()
        self.wait_ready()

    def stop(self) -> None:
        """SIGTERM every node at once (one by one, the last ones wait for a quorum that is gone)."""
        for node in self.nodes:
            if node.alive():
                assert node.process is not None
                node.process.terminate()
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> "ApacheKafka":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------------ client settings
    def password_file(self, user: str, password: str | None = None) -> Path:
        """A file holding ``user``'s password (or ``password``), as a mounted secret would."""
        path = self._mkdir(self.folder / "secrets") / f"{user}-{secrets.token_hex(4)}"
        path.write_text((password if password is not None else self.users[user]) + "\n")
        return path

    def client_env(self, user: str, password: str | None = None) -> dict[str, str]:
        """``VTSTREAM_KAFKA_*`` for ``user`` on the SASL_SSL listener (``password``: a wrong one, say)."""
        return {"VTSTREAM_KAFKA_BOOTSTRAP": self.client_bootstrap, "VTSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "VTSTREAM_KAFKA_SASL_MECHANISM": SCRAM, "VTSTREAM_KAFKA_SASL_USERNAME": user,
                "VTSTREAM_KAFKA_SASL_PASSWORD_FILE": str(self.password_file(user, password)),
                "VTSTREAM_KAFKA_SSL_CAFILE": str(self.ca.pem.cert)}

    def client_certificate(self, name: str) -> Pem:
        """A client certificate for ``name`` (its principal on the MTLS listener: ``User:<name>``)."""
        return self.ca.issue(f"client-{name}", name, server=False)

    def mtls_env(self, name: str, certificate: Pem | None = None) -> dict[str, str]:
        """``VTSTREAM_KAFKA_*`` for the MTLS listener with a certificate for ``name``."""
        pem = certificate or self.client_certificate(name)
        return {"VTSTREAM_KAFKA_BOOTSTRAP": self.mtls_bootstrap, "VTSTREAM_KAFKA_SECURITY_PROTOCOL": "SSL",
                "VTSTREAM_KAFKA_SSL_CAFILE": str(self.ca.pem.cert), "VTSTREAM_KAFKA_SSL_CERTFILE": str(pem.cert),
                "VTSTREAM_KAFKA_SSL_KEYFILE": str(pem.key)}
