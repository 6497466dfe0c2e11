"""URL privacy: the part of a URL that may go to VirusTotal.

VirusTotal keeps every URL it is asked about and shows it to its other
subscribers, so a password in the userinfo (``https://user:pw@host/``) or a
session token in the query (``?token=...``, ``&X-Amz-Signature=...``) would be
published. Intake passes every URL through :func:`redact` before it becomes a
cache key, a lookup, a submission or a poll (and the gateway again, at its edge):

* **link wrappers** of mail gateways (Safe Links, URL Defense...) carry the
  recipient: the wrapper is replaced by the link it wraps
  (:mod:`pipeline.rules.wrappers`), which is then redacted like any URL;
* **userinfo** (``user:pw@``, or ``user@``): ``strip`` (default) removes it,
  ``skip`` keeps the URL away from VirusTotal, ``send`` leaves it in;
* **secret parameters**, compared by name percent-decoded, case-folded and without
  ``-``, ``_`` or ``.`` (``accessToken``, ``access-token`` and ``ACCESS_TOKEN`` are
  one name; a PHP-style ``name[]`` counts as ``name``), in the query, as
  ``;name=value`` path parameters (``;jsessionid=``), as ``name=value`` pairs in a
  fragment (an OAuth ``#access_token=``) and inside a URL nested, percent-encoded,
  in a parameter value: ``drop`` (default) removes each, repeats included, ``skip``
  keeps the URL away;
* **secret values**: a query, path-parameter or fragment value shaped like a JWT or
  an e-mail address (``VTSTREAM_URL_REDACT_VALUES``, :mod:`pipeline.rules.shapes`)
  goes whatever its name, under the same ``drop`` / ``skip`` mode.

Everything else is kept byte for byte, not re-encoded, so a URL with nothing to
redact keeps its VirusTotal id. Events keep the URL as the SIEM sent it; the
summary says what was sent (``sent_as``) and why (``redacted``).

:func:`scrub` is the same rule for free text (dead letters, log lines): it finds
URL-shaped userinfo and secret ``name=value`` pairs anywhere and replaces the
secret with ``REDACTED``, so a record that is not even a valid URL cannot print one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from pipeline.errors import InputError
from pipeline.rules.indicators import classify
from pipeline.rules.shapes import secret_kind
from pipeline.rules.wrappers import unwrap
from pipeline.settings.groups import UrlPrivacy

#: What replaces a secret in dead letters and logs.
MASK = "REDACTED"

_PAIR_SEP = re.compile(r"([&;])")

# Free text: userinfo right after "//" (any scheme, defanged ones too), or a bare "user:pw@".
_TEXT_USERINFO = re.compile(r"(?<=//)[^\s/?#@\"'<>\\]+(?=@)|(?<![\w.%+-])[\w.%+-]+:[^\s/?#@\"'<>\\]*(?=@)")
_TEXT_PAIR = re.compile(r"(?<=[?&;#])([^\s=&;#?\"'<>\\]+)=([^\s&;#\"'<>\\]*)")


@dataclass(frozen=True, slots=True)
class Redaction:
    """What may be sent for one URL: ``url`` (None: nothing, see ``reason`` and ``rule``)
    and what was taken out (``"userinfo"``, then parameter names as written, once each)."""

    url: str | None
    redacted: tuple[str, ...] = ()
    reason: str | None = None
    rule: str | None = None


#: How deep :func:`redact` looks into URLs nested in parameter values (a mail gateway's
#: safe link wrapping a reset link is one level), and how many wrappers it takes off.
MAX_NESTING = 3


def redact(url: str, rules: UrlPrivacy) -> Redaction:
    """The form of ``url`` that may go to VirusTotal (``url`` is normalized: scheme://authority...).

    A parameter value that is itself a URL, percent-encoded (``?url=https%3A%2F%2F...``),
    gets the same treatment, re-encoded only if it changed.

    >>> redact("https://alice:pw@bank.example/reset?token=abc&lang=en", UrlPrivacy())
    Redaction(url='https://bank.example/reset?lang=en', redacted=('userinfo', 'token'), reason=None, rule=None)
    """
    unwrapped, wrappers = _unwrapped(url)
    if unwrapped is None:
        return Redaction(None, reason=f"the URL is a {wrappers[-1]} link whose target cannot be read; the link "
                         "carries its recipient, so it is not sent to VirusTotal", rule="url_wrapper")
    walk = _Walk(rules)
    cleaned = walk.url(unwrapped, 0)
    if rules.userinfo == "skip" and "userinfo" in walk.found:
        return Redaction(None, reason="the URL carries a user name or password; "
                         "VTSTREAM_URL_USERINFO=skip keeps such URLs away from VirusTotal", rule="url_userinfo")
    names = list(dict.fromkeys(name for name in walk.found if name != "userinfo"))
    if rules.mode == "skip" and names:
        return Redaction(None, reason=f"the URL carries the secret parameter {', '.join(names)}; "
                         "VTSTREAM_URL_REDACT_MODE=skip keeps such URLs away from VirusTotal",
                         rule="url_secret_param")
    return Redaction(cleaned, tuple(dict.fromkeys([*wrappers, *walk.found])))


def _unwrapped(url: str) -> tuple[str | None, list[str]]:
    """``url`` with known link wrappers taken off (normalized like any sighting), and their names;
    None when a wrapper's target cannot be read as a URL."""
    names: list[str] = []
    for _ in range(MAX_NESTING):
        found = unwrap(url)
        if found is None:
            return url, names
        names.append(found.wrapper)
        try:
            url = classify(found.target or "", "url").value
        except InputError:
            return None, names
    return (None, names) if unwrap(url) is not None else (url, names)


class _Walk:
    """One redaction: takes secrets out of a URL and its nested URLs, noting what it took."""

    def __init__(self, rules: UrlPrivacy) -> None:
        self.rules = rules
        self.found: list[str] = []

    def url(self, url: str, depth: int) -> str:
        scheme, sep, rest = url.partition("://")
        if not sep:  # a nested path such as "/reset?token=..."
            scheme, rest = "", url
        rest, hash_sign, fragment = rest.partition("#")
        rest, question, query = rest.partition("?")
        slash = rest.find("/")
        authority, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
        userinfo, at, hostport = authority.rpartition("@")
        if at and self.rules.userinfo != "send":
            self.found.append("userinfo")
            authority = hostport
        path = "/".join(self.segment(segment, depth) for segment in path.split("/"))
        # A query or fragment emptied by redaction loses its "?" / "#"; one that was empty keeps it.
        if query:
            query = self.pairs(query, depth)
            question = question if query else ""
        if fragment:
            fragment = self.fragment(fragment, depth)
            hash_sign = hash_sign if fragment else ""
        return f"{scheme}{sep}{authority}{path}{question}{query}{hash_sign}{fragment}"

    def pairs(self, text: str, depth: int) -> str:
        """``a=1&token=x;b=2`` -> ``a=1;b=2``: secret pairs out, the rest and its separators as written."""
        parts = _PAIR_SEP.split(text)
        kept: list[str] = []
        for index in range(0, len(parts), 2):
            name, equals, value = parts[index].partition("=")
            if equals and self.rules.is_secret(name):
                self.found.append(unquote(name))
                continue
            if equals and depth < MAX_NESTING:
                value = self.nested(value, depth + 1)
            kind = secret_kind(value if equals else name, self.rules.redact_values)
            if kind is not None:
                self.found.append(unquote(name) if equals else kind)
                continue
            kept.extend((parts[index - 1] if kept else "", f"{name}={value}" if equals else name))
        return "".join(kept)

    def nested(self, value: str, depth: int) -> str:
        """A value that decodes to a URL (absolute, or a path), redacted and re-encoded if it changed."""
        inner = unquote(value.replace("+", " "))
        if "://" not in inner and not inner.startswith("/"):
            return value
        cleaned = self.url(inner, depth)
        return value if cleaned == inner else quote(cleaned, safe="")

    def segment(self, segment: str, depth: int) -> str:
        """``cart;jsessionid=X`` -> ``cart``: matrix (``;``) parameters of one path segment."""
        head, semicolon, params = segment.partition(";")
        if not semicolon:
            return segment
        kept = self.pairs(params, depth)
        return f"{head};{kept}" if kept or params == kept else head

    def fragment(self, fragment: str, depth: int) -> str:
        """``access_token=x&state=y`` or a client-side route ``/reset?token=x``."""
        route, question, query = fragment.partition("?")
        if question:
            query = self.pairs(query, depth)
            return f"{route}?{query}" if query else route
        return self.pairs(fragment, depth)


def scrub(text: str, rules: UrlPrivacy) -> str:
    """``text`` with every URL secret :func:`redact` would remove replaced by ``REDACTED``.

    For dead letters and log lines, which may hold anything: JSON, defanged URLs,
    values that failed to parse.

    >>> scrub('{"value": "hxxps://bob:hunter2@evil[.]com/?sig=abc&x=1"}', UrlPrivacy())
    '{"value": "hxxps://REDACTED@evil[.]com/?sig=REDACTED&x=1"}'
    """
    if rules.userinfo != "send":
        text = _TEXT_USERINFO.sub(MASK, text)

    def pair(match: re.Match[str]) -> str:
        name, value = match[1], match[2]
        if rules.is_secret(name):
            return f"{name}={MASK}"
        inner = unquote(value.replace("+", " "))  # a URL nested in a value, as redact() sees it
        if inner != value and ("://" in inner or inner.startswith("/")):
            cleaned = scrub(inner, rules)
            if cleaned != inner:
                return f"{name}={quote(cleaned, safe='')}"
        return match[0]

    return _TEXT_PAIR.sub(pair, text)


def scrub_all(value: Any, rules: UrlPrivacy) -> Any:
    """:func:`scrub` every string inside a JSON-like value (dicts, lists, strings)."""
    if isinstance(value, str):
        return scrub(value, rules)
    if isinstance(value, dict):
        return {key: scrub_all(item, rules) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub_all(item, rules) for item in value]
    return value
