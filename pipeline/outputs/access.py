"""Who may read the read-only feed servers (``vtstream taxii``, ``vtstream misp-feed``), and how.

The rules are the same for every feed, so they live here once: HTTP Basic
credentials compared in constant time (a malformed header is a client error, 400,
not a failed login), a server that refuses to start
without them unless anonymous reading is asked for, HTTPS from a PEM
certificate and key given together, and no plain HTTP beyond loopback
unless the operator says so. Each server names its own settings (its
``prefix``, e.g. ``VTSTREAM_MISP_FEED``) so every message points at the
variable to set.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import ssl
from pathlib import Path
from typing import Protocol

from pipeline.errors import ConfigError, InputError


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) of a Basic ``Authorization`` header; None without one (another scheme, no header).

    A malformed one (not ASCII, not base64, not UTF-8 inside, no ``user:``) raises
    InputError, which a server answers with 400: the client is broken, not unauthorised.

    >>> basic_credentials("Basic ZmVlZDpzM2NyZXQ="), basic_credentials("Bearer abc")
    (('feed', 's3cret'), None)
    """
    if not header.isascii():
        raise InputError("the Authorization header is not ASCII (HTTP Basic is base64 of user:password)")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise InputError("the Basic credentials are not base64 of UTF-8 user:password") from None
    if not sep:
        raise InputError("the Basic credentials have no ':' between user and password")
    return user, password


def credentials_match(header: str, username: str, password: str) -> bool:
    """Whether ``header`` carries exactly these Basic credentials; InputError when it is malformed.

    >>> credentials_match("Basic " + base64.b64encode(b"feed:pw").decode(), "feed", "pw")
    True
    """
    given = basic_credentials(header)
    if given is None or not username:
        return False
    # compare both, always, so timing says nothing about which one was wrong
    return hmac.compare_digest(given[0].encode(), username.encode()) & hmac.compare_digest(
        given[1].encode(), password.encode())


def read_secret(value: str, file: Path | None, prefix: str) -> str:
    """The password given inline or in a file (a mounted secret; one trailing newline ignored), not both."""
    if value and file is not None:
        raise ConfigError(f"set {prefix}_PASSWORD or {prefix}_PASSWORD_FILE, not both")
    if file is None:
        return value
    try:
        return file.read_text().removesuffix("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {prefix}_PASSWORD_FILE: {exc}") from None


def require_credentials(username: str, password: str, anonymous: bool, prefix: str) -> None:
    """Refuse to serve without credentials unless anonymous reading was asked for."""
    if not anonymous and not (username and password):
        raise ConfigError(f"set {prefix}_USERNAME and {prefix}_PASSWORD, "
                          f"or {prefix}_ANONYMOUS=true for a feed anyone may read")


def tls_context(cert: Path | None, key: Path | None, prefix: str) -> ssl.SSLContext | None:
    """HTTPS when a certificate and key are configured; ConfigError when only one is or they do not load."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigError(f"set both {prefix}_CERT and {prefix}_KEY for HTTPS, or neither")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load {prefix}_CERT or {prefix}_KEY: {exc}") from None
    return context


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` reaches this machine only (``localhost``, 127.0.0.0/8, ::1).

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("::1")
    (True, True, True)
    >>> is_loopback("0.0.0.0"), is_loopback(""), is_loopback("feed.example")
    (False, False, False)
    """
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:  # a name other than localhost, or "" (every interface)
        return False


def check_listening(host: str, tls: bool, insecure: bool, prefix: str) -> None:
    """Refuse plain HTTP beyond loopback: Basic credentials and the feed would cross the network in clear."""
    if not tls and not insecure and not is_loopback(host):
        raise ConfigError(f"refusing to serve plain HTTP on {host or 'every interface'}: set {prefix}_CERT and "
                          f"{prefix}_KEY for HTTPS, listen on 127.0.0.1 behind a TLS proxy, or set "
                          f"{prefix}_INSECURE=true to accept it")


class Served(Protocol):
    """The access settings every feed server has (``settings.taxii``, ``settings.misp_feed``)."""

    @property
    def username(self) -> str: ...
    @property
    def password(self) -> str: ...
    @property
    def password_file(self) -> Path | None: ...
    @property
    def anonymous(self) -> bool: ...
    @property
    def cert(self) -> Path | None: ...
    @property
    def key(self) -> Path | None: ...
    @property
    def insecure(self) -> bool: ...


def checked(served: Served, host: str, prefix: str) -> tuple[str, ssl.SSLContext | None]:
    """The password and TLS context a feed server starts with, once its settings pass every rule above;
    ConfigError naming the variable to set otherwise."""
    password = read_secret(served.password, served.password_file, prefix)
    require_credentials(served.username, password, served.anonymous, prefix)
    context = tls_context(served.cert, served.key, prefix)
    check_listening(host, context is not None, served.insecure, prefix)
    return password, context
