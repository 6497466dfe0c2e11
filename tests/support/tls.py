"""A TLS terminator in front of the embedded broker (certificates: pipeline.devtools.certs).

tansu's own TLS does not complete a handshake with common clients, so tests
put a small asyncio TLS proxy in front of a plaintext broker: the broker
listens on port A and advertises port B; the proxy listens on B with TLS and
forwards the bytes to A. Clients see a TLS Kafka endpoint, as on a real
cluster's SSL listener. With ``client_ca`` the proxy requires a client
certificate (mutual TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from pathlib import Path

from pipeline.devtools.certs import Pem


class TlsProxy:
    """TLS on 127.0.0.1:``port``, plaintext to 127.0.0.1:``upstream``; runs on its own thread."""

    def __init__(self, port: int, upstream: int, server: Pem, client_ca: Path | None = None) -> None:
        self.port, self.upstream = port, upstream
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(server.cert, server.key)
        if client_ca is not None:
            self.context.load_verify_locations(client_ca)
            self.context.verify_mode = ssl.CERT_REQUIRED
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"tls-proxy-{port}", daemon=True)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    def start(self) -> "TlsProxy":
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("TLS proxy did not start")
        return self

    def stop(self) -> None:
        """Close the listener and every open connection, then the loop (no resource left to warn about)."""
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.context))
        self._ready.set()
        self.loop.run_forever()
        self.loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        up_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    w.close()
                    with contextlib.suppress(Exception):
                        await w.wait_closed()
            self._connections.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.close()
