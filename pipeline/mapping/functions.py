"""Custom JMESPath functions available to mapping files, and value converters.

Mapping files need a few things plain JMESPath lacks: walking an object's
entries (``entries(@)`` gives ``[{key, value}]``, so ``"{key} ExifTool"`` can
name an attribute after a key), string surgery on VirusTotal's escaped keys
(``replace``), flattening process trees, telling internet addresses from a
sandbox's own local traffic (``is_global_ip``), and the indicator being mapped
(``indicator_value()``, needed to cut a v3 resolution id into its two halves).
Every function answers ``null`` on input it cannot use instead of raising,
because mapping must never fail on a strange body.

Converters turn a selected value into what an event carries: strings
everywhere, ISO 8601 UTC for dates, ints and bools only in the summary card.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from datetime import datetime, timezone
from typing import Any, Callable

import orjson
from jmespath import functions

from pipeline.contracts.events import iso_utc

#: Walking a tree stops after this many nodes; bodies are untrusted.
MAX_TREE_NODES = 100_000

_ANY: dict[str, list[str]] = {"types": []}


class MappingFunctions(functions.Functions):
    """JMESPath functions for one mapping run; holds the indicator being mapped."""

    def __init__(self, indicator_value: str = "") -> None:
        super().__init__()
        self._indicator_value = indicator_value

    @functions.signature()
    def _func_indicator_value(self) -> str:
        return self._indicator_value

    @functions.signature(_ANY)
    def _func_entries(self, obj: Any) -> list[dict[str, Any]] | None:
        if not isinstance(obj, dict):
            return None
        return [{"key": key, "value": value} for key, value in obj.items()]

    @functions.signature(_ANY, _ANY, _ANY)
    def _func_replace(self, text: Any, old: Any, new: Any) -> str | None:
        if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)) or not old:
            return None
        return text.replace(old, new)

    @functions.signature(_ANY, _ANY)
    def _func_strip_prefix(self, text: Any, prefix: Any) -> str | None:
        """``text`` without ``prefix``; null when it does not start with it (or nothing is left)."""
        if not (isinstance(text, str) and isinstance(prefix, str)) or not prefix:
            return None
        if text.startswith(prefix) and len(text) > len(prefix):
            return text[len(prefix):]
        return None

    @functions.signature(_ANY, _ANY)
    def _func_strip_suffix(self, text: Any, suffix: Any) -> str | None:
        """``text`` without ``suffix``; null when it does not end with it (or nothing is left)."""
        if not (isinstance(text, str) and isinstance(suffix, str)) or not suffix:
            return None
        if text.endswith(suffix) and len(text) > len(suffix):
            return text[: -len(suffix)]
        return None

    @functions.signature(_ANY, _ANY)
    def _func_flatten_tree(self, nodes: Any, children_key: Any) -> list[Any] | None:
        """Every node of a tree (a list of nodes with children under ``children_key``), depth first."""
        if not isinstance(nodes, list) or not isinstance(children_key, str):
            return None
        out: list[Any] = []
        stack: list[Any] = list(reversed(nodes))
        while stack and len(out) < MAX_TREE_NODES:
            node = stack.pop()
            out.append(node)
            if isinstance(node, dict):
                children = node.get(children_key)
                if isinstance(children, list):
                    stack.extend(reversed(children))
        return out

    @functions.signature(_ANY)
    def _func_unique(self, items: Any) -> list[Any] | None:
        """The items of a list without repeats, first occurrence first (hashable items only)."""
        if not isinstance(items, list):
            return None
        seen: set[Any] = set()
        out: list[Any] = []
        for item in items:
            key = orjson.dumps(item, option=orjson.OPT_SORT_KEYS) if isinstance(item, (dict, list)) else item
            if key not in seen:
                seen.add(key)
                out.append(item)
        return out

    @functions.signature(_ANY)
    def _func_is_ip(self, text: Any) -> bool:
        return _ip(text) is not None

    @functions.signature(_ANY)
    def _func_is_global_ip(self, text: Any) -> bool:
        """A unicast address on the internet: not private, loopback, link-local, multicast or reserved."""
        address = _ip(text)
        return address is not None and address.is_global and not address.is_multicast


def _ip(text: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(text, str):
        return None
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


# ---------------------------------------------------------------- converters

_V2_DATETIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(Z|[+-]00:?00)?$")
_DAY = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")


def to_string(value: Any) -> str | None:
    """Render any JSON value as an event string; None (absent) stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.isascii() else _valid_utf8(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):
        return None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _valid_utf8(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: orjson would refuse the event
        return _SURROGATE.sub("\ufffd", text)
    return text


def _parse_datetime(value: Any) -> datetime | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or not 0 <= value < 32503680000:  # year 3000
            return None
        return datetime.fromtimestamp(float(value), timezone.utc)
    if not isinstance(value, str):
        return None
    text = value.strip()
    match = _V2_DATETIME.match(text)
    if match:
        y, mo, d, h, mi, s = (int(g) for g in match.groups()[:6])
        try:
            return datetime(y, mo, d, h, mi, s, tzinfo=timezone.utc)
        except ValueError:
            return None
    match = _DAY.match(text)
    if match:
        try:
            y, mo, d = (int(g) for g in match.groups())
            return datetime(y, mo, d, tzinfo=timezone.utc)
        except ValueError:
            return None
    if text.isdigit() and len(text) >= 9:
        return _parse_datetime(int(text))
    return None


def to_date(value: Any) -> str | None:
    """ISO 8601 UTC ("2019-03-29T13:28:11Z") from epoch seconds or VirusTotal date text.

    Text that is not a date VirusTotal writes is kept as it is rather than lost.
    """
    return _as_date(value, False) if _is_scalar(value) else None


def to_day(value: Any) -> str | None:
    """ISO 8601 calendar date ("2015-09-25"), for engine update stamps inside sentences."""
    return _as_date(value, True) if _is_scalar(value) else None


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


@functools.lru_cache(maxsize=16384)
def _as_date(value: str | int | float, day_only: bool) -> str | None:
    # Bodies repeat dates: resolutions of one day, and every engine of a report carries its
    # update stamp, most of them one of a few days. strftime dominates otherwise.
    parsed = _parse_datetime(value)
    if parsed is not None:
        return parsed.strftime("%Y-%m-%d") if day_only else iso_utc(parsed)
    return to_string(value) if isinstance(value, str) and value else None


_INT64 = 2**63


def to_int(value: Any) -> int | None:
    """An int the summary can carry (64-bit, as JSON consumers expect); anything else is None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < _INT64:
        value = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value.strip()) < 20:
        value = int(value.strip())
    if isinstance(value, int) and -_INT64 <= value < _INT64:
        return value
    return None


def truthy(value: Any) -> bool:
    """JMESPath truth: null, false, "", [] and {} are false; 0 is true."""
    if value is None or value is False:
        return False
    if isinstance(value, (str, list, dict)):
        return len(value) > 0
    return True


def to_bool(value: Any) -> bool:
    return truthy(value)


def to_json(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):
        return None


def to_strings(value: Any) -> list[str] | None:
    """A list of strings (summary lists such as categories); a scalar becomes a one-item list."""
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    out = [s for s in (to_string(item) for item in items) if s]
    return out


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "string": to_string,
    "date": to_date,
    "day": to_day,
    "int": to_int,
    "bool": to_bool,
    "json": to_json,
    "strings": to_strings,
}
