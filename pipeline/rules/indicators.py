"""Classify and normalize raw indicator strings into :class:`Indicator` values.

Everything downstream is keyed by the normalized indicator, so two spellings of
one thing (``2001:0db8::0001`` / ``2001:db8::1``, ``EXAMPLE.COM.`` / ``example.com``,
``hxxps://evil[.]com/a`` / ``https://evil.com/a``) must become one key, one cache
entry and one VirusTotal request.

Decisions:

* **URL fragments are dropped.** Browsers never send ``#...`` to the server, so it
  does not change what is fetched, and in phishing URLs it often carries the
  victim's address (``https://evil.example/login#alice@corp.example``), which must
  not reach VirusTotal. Path and query are kept exactly as given (not re-encoded;
  an empty path stays empty); userinfo is kept (``http://bank.com@evil.com/``).
* **IPv6 zone ids are stripped** (``fe80::1%eth0`` -> ``fe80::1``): a zone names an
  interface on the observing host. The address is kept so the policy gate refuses
  it with the real reason (link-local) rather than dead-lettering it as malformed.
* **IDN** goes through UTS #46 mapping and IDNA 2008; a label IDNA 2008 refuses
  (emoji domains such as ``💩.la``, registered under IDNA 2003 and still live)
  falls back to Python's IDNA 2003 codec. Only if both refuse is it an error.
* **A URL's host is the one a browser would visit.** For the special schemes
  (http, https, ftp, ws, wss) browsers follow the WHATWG URL standard, not RFC 3986:
  they drop tabs and newlines anywhere, read ``\\`` as ``/`` before the query,
  skip any run of slashes after ``scheme:``, percent-decode the host and read
  ``0x7f.1`` or ``3627734734`` as IPv4 addresses. So
  ``https://evil.xyz\\@bank.xyz/login`` is the host ``evil.xyz`` with the path
  ``/@bank.xyz/login``, never ``bank.xyz``. The host is read by ``ada_url``, the
  WHATWG parser Node.js uses, rather than by rules of our own that could drift
  from browsers; path and query are kept as given.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

import ada_url
import idna

from pipeline.contracts.indicator import Indicator
from pipeline.errors import InputError

MAX_URL_LENGTH = 8192
MAX_DOMAIN_LENGTH = 253
URL_SCHEMES = ("http", "https", "ftp", "ws", "wss")

_HASHES = {32: "md5", 40: "sha1", 64: "sha256"}
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "ws": 80, "wss": 443}
# Declared type, lower-cased without "-", "_" and spaces -> what is checked.
# Includes STIX (ipv4-addr, domain-name) and MISP (ip-src, ip-dst) spellings.
_DECLARED = {
    "ip": "ip", "address": "ip", "ipaddress": "ip", "ipsrc": "ip", "ipdst": "ip",
    "ipv4": "ipv4", "ipv4addr": "ipv4", "ipv6": "ipv6", "ipv6addr": "ipv6",
    "domain": "domain", "fqdn": "domain", "host": "domain", "hostname": "domain",
    "domainname": "domain", "url": "url", "uri": "url", "md5": "md5", "sha1": "sha1",
    "sha256": "sha256", "hash": "hash", "filehash": "hash", "file": "file",
}
_WHAT = {"ip": "an IP address", "ipv4": "an IPv4 address", "ipv6": "an IPv6 address",
         "domain": "a domain", "url": "a URL", "md5": "an MD5 hash", "sha1": "a SHA-1 hash",
         "sha256": "a SHA-256 hash", "hash": "an MD5, SHA-1 or SHA-256 hash"}

_STRIP = "\"'`\u201c\u201d\u2018\u2019<>\ufeff\u200b"  # SIEM quoting, BOM, zero-width space
_DEFANG_SCHEME = re.compile(r"(?<![a-z0-9])(?:h(?:xx|\*\*|tt)p(s?)|f[xt]p)(?=\[?:|\(:\))", re.I)
_DEFANG_DOT = re.compile(r"[\[({]\s*(?:\.|dot)\s*[\])}]", re.I)
_DEFANG_COLON = re.compile(r"\[(:|://)\]|\(:\)")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
#: A WHATWG special scheme and the run of ``/`` or ``\\`` after it, which browsers skip whatever its length.
_SPECIAL = re.compile(r"(https?|ftp|wss?):[/\\]*", re.I)
#: Browsers remove these anywhere in a URL before they parse it.
_TAB_NEWLINE = re.compile(r"[\t\n\r]")
_AUTHORITY_END = re.compile(r"[/\\?#]")
_HEX = re.compile(r"[0-9a-fA-F]+")
_DOTTED = re.compile(r"[0-9]+(?:\.[0-9]+)+")
_IP_CHARS = re.compile(r"[0-9A-Fa-f:.%\[\]]+")
_CIDR = re.compile(r"[0-9A-Fa-f:.]+/[0-9]{1,3}")
_HOST_PORT = re.compile(r"(?:[0-9.]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}")
_PORT = re.compile(r"[0-9]{1,5}")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class _Mismatch(Exception):
    """The value is not of the type tried; ``str(exc)`` says why (may be empty)."""


def refang(text: str) -> str:
    """Undo the defanging threat reports apply so that IOCs cannot be clicked.

    Only bracketed forms are touched (``[.]``, ``(dot)``, ``[:]``), and ``hxxp``
    only right before a colon, so ordinary URLs come through unchanged.

    >>> refang("hxxps[:]//evil[.]com/a")
    'https://evil.com/a'
    """
    text = _DEFANG_SCHEME.sub(lambda m: "ftp" if m[0][0] in "fF" else "http" + m[1].lower(), text)
    text = _DEFANG_DOT.sub(".", text)
    return _DEFANG_COLON.sub(lambda m: m[1] or ":", text)


def url_host(url: str) -> str:
    """The host of a normalized URL without brackets, userinfo or port (for the policy gate).

    >>> url_host("https://user@[2001:db8::1]:8443/x")
    '2001:db8::1'
    """
    authority = _split_url(url.partition("://")[2])[0]
    host = _split_port(authority.rpartition("@")[2])[0]
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def classify(value: str, declared_type: str | None = None) -> Indicator:
    """Classify and normalize one raw value; raise InputError with a reason a person can act on.

    A ``declared_type`` (ip, domain, url, md5, sha1, sha256, hash, or an alias) is
    checked, never overridden: a value that does not fit it is an error.

    >>> classify(" hxxps://Evil[.]COM:443/a?b=1#frag ")
    Indicator(type='url', value='https://evil.com/a?b=1')
    """
    text = refang(_clean(value))
    if declared_type is None or (isinstance(declared_type, str) and not declared_type.strip()):
        return _detect(text)
    if not isinstance(declared_type, str):
        raise InputError(f"type must be a string, got {type(declared_type).__name__}")
    wanted = _DECLARED.get(re.sub(r"[\s_-]", "", declared_type.lower()))
    if wanted is None:
        raise InputError(f"unknown type {declared_type.strip()[:40]!r}; expected one of ip, ipv4, "
                         "ipv6, domain, hostname, url, md5, sha1, sha256, hash (or none to detect)")
    if wanted == "file":
        raise InputError("type 'file' needs a 'file' object (name and content_b64 or uri); "
                         "to look a file up by hash, send the hash as md5, sha1 or sha256")
    try:
        if wanted in ("ip", "ipv4", "ipv6"):
            address = _parse_ip(text)
            if wanted != "ip" and wanted != f"ipv{address.version}":
                raise _Mismatch(f"it is an IPv{address.version} address")
            return _ip_indicator(address)
        if wanted in ("domain", "url"):
            return Indicator(wanted, _domain(text) if wanted == "domain" else _url(text))
        return _hash(text, None if wanted == "hash" else wanted)
    except _Mismatch as exc:
        detail = f" ({exc})" if str(exc) else ""
        raise InputError(f"declared type {declared_type.strip()!r} but {_show(text)} is not "
                         f"{_WHAT[wanted]}{detail}") from None


def _show(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _clean(value: object) -> str:
    """Strip SIEM quoting; refuse what can never be an indicator before any parsing."""
    if not isinstance(value, str):
        raise InputError(f"value must be a string, got {type(value).__name__}")
    text = value.strip().strip(_STRIP).strip()
    if _SPECIAL.match(text) or _DEFANG_SCHEME.match(text):
        text = _TAB_NEWLINE.sub("", text)  # as browsers do before they read a URL
    if not text:
        raise InputError("value is empty")
    if len(text) > MAX_URL_LENGTH:
        raise InputError(f"value is {len(text):,} characters long; the longest accepted "
                         f"indicator (a URL) is {MAX_URL_LENGTH:,}")
    for char in text:
        category = unicodedata.category(char)
        if category in ("Cc", "Cs") or (category == "Cf" and char not in "\u200c\u200d"):
            raise InputError(f"value contains the control or invisible character "
                             f"U+{ord(char):04X}; remove it and send the indicator alone")
    return text


def _detect(text: str) -> Indicator:
    """Detection order: exact-length hex hash, IP, URL (scheme, or host + path), domain."""
    if _HEX.fullmatch(text) and len(text) in _HASHES:
        return _hash(text, None)
    try:
        return _ip_indicator(_parse_ip(text))
    except _Mismatch as exc:  # the parser's reason only helps if the value looks like an IP
        hint = str(exc) if _IP_CHARS.fullmatch(text) else ""
    if _HOST_PORT.fullmatch(text):
        hint = "it looks like address:port; send the address without the port"
    if _CIDR.fullmatch(text) and _is_network(text):
        raise InputError(f"{_show(text)} is a network range (CIDR), not one IP address; "
                         "send the addresses one by one")
    if _SCHEME.match(text):
        try:
            return Indicator("url", _url(text))
        except _Mismatch as exc:
            raise InputError(f"{_show(text)} is not a usable URL ({exc})") from None
    if not hint and _HEX.fullmatch(text) and len(text) >= 16:
        hint = _hash_lengths(text)
    try:
        if "/" in text or "?" in text:
            return Indicator("url", _url(text))
        return Indicator("domain", _domain(text))
    except _Mismatch as exc:
        if not hint and not any(c.isspace() for c in text):
            hint = str(exc)
    detail = f" ({hint})" if hint else ""
    raise InputError(f"{_show(text)} is not an IP address, domain, URL or hash{detail}")


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _hash(text: str, kind: str | None) -> Indicator:
    if not _HEX.fullmatch(text):
        raise _Mismatch("hashes are hexadecimal: 0-9 and a-f only")
    found = _HASHES.get(len(text))
    if found is None or kind not in (None, found):
        raise _Mismatch(_hash_lengths(text))
    return Indicator(found, text.lower())


def _hash_lengths(text: str) -> str:
    return f"it has {len(text)} hex characters; MD5 has 32, SHA-1 40, SHA-256 64"


def _parse_ip(text: str) -> Address:
    """Parse an address as given (brackets and zone id dropped); _Mismatch says why not."""
    s = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        if ":" in s:
            return ipaddress.IPv6Address(s.partition("%")[0])
        if _DOTTED.fullmatch(s):
            if any(len(octet) > 1 and octet[0] == "0" for octet in s.split(".")):
                raise _Mismatch("an octet has a leading zero, which some tools read as octal; "
                                "write the address without leading zeros")
            return ipaddress.IPv4Address(s)
    except ipaddress.AddressValueError as exc:
        raise _Mismatch(str(exc)) from None
    raise _Mismatch("")


def _ip_indicator(address: Address) -> Indicator:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return Indicator("ip", address.compressed)


def _domain(text: str) -> str:
    """Lower-case, drop one trailing dot, IDN to punycode, validate the labels."""
    name = text[:-1] if text.endswith(".") else text
    if len(name) > MAX_DOMAIN_LENGTH:
        raise _Mismatch(f"it is {len(name)} characters long; DNS names have at most 253")
    name = name.lower() if name.isascii() else _to_ascii(name)
    labels = name.split(".")
    for label in labels:
        if not label or len(label) > 63:
            raise _Mismatch(f"label {label[:20]!r} is {len(label)} characters long; "
                            "DNS labels have 1 to 63")
        if not _LABEL.fullmatch(label):
            raise _Mismatch(f"label {label[:63]!r} may only hold letters, digits, hyphens and "
                            "underscores, and cannot start or end with a hyphen")
    if len(labels) < 2:
        raise _Mismatch("a domain has at least two labels, like example.com; "
                        "single names such as 'localhost' are local names")
    if labels[-1].isdigit() or "_" in labels[-1]:
        raise _Mismatch(f"last label {labels[-1]!r} cannot be a top-level domain")
    if len(name) > MAX_DOMAIN_LENGTH:
        raise _Mismatch(f"it is {len(name)} characters long in punycode; DNS allows 253")
    return name


def _to_ascii(name: str) -> str:
    """UTS #46 mapping, then IDNA 2008 per label with the IDNA 2003 fallback."""
    try:
        mapped = idna.uts46_remap(name, std3_rules=False, transitional=False)
    except ValueError as exc:
        raise _Mismatch(f"not a valid internationalized domain name: {exc}") from None
    out = []
    for label in mapped.split("."):
        try:
            out.append(label.lower() if label.isascii() else idna.alabel(label).decode("ascii"))
        except ValueError:
            try:
                out.append(label.encode("idna").decode("ascii"))
            except ValueError as exc:
                raise _Mismatch(f"label {label[:63]!r} cannot be converted to punycode: "
                                f"{exc}") from None
    return ".".join(out)


def _split_url(rest: str) -> tuple[str, str]:
    """Split what follows ``scheme://`` into authority and path+query; drop the fragment."""
    rest = rest.partition("#")[0].rstrip(_STRIP)  # quoting left before the fragment
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    return rest[:cut], rest[cut:]


def _split_port(hostport: str) -> tuple[str, str | None]:
    """Split ``host:port`` or ``[v6]:port``; a malformed bracket is left for the host check."""
    if hostport.startswith("["):
        host, close, after = hostport.partition("]")
        if close and (not after or after.startswith(":")):
            return host + close, (after[1:] if after else None)
        return hostport, None
    host, colon, port = hostport.partition(":")
    return host, (port if colon else None)


def _url(text: str) -> str:
    """Normalize a URL; a value without a scheme is taken as http://.

    The authority ends where a browser ends it (``/``, ``\\``, ``?`` or ``#``), a ``\\``
    before the query is a ``/``, and the host is what a browser makes of it.
    """
    special = _SPECIAL.match(text)
    if special:
        scheme, rest = special[1].lower(), text[special.end():]
    elif (other := _SCHEME.match(text)) is not None:
        raise _Mismatch(f"scheme {other[1].lower()[:20]!r} is not supported; use http, https, ftp, ws or wss")
    else:
        scheme, rest = "http", text
    rest = rest.partition("#")[0].rstrip(_STRIP)  # quoting left before the fragment
    end = _AUTHORITY_END.search(rest)
    authority, tail = (rest, "") if end is None else (rest[:end.start()], rest[end.start():])
    path, question, query = tail.partition("?")
    tail = path.replace("\\", "/") + question + query
    if any(c.isspace() for c in authority + tail):
        raise _Mismatch("it contains whitespace; percent-encode spaces as %20")
    userinfo, at, hostport = authority.rpartition("@")
    if at and not special:
        raise _Mismatch("it has no scheme; write it out with http:// or https://")
    host, port = _split_port(hostport)
    if not host:
        raise _Mismatch("it has no host")
    if port and not (_PORT.fullmatch(port) and 0 < int(port) < 65536):
        raise _Mismatch(f"port {port[:20]!r} is not a number from 1 to 65535")
    try:
        host = _browser_host(scheme, hostport)
    except _Mismatch as exc:
        raise _Mismatch(f"host {host[:80]!r}: {exc or 'not an IP address'}") from None
    port_part = f":{int(port)}" if port and int(port) != _DEFAULT_PORTS[scheme] else ""
    return f"{scheme}://{userinfo}{at}{host}{port_part}{tail}"


def _browser_host(scheme: str, hostport: str) -> str:
    """The host of ``scheme://hostport/`` as a browser reads it (WHATWG host parsing), normalized."""
    try:
        parsed = ada_url.parse_url(f"{scheme}://{hostport}/")
    except ValueError:
        raise _Mismatch("browsers cannot read it as a host name or an address") from None
    name, kind = str(parsed["hostname"]), int(parsed["host_type"])
    if kind == ada_url.HostType.IPV4:
        return name
    if kind == ada_url.HostType.IPV6:
        ip = _ip_indicator(_parse_ip(name)).value
        return f"[{ip}]" if ":" in ip else ip
    return _domain(name)
