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
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote

from pipeline.errors import InputError
from pipeline.rules.indicators import MAX_URL_LENGTH, classify
from pipeline.rules.shapes import secret_kind
from pipeline.rules.wrappers import unwrap
from pipeline.settings.groups import UrlPrivacy

#: What replaces a secret in dead letters and logs.
MASK = "REDACTED"

_PAIR_SEP = re.compile(r"([&;])")

# Free text. Every pattern here runs in time linear in the text (Python's engine backtracks, so
# a pattern that can start at many places and scan far from each is quadratic: the old userinfo
# pattern took minutes on 120 KB of "a:a:a:...").
#
# Userinfo: the run of URL characters right before an "@", when it follows "//" (any scheme,
# defanged ones too) or starts with "name:" (a bare "user:pw@"). It is matched on the reversed
# text, from the "@": each "@" starts one match that only looks back over its own run, so
# the runs are scanned once each (forward, every word start before a far "@" rescanned the run).
_URL_CHAR = r"[^\s/?#@\"'<>\\]"
_USERINFO_REVERSED = re.compile(rf"@(?:{_URL_CHAR}+(?=//)|{_URL_CHAR}*:[\w.%+-]+)")
_MASK_REVERSED = "@" + MASK[::-1]
# A ``name=value`` pair after ``?``, ``&``, ``;`` or ``#``; names and values stop at the next
# separator, so each pair is scanned once. Only pairs worth a look are matched (a name that is
# secret as written, or that is encoded, bracketed or not ASCII; a value holding "%", which may
# hide a nested URL): the rest cost no Python call. The names are a trie of case-insensitive
# classes: an alternation of 30 names under (?i:...) cost 1.4 us per "&" of "&&&&..." instead.
_NAME, _VALUE = r"[^\s=&;#?\"'<>\\]", r"[^\s&;#\"'<>\\]"
# No match of the patterns above spans one of these: free text is cut only at them.
_DELIMITER = re.compile(r"[\s\"'<>\\]")

#: Pairs :func:`scrub` decodes and checks per call; past it the remaining candidates are
#: masked whole, unread (fails closed), so no text costs more than this many checks.
MAX_PAIR_CHECKS = 4096
#: Longest text :func:`scrub` reads; a longer one is cut (:func:`scrub_prefix`). Dead letters
#: keep 64 KiB and log lines less, and the regexes cost up to ~0.7 us a character on hostile
#: text, so this bounds one call to tens of milliseconds.
MAX_SCRUB_CHARS = 64 * 1024
#: How far past the cut :func:`scrub_prefix` reads to finish a token that may end in a secret.
_CUT_SLACK = 8 * 1024


def _trie(names: list[str]) -> str:
    """An alternation matching exactly ``names``, case-insensitively, branching on each letter."""
    heads: dict[str, list[str]] = {}
    for name in names:
        heads.setdefault(name[0], []).append(name[1:])
    branches = []
    for head, tails in sorted(heads.items()):
        letter = f"[{re.escape(head.lower())}{re.escape(head.upper())}]" if head.isalpha() else re.escape(head)
        rest = _trie([tail for tail in tails if tail])
        if not rest:
            branches.append(letter)
        else:
            branches.append(f"{letter}(?:{rest}){'?' if '' in tails else ''}")
    return "|".join(branches)


@lru_cache(maxsize=64)
def _candidate_pairs(names: frozenset[str]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """The pairs :func:`scrub` must look at, for the secret parameter names ``names`` (case-folded):
    group 1 is the name, group 2 the value; the match starts at the separator before them. Second,
    the same pairs without their separator, for masking whole (the separator stays, no Python call)."""
    plain = _trie(sorted(name for name in names if name and name.isascii()))
    secret_as_written = f"(?:{plain})=|" if plain else ""
    # A name with "-", "_" or "." is compared without them (``X-Amz-Signature``); a value with "@" or
    # "eyJ" may be an address or a JWT (VTSTREAM_URL_REDACT_VALUES): both are looked at.
    pair = (rf"(?={_NAME})(?={secret_as_written}{_NAME}*[-_.%+\[\x80-\U0010ffff]|{_NAME}*={_VALUE}*(?:%|@|eyJ))"
            rf"({_NAME}+)=({_VALUE}*)")
    return re.compile(rf"[?&;#]{pair}"), re.compile(rf"(?<=[?&;#]){pair}")


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
    if len(url) > MAX_URL_LENGTH:  # intake never sends one: a crafted record's, refused unread
        return Redaction(None, reason=f"the URL is {len(url):,} characters long; the longest accepted is "
                         f"{MAX_URL_LENGTH:,}", rule="url_too_long")
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


def scrub(text: str, rules: UrlPrivacy, limit: int = MAX_SCRUB_CHARS) -> str:
    """``text`` with every URL secret :func:`redact` would remove replaced by ``REDACTED``: userinfo,
    the values of secret parameters, and values shaped like ``VTSTREAM_URL_REDACT_VALUES``'.

    For dead letters and log lines, which may hold anything: JSON, defanged URLs,
    values that failed to parse. A URL nested, percent-encoded, in a value is
    decoded and scrubbed too, at most :data:`MAX_NESTING` levels deep; one nested
    deeper is masked whole. A text longer than ``limit`` characters is cut
    (:func:`scrub_prefix`) and says how much was left out. Time is linear in the
    text, whatever it holds.

    >>> scrub('{"value": "hxxps://bob:hunter2@evil[.]com/?sig=abc&x=1"}', UrlPrivacy())
    '{"value": "hxxps://REDACTED@evil[.]com/?sig=REDACTED&x=1"}'
    """
    kept, cut = scrub_prefix(text, rules, limit)
    return kept if cut == len(text) else f"{kept}... [{len(text) - cut:,} more characters left out]"


def scrub_prefix(text: str, rules: UrlPrivacy, limit: int) -> tuple[str, int]:
    """The start of ``text``, about ``limit`` characters of it, scrubbed; and where it was cut.

    A secret's mark can come after it (the "@" after a user name and password, an
    encoded "%40" in a nested URL), so the cut is never made inside a token that
    holds one further on: the token is read to its end when that is near
    (:data:`_CUT_SLACK`), else left out.

    >>> scrub_prefix("see https://bob:hunter2@evil.com/ now", UrlPrivacy(), 10)
    ('see https://REDACTED@evil.com/', 33)

    """
    if len(text) <= limit:
        return _scrub(text, rules), len(text)
    after = _DELIMITER.search(text, limit)
    token_end = len(text) if after is None else after.start()
    if text.find("@", limit, token_end) < 0 and text.find("%", limit, token_end) < 0:
        cut = limit  # nothing later in the token can make what is before the cut a secret
    elif token_end - limit <= _CUT_SLACK:
        cut = token_end
    else:
        before = _DELIMITER.search(text[limit - 1::-1])
        cut = 0 if before is None else limit - before.start()
    return _scrub(text[:cut], rules), cut


def _scrub(text: str, rules: UrlPrivacy) -> str:
    """:func:`scrub` of a whole text, however long (callers bound it)."""
    # A loop over a stack of levels, not recursion: the depth is capped, and a text that
    # nests deeper than Python's stack can no longer raise RecursionError here.
    checks = [MAX_PAIR_CHECKS]
    root = _ScrubLevel(text, 0, rules, checks)
    stack = [root]
    while stack:
        nested = stack[-1].advance()
        if nested is not None:
            stack.append(_ScrubLevel(nested, len(stack), rules, checks))
            continue
        done = stack.pop()
        if stack:
            stack[-1].resume(done.result())
    return root.result()


class _ScrubLevel:
    """One level of :func:`scrub`: a text, its userinfo masked, its candidate pairs checked in order.

    :meth:`advance` stops at a value that holds a nested URL and returns it decoded;
    the caller scrubs that one level deeper and hands the result to :meth:`resume`.
    """

    def __init__(self, text: str, depth: int, rules: UrlPrivacy, checks: list[int]) -> None:
        if rules.userinfo != "send":
            text = _USERINFO_REVERSED.sub(_MASK_REVERSED, text[::-1])[::-1]
        self.text, self.depth, self.rules, self.checks = text, depth, rules, checks
        self.pattern, self.whole = _candidate_pairs(rules.params)
        self.matches = self.pattern.finditer(text)
        self.pieces: list[str] = []
        self.done = 0  # text[:done] is in pieces
        self.waiting: tuple[re.Match[str], str] | None = None

    def advance(self) -> str | None:
        """Check pairs until one holds a nested URL (returned, decoded) or the text ends (None)."""
        for match in self.matches:
            if self.checks[0] <= 0:  # out of checks: mask every candidate left, unread
                self._put(match.start(1), len(self.text), self.whole.sub(MASK, self.text[match.start(1) - 1:])[1:])
                return None
            self.checks[0] -= 1
            name, value = match[1], match[2]
            if self.rules.is_secret(name) or secret_kind(value, self.rules.redact_values) is not None:
                self._put(match.start(1), match.end(), f"{name}={MASK}")
                continue
            inner = unquote(value.replace("+", " "))  # a URL nested in a value, as redact() sees it
            if inner == value or not ("://" in inner or inner.startswith("/")):
                continue
            if self.depth >= MAX_NESTING:  # nested deeper than we look: fail closed
                self._put(match.start(1), match.end(), f"{name}={MASK}")
                continue
            self.waiting = (match, inner)
            return inner
        return None

    def resume(self, cleaned: str) -> None:
        """The nested URL :meth:`advance` returned, scrubbed: re-encoded in place if it changed."""
        assert self.waiting is not None
        match, inner = self.waiting
        self.waiting = None
        if cleaned != inner:
            self._put(match.start(1), match.end(), f"{match[1]}={quote(cleaned, safe='')}")

    def _put(self, start: int, end: int, replacement: str) -> None:
        self.pieces += (self.text[self.done:start], replacement)
        self.done = end

    def result(self) -> str:
        if not self.pieces:
            return self.text
        return "".join((*self.pieces, self.text[self.done:]))


def scrub_all(value: Any, rules: UrlPrivacy) -> Any:
    """:func:`scrub` every string inside a JSON-like value (dicts, lists, strings), at any depth
    (a loop, not recursion: a body nested a thousand deep is copied like a flat one)."""
    if isinstance(value, str):
        return scrub(value, rules)
    if not isinstance(value, (dict, list)):
        return value
    root: dict[Any, Any] | list[Any] = {} if isinstance(value, dict) else []
    stack: list[tuple[dict[Any, Any] | list[Any], dict[Any, Any] | list[Any]]] = [(value, root)]
    while stack:
        source, copy = stack.pop()
        for key, item in (source.items() if isinstance(source, dict) else enumerate(source)):
            if isinstance(item, (dict, list)):
                new: Any = {} if isinstance(item, dict) else []
                stack.append((item, new))
            else:
                new = scrub(item, rules) if isinstance(item, str) else item
            if isinstance(copy, dict):
                copy[key] = new
            else:
                copy.append(new)
    return root

