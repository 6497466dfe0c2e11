"""Secrets found by their shape, whatever the parameter that carries them is called.

A parameter list cannot name every secret: a magic-link token arrives as ``?t=``,
a recipient's address as ``?u=`` or inside a tracking value such as Safe Links'
``data=05|02|alice@corp.example|...``. URL privacy (``VTSTREAM_URL_REDACT_VALUES``)
therefore also drops any query or fragment value that holds

* ``jwt``: a JSON Web Token (JWS or JWE compact form: dot-separated base64url
  parts, the first a JSON header, so it starts ``eyJ``), or
* ``email``: an e-mail address (a local part, ``@``, a domain with a dot and an
  alphabetic last label),

anywhere in the value, after percent-decoding it up to :data:`MAX_DECODES` times (an
address encoded twice, ``%2540``, is still found). Every check here is linear in the
length of the value: no pattern is tried at more than a bounded number of places.
"""

from __future__ import annotations

import re
from typing import Callable
from urllib.parse import unquote

from pipeline.settings.groups import VALUE_KINDS

MAX_DECODES = 3

_LOCAL_CHAR = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]")
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")
_NOT_TOKEN = re.compile(r"[^A-Za-z0-9_.\-]+")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


def decodings(value: str) -> list[str]:
    """``value`` and what percent-decoding it gives, once to :data:`MAX_DECODES` times (``+`` is a space).

    >>> decodings("a%2540b")
    ['a%2540b', 'a%40b', 'a@b']
    """
    seen = [value]
    for _ in range(MAX_DECODES):
        decoded = unquote(seen[-1].replace("+", " "))
        if decoded == seen[-1]:
            break
        seen.append(decoded)
    return seen


def has_email(text: str) -> bool:
    """Whether ``text`` holds an e-mail address anywhere.

    >>> has_email("05|02|alice@corp.example|9f"), has_email("a@b"), has_email("x@host.example.co")
    (True, False, True)
    """
    start = 0
    while (at := text.find("@", start)) >= 0:
        start = at + 1
        if at == 0 or not _LOCAL_CHAR.match(text, at - 1):
            continue
        domain = _DOMAIN.match(text[at + 1:at + 254])
        if domain is not None:
            last = domain[0].rsplit(".", 1)[1]
            if len(last) >= 2 and last.isalpha():
                return True
    return False


def has_jwt(text: str) -> bool:
    """Whether ``text`` holds a JSON Web Token anywhere.

    >>> has_jwt("t=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"), has_jwt("eyJ.only-two")
    (True, False)
    """
    for token in _NOT_TOKEN.split(text):
        parts = token.split(".")
        for index in range(len(parts) - 2):
            header, payload = parts[index], parts[index + 1]
            if header.startswith("eyJ") and len(header) >= 4 and len(payload) >= 2 \
                    and _BASE64URL.fullmatch(header) and _BASE64URL.fullmatch(payload):
                return True
    return False


_CHECKS: dict[str, Callable[[str], bool]] = {"jwt": has_jwt, "email": has_email}
assert set(_CHECKS) == set(VALUE_KINDS), "every kind the setting accepts has a check"


def secret_kind(value: str, kinds: tuple[str, ...]) -> str | None:
    """The first of ``kinds`` whose shape ``value`` (or a percent-decoding of it) holds, else None.

    >>> secret_kind("alice%40corp.example", ("jwt", "email")), secret_kind("en", ("jwt", "email"))
    ('email', None)
    """
    if not kinds:
        return None
    forms = decodings(value)
    for kind in kinds:
        check = _CHECKS[kind]
        if any(check(form) for form in forms):
            return kind
    return None
