"""The policy gate: what may be shared with VirusTotal.

Every lookup, not only an upload, adds the indicator to VirusTotal's dataset,
where other subscribers can see it. So before any request this decides, from
the indicator and the event's security labels, whether it may leave. Rules, in
order, first match wins:

1. a label in ``block_labels`` (TLP:RED, TLP:AMBER+STRICT and PAP:RED by default)
   -> never sent; a blocked TLP or PAP level blocks every stricter level of it too
   (blocking TLP:AMBER blocks TLP:AMBER+STRICT and TLP:RED);
2. a label that names TLP or PAP but is no marking vtstream knows -> never sent
   (it cannot tell what the label allows, so it fails closed);
3. if ``allow_labels`` is set, an event carrying none of them -> not sent;
4. an IP (or a URL's IP host) that is not globally routable -> never sent;
5. a domain (or a URL's host) at or under an internal domain, or a special-use
   name (:data:`SPECIAL_USE_DOMAINS`) -> never sent.

Hashes have no network rule. Labels are read from the event's ``labels``,
``tags`` and ``tlp`` alike and compared as :mod:`pipeline.rules.labels` reads them
(Unicode-normalized, case-folded, split on ``,`` and ``;``, any separator between
TLP and its level): a near-miss on a block label must fail closed, not leak.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Sequence

from pipeline.contracts.indicator import Indicator
from pipeline.rules.indicators import url_host
from pipeline.rules.labels import MARKING_LEVELS, Label, Labels, as_labels, read_labels, strings

#: Names that only mean something inside one network; a lookup would leak
#: internal naming and VirusTotal can say nothing useful about them. Each entry
#: blocks the name and everything under it.
SPECIAL_USE_DOMAINS: dict[str, str] = {
    "localhost": "loopback name (RFC 6761)",
    "localdomain": "default local domain of Unix hosts (/etc/hosts)",
    "local": "multicast DNS name (RFC 6762)",
    "home.arpa": "home network name (RFC 8375)",
    "internal": "private-use top-level domain (ICANN, 2024)",
    "intranet": "private name in common use (RFC 6762 appendix G)",
    "corp": "private name in common use (RFC 6762 appendix G)",
    "home": "private name in common use (RFC 6762 appendix G)",
    "lan": "private name in common use (RFC 6762 appendix G)",
    "private": "private name in common use (RFC 6762 appendix G)",
    "test": "reserved for testing (RFC 6761)",
    "example": "reserved for documentation (RFC 6761)",
    "invalid": "reserved, never resolves (RFC 6761)",
}
# Not listed on purpose: example.com/.net/.org (real, resolvable, used by demos),
# .onion (Tor services are legitimate threat indicators), .alt (not DNS).

_V4, _V6 = ipaddress.IPv4Network, ipaddress.IPv6Network
#: Checked before ``is_global`` so the reason names the category (and does not
#: depend on the Python version's idea of "global"; multicast is "global" there).
_NON_GLOBAL: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (_V4("0.0.0.0/32"), "the unspecified address"),
    (_V4("0.0.0.0/8"), "a 'this network' address (RFC 791)"),
    (_V4("10.0.0.0/8"), "a private address (RFC 1918)"),
    (_V4("172.16.0.0/12"), "a private address (RFC 1918)"),
    (_V4("192.168.0.0/16"), "a private address (RFC 1918)"),
    (_V4("100.64.0.0/10"), "a carrier-grade NAT address (RFC 6598)"),
    (_V4("127.0.0.0/8"), "a loopback address"),
    (_V4("169.254.0.0/16"), "a link-local address"),
    (_V4("192.0.2.0/24"), "a documentation address (RFC 5737)"),
    (_V4("198.51.100.0/24"), "a documentation address (RFC 5737)"),
    (_V4("203.0.113.0/24"), "a documentation address (RFC 5737)"),
    (_V4("198.18.0.0/15"), "a benchmarking address (RFC 2544)"),
    (_V4("224.0.0.0/4"), "a multicast address"),
    (_V4("255.255.255.255/32"), "the broadcast address"),
    (_V4("240.0.0.0/4"), "a reserved address (240.0.0.0/4)"),
    (_V6("::/128"), "the unspecified address"),
    (_V6("::1/128"), "a loopback address"),
    (_V6("fc00::/7"), "a unique local address (IPv6 ULA, RFC 4193)"),
    (_V6("fe80::/10"), "a link-local address"),
    (_V6("fec0::/10"), "a site-local address (deprecated, RFC 3879)"),
    (_V6("ff00::/8"), "a multicast address"),
    (_V6("2001:db8::/32"), "a documentation address (RFC 3849)"),
    (_V6("3fff::/20"), "a documentation address (RFC 9637)"),
    (_V6("100::/64"), "a discard-only address (RFC 6666)"),
    (_V6("64:ff9b:1::/48"), "a local-use NAT64 address (RFC 8215)"),
)
_NAT64, _V4_COMPATIBLE = _V6("64:ff9b::/96"), _V6("::/96")


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether an indicator may be sent; when not, why (for people) and which rule (for code)."""

    allowed: bool
    reason: str | None = None
    rule: str | None = None


ALLOWED = Decision(True)


def check(indicator: Indicator, labels: Labels, *, block_labels: Labels, allow_labels: Labels,
          internal_domains: Sequence[str], tags: Labels = (), tlp: Labels = ()) -> Decision:
    """Decide whether ``indicator``, seen on an event carrying ``labels`` (and ``tags``, ``tlp``),
    may go to VirusTotal. ``labels`` may hold :class:`~pipeline.rules.labels.Label` values
    already read, or strings.

    >>> check(Indicator("ip", "10.0.0.1"), [], block_labels=["TLP:RED"], allow_labels=[],
    ...       internal_domains=[]).reason
    '10.0.0.1 is a private address (RFC 1918); never sent to VirusTotal'
    """
    carried = as_labels(labels) + read_labels((), tags, tlp)
    refused = _check_labels(carried, as_labels(block_labels), as_labels(allow_labels))
    if refused is not None:
        return refused
    if indicator.type in ("ip", "domain"):
        return _check_host(indicator.value, internal_domains, "")
    if indicator.type == "url":
        return _check_host(url_host(indicator.value), internal_domains, "URL host ")
    return ALLOWED


def _check_labels(carried: tuple[Label, ...], blocked: tuple[Label, ...], allowed: tuple[Label, ...]) -> Decision | None:
    """Rules 1 to 3."""
    for label in carried:
        for block in blocked:
            if label.key == block.key:
                return Decision(False, f"the event is labelled {label.shown}; events with that label are "
                                "never sent to VirusTotal", "blocked_label")
            if label.at_least(block):
                return Decision(False, f"the event is labelled {label.shown}, as strict as or stricter than "
                                f"the blocked {block.shown}; such events are never sent to VirusTotal",
                                "blocked_label")
    for label in carried:
        if label.unknown and label.scheme is not None:
            scheme = label.scheme.upper()
            return Decision(False, f"the event carries the label {label.shown}, which names {scheme} but is no "
                            f"{scheme} level vtstream knows ({_levels(label.scheme)}); a marking that cannot be "
                            "read is never sent to VirusTotal", "unknown_label")
    if allowed and not carries_any_label(carried, allowed):
        shown = ", ".join(label.shown for label in carried) or "no label"
        return Decision(False, f"the event carries {shown}; only events labelled "
                        f"{' or '.join(label.shown for label in allowed)} are sent to VirusTotal", "not_in_allow_list")
    return None


def _levels(scheme: str) -> str:
    return ", ".join(f"{scheme.upper()}:{level.upper()}" for level in MARKING_LEVELS[scheme])


def carries_any_label(labels: Labels, wanted: Labels) -> bool:
    """Whether an event carrying ``labels`` carries one of ``wanted`` (both read the same way).

    >>> carries_any_label(["TLP: CLEAR"], ["TLP:CLEAR"]), carries_any_label([], ["TLP:CLEAR"])
    (True, False)
    """
    carried = {label.key for label in as_labels(labels)}
    return any(label.key in carried for label in as_labels(wanted))


def _check_host(host: str, internal_domains: Sequence[str], prefix: str) -> Decision:
    """Rules 3 and 4 for a bare host, which is an IP address or a domain name."""
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return _check_domain(host.lower().rstrip("."), internal_domains, prefix)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    category = _ip_category(address)
    if category is None:
        return ALLOWED
    return Decision(False, f"{prefix}{address} is {category}; never sent to VirusTotal",
                    "private_address")


def _ip_category(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    for network, category in _NON_GLOBAL:
        if address.version == network.version and address in network:
            return category
    if not address.is_global:
        return "not a globally routable address"
    inner = _embedded_v4(address)
    inner_category = None if inner is None else _ip_category(inner)
    return None if inner_category is None else f"an address embedding {inner}, {inner_category}"


def _embedded_v4(address: ipaddress.IPv4Address | ipaddress.IPv6Address
                 ) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside a 6to4, NAT64 (64:ff9b::/96) or IPv4-compatible address.

    These are "global" to ``ipaddress`` but ``2002:a00:1::`` still names 10.0.0.1.
    """
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or address in _V4_COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _check_domain(name: str, internal_domains: Sequence[str], prefix: str) -> Decision:
    for internal in strings(internal_domains):
        suffix = internal.strip().lower().removeprefix("*").strip(".")
        if suffix and _is_under(name, suffix):
            return Decision(False, f"{prefix}{name} is under the internal domain {suffix}; "
                            "never sent to VirusTotal", "internal_domain")
    for suffix, why in SPECIAL_USE_DOMAINS.items():
        if _is_under(name, suffix):
            return Decision(False, f"{prefix}{name} is a special-use name (.{suffix}: {why}); "
                            "never sent to VirusTotal", "special_use_domain")
    return ALLOWED


def _is_under(name: str, suffix: str) -> bool:
    """``a.corp.example`` is under ``corp.example``; ``notcorp.example`` is not."""
    return name == suffix or name.endswith("." + suffix)
