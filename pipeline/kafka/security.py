"""How every Kafka client connects: one place builds the options from Settings.

aiokafka clients (intake, the cache copy, topic creation, the CLI, the bench)
take :func:`client_options`; the faust app takes :func:`faust_credentials`,
which faust hands to the same aiokafka options. Nothing else spells
``security_protocol`` or reads the password.

:func:`check_connection` is the fail-fast gate run before any client starts.
aiokafka retries a refused TLS handshake or a SASL rejection like an
unreachable broker, and logs the cause at most; the gate opens one
connection itself, with the same options, and turns what went wrong into a
:class:`~pipeline.errors.KafkaAccessDenied` that names the setting to fix.
A broker that does not answer yet is retried (and logged) until the timeout.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import struct
from typing import Any, Literal

import faust
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.metadata import MetadataRequest

from pipeline.errors import ConfigError, KafkaAccessDenied
from pipeline.settings import Settings

log = logging.getLogger("vtstream.kafka.security")

#: OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and _IP_ADDRESS_MISMATCH: a valid certificate for another host.
X509_NAME_MISMATCH = (62, 64)
#: Seconds one probe connection may take (TLS handshake and SASL included).
PROBE_TIMEOUT = 5.0


def uses_tls(settings: Settings) -> bool:
    return settings.kafka.security_protocol in ("SSL", "SASL_SSL")


def uses_sasl(settings: Settings) -> bool:
    return settings.kafka.security_protocol.startswith("SASL_")


def sasl_password(settings: Settings) -> str:
    """The SASL password, from VTSTREAM_KAFKA_SASL_PASSWORD or read from its file at each start."""
    if settings.kafka.sasl_password_file is not None:
        try:
            return settings.kafka.sasl_password_file.read_text().removesuffix("\n")
        except OSError as exc:
            raise ConfigError(f"VTSTREAM_KAFKA_SASL_PASSWORD_FILE cannot be read: {exc.strerror}") from None
    return settings.kafka.sasl_password


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A client TLS context that verifies the broker's certificate and host name; None without TLS."""
    if not uses_tls(settings):
        return None
    try:
        return create_ssl_context(cafile=settings.kafka.ssl_cafile, certfile=settings.kafka.ssl_certfile,
                                  keyfile=settings.kafka.ssl_keyfile)
    except ssl.SSLError as exc:
        raise ConfigError("VTSTREAM_KAFKA_SSL_CAFILE / _CERTFILE / _KEYFILE cannot be loaded as PEM "
                          f"({exc.reason or exc}); a key must be unencrypted and match its certificate") from None


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client: bootstrap servers and security.

    >>> client_options(Settings.of(kafka_bootstrap="k1:9092"))
    {'bootstrap_servers': 'k1:9092', 'security_protocol': 'PLAINTEXT'}
    """
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka.bootstrap,
                               "security_protocol": settings.kafka.security_protocol}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if uses_sasl(settings):
        options.update(sasl_mechanism=settings.kafka.sasl_mechanism,
                       sasl_plain_username=settings.kafka.sasl_username,
                       sasl_plain_password=sasl_password(settings))
    return options


def faust_credentials(settings: Settings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """faust's ``broker_credentials`` for the same settings (faust passes them on to aiokafka)."""
    context = ssl_context(settings)
    if uses_sasl(settings):
        return faust.SASLCredentials(username=settings.kafka.sasl_username, password=sasl_password(settings),
                                     mechanism=settings.kafka.sasl_mechanism, ssl_context=context)
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def _hosts(settings: Settings) -> list[tuple[str, int]]:
    hosts = []
    for part in settings.kafka.bootstrap.split(","):
        host, _, port = part.strip().rpartition(":")
        hosts.append((host.strip("[]") or part.strip(), int(port) if port.isdigit() else 9092))
    return hosts


async def check_connection(settings: Settings, timeout: float = 30.0) -> None:
    """Open one connection as the clients will; raise at once when the broker refuses us.

    Raises KafkaAccessDenied (fatal: credentials, certificates, TLS where the
    broker speaks plaintext or the reverse), or ConfigError when no bootstrap
    server answered within ``timeout`` seconds; until then it retries and logs.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    announced = False
    while True:
        unreachable: list[str] = []
        for host, port in _hosts(settings):
            try:
                await _probe(settings, host, port)
                return
            except (OSError, asyncio.TimeoutError, KafkaConnectionError) as exc:
                unreachable.append(f"{host}:{port} ({_reason(exc)})")
        if loop.time() >= deadline:
            waited = f" within {timeout:g}s" if timeout > 0 else ""
            raise ConfigError(f"cannot reach Kafka at {settings.kafka.bootstrap}{waited}: "
                              f"{'; '.join(unreachable)} (check VTSTREAM_KAFKA_BOOTSTRAP)")
        if not announced:
            log.warning("Kafka at %s does not answer yet (%s); retrying for up to %gs",
                        settings.kafka.bootstrap, "; ".join(unreachable), timeout)
            announced = True
        await asyncio.sleep(min(1.0, max(0.0, deadline - loop.time())))


async def reachable(settings: Settings) -> bool:
    """True when a bootstrap server answers, even with a refusal (the worker's watchdog asks)."""
    for host, port in _hosts(settings):
        try:
            await _probe(settings, host, port)
            return True
        except KafkaAccessDenied:
            return True
        except (OSError, asyncio.TimeoutError, KafkaConnectionError):
            continue
    return False


async def _probe(settings: Settings, host: str, port: int) -> None:
    """One connection with the clients' options and one metadata request; classify a refusal."""
    where = f"{host}:{port}"
    options = client_options(settings)
    options.pop("bootstrap_servers")
    try:
        conn = await asyncio.wait_for(
            create_conn(host, port, request_timeout_ms=int(PROBE_TIMEOUT * 1000), **options), PROBE_TIMEOUT)
        try:
            await asyncio.wait_for(conn.send(MetadataRequest([])), PROBE_TIMEOUT)
        finally:
            conn.close()
    except ssl.SSLError as exc:
        raise await _tls_refused(settings, host, port, exc) from None
    except (KafkaConnectionError, asyncio.TimeoutError) as exc:
        raise await _dropped(settings, host, port, exc) from None
    except OSError:
        raise  # nothing listens: unreachable, retried by the caller
    except KeyError:  # aiokafka's SCRAM client cannot parse a server's "e=<error>" answer
        raise _refused(settings, where, RuntimeError("the broker refused the login")) from None
    except Exception as exc:  # noqa: BLE001 - anything else the broker answered is a refusal too
        raise _refused(settings, where, exc) from None


def _refused(settings: Settings, where: str, exc: Exception) -> KafkaAccessDenied:
    if not uses_sasl(settings):
        return KafkaAccessDenied(
            f"Kafka at {where} refused the client ({_reason(exc)}); it may require SASL: "
            "set VTSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT or SASL_SSL and the SASL settings")
    return KafkaAccessDenied(
        f"Kafka at {where} rejected the SASL {settings.kafka.sasl_mechanism} login of user "
        f"{settings.kafka.sasl_username!r} ({_reason(exc)}); check VTSTREAM_KAFKA_SASL_USERNAME, "
        "VTSTREAM_KAFKA_SASL_PASSWORD (or _FILE) and VTSTREAM_KAFKA_SASL_MECHANISM")


async def _tls_refused(settings: Settings, host: str, port: int, exc: ssl.SSLError) -> Exception:
    where = f"{host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_code in X509_NAME_MISMATCH:
        return KafkaAccessDenied(
            f"Kafka at {where}: the broker's certificate is not for {host!r} ({exc.verify_message}); "
            "put a host name the certificate names in VTSTREAM_KAFKA_BOOTSTRAP (host names are always verified)")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return KafkaAccessDenied(
            f"Kafka at {where}: the broker's certificate is not trusted ({exc.verify_message}); "
            "set VTSTREAM_KAFKA_SSL_CAFILE to the CA that signed it")
    if await _converse(host, port, None) == "answered":
        return _plaintext_listener(settings, where)
    reason = str(exc.reason or exc)
    if "CERTIFICATE" in reason.upper():
        return KafkaAccessDenied(
            f"Kafka at {where} refused our TLS client certificate ({reason}); it requires mutual TLS: "
            "set VTSTREAM_KAFKA_SSL_CERTFILE and VTSTREAM_KAFKA_SSL_KEYFILE to a certificate its CA signed")
    return KafkaAccessDenied(f"Kafka at {where}: TLS handshake failed ({reason}); "
                             "check VTSTREAM_KAFKA_SECURITY_PROTOCOL and VTSTREAM_KAFKA_SSL_*")


def _plaintext_listener(settings: Settings, where: str) -> KafkaAccessDenied:
    return KafkaAccessDenied(
        f"Kafka at {where} speaks plaintext, not TLS; set VTSTREAM_KAFKA_SECURITY_PROTOCOL="
        f"{'SASL_PLAINTEXT' if uses_sasl(settings) else 'PLAINTEXT'} or point "
        "VTSTREAM_KAFKA_BOOTSTRAP at the TLS listener")


async def _dropped(settings: Settings, host: str, port: int, exc: Exception) -> Exception:
    """The connection opened, then closed or went silent: find out whether the broker is there at all.

    Returns the KafkaAccessDenied to raise, or ``exc`` when the broker looks
    unreachable (then the caller retries).
    """
    where = f"{host}:{port}"
    context = ssl_context(settings)
    plaintext = await _converse(host, port, None)
    if not uses_tls(settings):
        if plaintext != "answered" and await _converse(host, port, _tls_without_verification()) == "answered":
            return KafkaAccessDenied(
                f"Kafka at {where} speaks TLS, but VTSTREAM_KAFKA_SECURITY_PROTOCOL="
                f"{settings.kafka.security_protocol}; set it to {'SASL_SSL' if uses_sasl(settings) else 'SSL'}")
    elif plaintext == "answered":
        return _plaintext_listener(settings, where)
    try:
        outcome = await _converse(host, port, context, raise_tls=True)
    except ssl.SSLError as tls_error:  # TLS 1.3 reports a refused client certificate after the handshake
        return await _tls_refused(settings, host, port, tls_error)
    if outcome == "answered":
        return _refused(settings, where, exc)  # the broker is there and dropped our login or our request
    if outcome == "silent" and uses_tls(settings) and settings.kafka.ssl_certfile is None:
        return KafkaAccessDenied(
            f"Kafka at {where} closed the connection right after the TLS handshake; it probably requires "
            "mutual TLS: set VTSTREAM_KAFKA_SSL_CERTFILE and VTSTREAM_KAFKA_SSL_KEYFILE")
    return exc


#: ApiVersions v0 request, correlation id 1, client id "vtstream-probe": any Kafka broker answers it.
_API_VERSIONS = struct.pack(">hhih", 18, 0, 1, 14) + b"vtstream-probe"

#: What one ApiVersions exchange found: an answer; a connection (and handshake) then silence or EOF;
#: no connection at all; a TLS error (only without ``raise_tls``).
Outcome = Literal["answered", "silent", "unreachable", "tls-refused"]


async def _converse(host: str, port: int, context: ssl.SSLContext | None, *, raise_tls: bool = False) -> Outcome:
    """Send ApiVersions to host:port over plaintext (``context`` None) or TLS, and say what happened.

    A blocking socket on a thread, because asyncio's TLS transport turns the
    alert a TLS 1.3 server sends for a refused client certificate into a silent EOF.
    """
    return await asyncio.to_thread(_ask_api_versions, host, port, context, raise_tls)


def _ask_api_versions(host: str, port: int, context: ssl.SSLContext | None, raise_tls: bool) -> Outcome:
    try:
        raw = socket.create_connection((host, port), timeout=3)
    except OSError:
        return "unreachable"
    try:
        sock = raw if context is None else context.wrap_socket(raw, server_hostname=host)
        with sock:
            sock.sendall(struct.pack(">i", len(_API_VERSIONS)) + _API_VERSIONS)
            head = b""
            while len(head) < 8:
                chunk = sock.recv(8 - len(head))
                if not chunk:
                    return "silent"
                head += chunk
            return "answered" if struct.unpack(">i", head[4:])[0] == 1 else "silent"
    except ssl.SSLError:
        if raise_tls:
            raise
        return "tls-refused"
    except OSError:  # reset or timed out after connecting
        return "silent"
    finally:
        raw.close()


def _tls_without_verification() -> ssl.SSLContext:
    """Only to name the protocol a port speaks; never used to send data."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "no answer"
    text = str(exc).strip()
    return text or type(exc).__name__
