"""Who may reach the TAXII server: HTTP Basic credentials and where it may listen.

A malformed ``Authorization`` header (not ASCII, not base64, no ``user:``,
not UTF-8 inside) is a bad request (400), not a failed login (401): the
client is broken, not unauthorised, and the error says which. Credentials are
compared in constant time, both parts always, so timing tells nothing about
which one was wrong.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress

from pipeline.errors import ConfigError, InputError


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) of a Basic ``Authorization`` header; None without one; InputError when malformed.

    >>> basic_credentials("Basic ZmVlZDpzM2NyZXQ=")
    ('feed', 's3cret')
    >>> basic_credentials("Bearer abc") is None
    True
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
    """Whether ``header`` carries exactly these credentials; InputError when it is malformed."""
    given = basic_credentials(header)
    if given is None or not username:
        return False
    return hmac.compare_digest(given[0].encode(), username.encode()) & hmac.compare_digest(
        given[1].encode(), password.encode())


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` keeps the server on this machine.

    >>> [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "", "taxii.example")]
    [True, True, True, False, False, False]
    """
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name may resolve anywhere; an empty host listens everywhere


def check_listening(host: str, tls: bool, insecure: bool) -> None:
    """Refuse plain HTTP beyond loopback: credentials and the feed would cross the network in clear."""
    if not tls and not insecure and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve TAXII over plain HTTP on {host or 'every address'}: set VTSTREAM_TAXII_CERT and "
            "VTSTREAM_TAXII_KEY for HTTPS, listen on 127.0.0.1 (--host), or set VTSTREAM_TAXII_INSECURE=true "
            "when a TLS-terminating proxy is in front")
