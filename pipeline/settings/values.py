"""Parsers of environment values: each turns the text of one variable into a typed value,
or raises ValueError saying what is expected (the caller names the variable)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


def csv_list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false, got {raw!r}")


def positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError(f"must be a positive integer, got {value}")
    return value


def non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError(f"must be zero or more, got {value}")
    return value


def at_least(low: int) -> Callable[[str], int]:
    """A parser of whole numbers no smaller than ``low``."""
    def parse(raw: str) -> int:
        value = int(raw)
        if value < low:
            raise ValueError(f"must be at least {low}, got {value}")
        return value
    return parse


def positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise ValueError(f"must be a positive number, got {value}")
    return value


def api_version(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("v2", "v3"):
        raise ValueError(f"must be 'v3' or 'v2', got {raw!r}")
    return value


def base_url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"must start with http:// or https://, got {raw!r}")
    if "/api/v3" in value or "/vtapi/v2" in value:
        raise ValueError(
            "give scheme and host only (e.g. https://www.virustotal.com); "
            "the client appends /api/v3/... or /vtapi/v2/..."
        )
    return value


def is_loopback_url(url: str) -> bool:
    """Whether ``url``'s host is this machine: ``localhost`` (and names under it), 127.0.0.0/8 or ::1.

    >>> is_loopback_url("http://127.0.0.1:8079"), is_loopback_url("http://[::1]/"), is_loopback_url("http://vt.example")
    (True, True, False)
    """
    authority = url.partition("://")[2].split("/", 1)[0].rpartition("@")[2]
    host = authority[1:].partition("]")[0] if authority.startswith("[") else authority.partition(":")[0]
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bootstrap(raw: str) -> str:
    value = raw.strip()
    if value.startswith("kafka://"):
        value = value[len("kafka://"):]
    if not value:
        raise ValueError("must name at least one host:port")
    return value


def readable_file(raw: str) -> Path:
    path = Path(raw.strip()).expanduser()
    if not path.is_file():
        raise ValueError(f"no readable file at {str(path)!r}")
    return path


def confidence(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 100:
        raise ValueError(f"confidence must be between 0 and 100, got {value}")
    return value


def rating(raw: str) -> float:
    value = float(raw)
    if not 0 <= value <= 5:
        raise ValueError(f"rating must be between 0 and 5, got {raw}")
    return value


def one_of(*choices: str) -> Callable[[str], str]:
    """A parser accepting one of ``choices``, case-insensitively; the value comes back as spelled there."""
    by_folded = {choice.casefold(): choice for choice in choices}

    def parse(raw: str) -> str:
        value = by_folded.get(raw.strip().casefold())
        if value is None:
            raise ValueError(f"must be {', '.join(choices[:-1])} or {choices[-1]}, got {raw!r}")
        return value

    return parse


def log_level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(f"must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {raw!r}")
    return value


def log_format(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("text", "json"):
        raise ValueError(f"must be text or json, got {raw!r}")
    return value


def parse_duration(raw: str) -> float:
    """'30s', '2m', '10m', '1h', '1d' or plain seconds -> seconds."""
    text = raw.strip().lower()
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit) and text[: -len(unit)].strip():
            value = float(text[: -len(unit)]) * units[unit]
            break
    else:
        value = float(text)
    if value <= 0:
        raise ValueError(f"must be a positive duration, got {raw!r}")
    return value


def tiers(raw: str) -> tuple[str, ...]:
    names = csv_list(raw)
    if not names:
        raise ValueError("name at least one delay, e.g. 30s,2m,10m,1h")
    delays = [parse_duration(n) for n in names]
    if delays != sorted(set(delays)):
        raise ValueError(f"delays must be distinct and increasing, got {raw!r}")
    return names


def caps(raw: str) -> tuple[tuple[str, int], ...]:
    """'siem=300,proxy=50' -> (('siem', 300), ('proxy', 50))."""
    caps = []
    for part in csv_list(raw):
        name, sep, number = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected source=N pairs, got {part!r}")
        caps.append((name.strip(), positive_int(number)))
    return tuple(caps)


def outputs_list(choices: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """A parser of a non-empty comma-separated subset of ``choices`` (case-insensitive)."""
    def parse(raw: str) -> tuple[str, ...]:
        names = tuple(name.lower() for name in csv_list(raw))
        unknown = [name for name in names if name not in choices]
        if unknown or not names:
            raise ValueError(f"name one or more of {', '.join(choices)}, got {raw!r}")
        return names
    return parse


def subset_of(choices: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """A parser of a comma-separated subset of ``choices`` (case-insensitive); empty is the empty set."""
    def parse(raw: str) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(name.lower() for name in csv_list(raw)))
        unknown = [name for name in names if name not in choices]
        if unknown:
            raise ValueError(f"name any of {', '.join(choices)} (or none), got {raw!r}")
        return names
    return parse


@dataclass(frozen=True)
class Share:
    """A share of a whole (a budget as a part of the daily quota), 0 < fraction <= 1."""

    fraction: float

    def of(self, whole: int) -> int:
        """This share of ``whole``, rounded down, at least 1.

        >>> Share(0.15).of(500), Share(0.001).of(500)
        (75, 1)
        """
        return max(1, int(whole * self.fraction + 1e-9))

    def __str__(self) -> str:
        return f"{self.fraction * 100:g}%"


def share(raw: str) -> Share:
    """'15%' or '0.15' -> Share(0.15); more than the whole, or nothing, is refused."""
    text = raw.strip()
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0 < value <= 1:
        raise ValueError(f"must be a share above 0 and at most 100% (e.g. 15% or 0.15), got {raw!r}")
    return Share(value)
