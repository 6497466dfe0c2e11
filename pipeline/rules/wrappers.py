"""Link wrappers of mail gateways: the link inside, without the recipient's trail.

Mail security gateways rewrite every link of a message into one of their own
that checks the target when it is clicked. The wrapper carries who received the
message: Microsoft Defender Safe Links its ``data`` parameter
(``05|02|alice@corp.example|<tenant>|...``), Proofpoint URL Defense its ``r``
parameter (v2) or the ``!!<customer>!<recipient>$`` tail (v3). Looking such a link
up would publish that trail to every VirusTotal subscriber, and would only ask
about the gateway anyway. So :func:`unwrap` replaces a known wrapper by the link it
wraps: the lookup is about the real target, every recipient's copy of one link is
one cache entry, and the recipient never leaves. A wrapper whose target cannot be
decoded is not sent at all.

Known wrappers (host, where the target is):

* Microsoft Defender Safe Links: ``*.safelinks.protection.outlook.com`` (and the
  government clouds' ``office365.us``), ``?url=``;
* Proofpoint URL Defense: ``urldefense.proofpoint.com/v1/url?u=`` (percent-encoded),
  ``/v2/url?u=`` (``-XX`` for ``%XX``, ``_`` for ``/``), ``urldefense.com/v3/__<url>__;<b64>!...``
  (characters the rewriting replaced by ``*`` come back from the base64 after ``__;``);
* Barracuda Link Protection: ``linkprotect.cudasvc.com/url?a=``;
* Trend Micro Click Time: ``*.trendmicro.com/wis/clicktime/.../query?url=``;
* Broadcom (Symantec) Click-time: ``clicktime.symantec.com/...?u=``.

Other wrappers are not unwrapped; their recipient trail, when it holds an address,
is caught by the ``email`` value rule (:mod:`pipeline.rules.shapes`).
"""

from __future__ import annotations

import base64
import binascii
import re
import string
from dataclasses import dataclass
from typing import Callable
from urllib.parse import unquote

#: Proofpoint v3: a run of replaced characters is "**" and one letter for its length (2, 3, ...).
_V3_RUNS = {char: length for length, char in enumerate(string.ascii_uppercase + string.ascii_lowercase
                                                         + string.digits + "-_", start=2)}
_V3_TOKEN = re.compile(r"\*(\*.)?")


#: Where a wrapper keeps its target: given the URL after the host (path and query) and the
#: query's parameters (names case-folded, values as written), the target or None.
Target = Callable[[str, dict[str, str]], "str | None"]


@dataclass(frozen=True, slots=True)
class Wrapper:
    """One kind of wrapper: its name (as the summary's ``redacted`` shows it), where it is
    (host, and the start of the path), and where its target is."""

    name: str
    host: re.Pattern[str]
    path: re.Pattern[str]
    target: Target


def _param(name: str) -> Target:
    def target(tail: str, params: dict[str, str]) -> str | None:
        value = params.get(name)
        return unquote(value) if value else None
    return target


def _proofpoint(tail: str, params: dict[str, str]) -> str | None:
    if tail.startswith("/v1/"):
        return unquote(params["u"]) if params.get("u") else None
    if tail.startswith("/v2/"):
        encoded = params.get("u")
        return unquote(encoded.replace("-", "%").replace("_", "/")) if encoded else None
    return _proofpoint_v3(tail)


def _proofpoint_v3(rest: str) -> str | None:
    """``/v3/__<url>__;<base64 of the replaced characters>!<trail>``."""
    if not rest.startswith("/v3/__"):
        return None
    end = rest.find("__;", 6)
    bang = rest.find("!", end + 3) if end >= 0 else -1
    if end < 0 or bang < 0:
        return None
    url, encoded = unquote(rest[6:end]), rest[end + 3:bang]
    try:
        replaced = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    position = 0

    def put_back(match: re.Match[str]) -> str:
        nonlocal position
        count = 1 if match[1] is None else _V3_RUNS.get(match[1][1], 0)
        piece = replaced[position:position + count]
        position += count
        if count == 0 or len(piece) != count:
            raise ValueError("fewer replaced characters than placeholders")
        return piece

    try:
        return _V3_TOKEN.sub(put_back, url)
    except ValueError:
        return None


_ANY = re.compile(r"")
WRAPPERS: tuple[Wrapper, ...] = (
    Wrapper("safelinks", re.compile(r"(?:[a-z0-9-]+\.)*safelinks\.protection\.(?:outlook\.com|office365\.us)"),
            _ANY, _param("url")),
    Wrapper("urldefense", re.compile(r"urldefense(?:\.proofpoint)?\.(?:com|us)"), re.compile(r"/v[123]/"),
            _proofpoint),
    Wrapper("linkprotect", re.compile(r"linkprotect\.cudasvc\.com"), re.compile(r"/url"), _param("a")),
    Wrapper("clicktime", re.compile(r"(?:[a-z0-9-]+\.)*trendmicro\.com"), re.compile(r"/wis/clicktime/"),
            _param("url")),
    Wrapper("clicktime", re.compile(r"clicktime\.symantec\.com"), _ANY, _param("u")),
)


@dataclass(frozen=True, slots=True)
class Unwrapped:
    """What a wrapper held: the wrapper's name and the target (None: it could not be decoded)."""

    wrapper: str
    target: str | None


def unwrap(url: str) -> Unwrapped | None:
    """The link inside ``url`` (a normalized URL) if ``url`` is a known wrapper, else None.

    >>> unwrap("https://nam12.safelinks.protection.outlook.com/?url=https%3A%2F%2Fevil.example%2Fx"
    ...        "&data=05%7C02%7Calice%40corp.example%7C&sdata=abc&reserved=0")
    Unwrapped(wrapper='safelinks', target='https://evil.example/x')
    >>> unwrap("https://urldefense.proofpoint.com/v2/url?u=https-3A__evil.example_a-3Fb-3D1&d=DwM&r=x").target
    'https://evil.example/a?b=1'
    """
    rest = url.partition("://")[2]
    slash = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    host, tail = rest[:slash].rpartition("@")[2].partition(":")[0], rest[slash:]
    for wrapper in WRAPPERS:
        if wrapper.host.fullmatch(host) and wrapper.path.match(tail):
            params: dict[str, str] = {}
            for pair in tail.partition("?")[2].split("&"):
                name, equals, value = pair.partition("=")
                if equals:
                    params.setdefault(unquote(name).casefold(), value)
            return Unwrapped(wrapper.name, wrapper.target(tail, params))
    return None
