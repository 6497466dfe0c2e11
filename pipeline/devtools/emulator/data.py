"""Deterministic facts about any indicator, shared by the v3 and v2 renderers.

Every fact is drawn from ``random.Random`` seeded with ``sha256(kind + ":" + value)``,
so the same IP, domain, URL or hash yields the same ASN, detections, resolutions
and dates in every run and in both API versions. Dates fall in the five years
before :data:`REFERENCE_EPOCH` (a fixed instant, never the wall clock); only scan
timestamps of submissions made to the emulator use the real clock.

This module holds the primitives (seeding, dates, random names, validation)
and the shapes shared by all indicator kinds; ``netdata`` builds IP, domain and
URL facts, ``filedata`` file facts.

"Does VirusTotal know this indicator?" is :meth:`state.Emulator.rule_known`: a
value containing ``notfound`` is never known, and ``not_found_ratio`` makes a
fixed fraction of values unknown (decided by the hash of the value). Submitting
a URL or file makes it known once its analysis completes (see ``scans.py``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pipeline.devtools.emulator.engines import URL_ENGINES, positives_from

#: 2025-01-01T00:00:00Z. Generated dates lie before it.
REFERENCE_EPOCH = 1_735_689_600
_DAY = 86_400
FILE_TOTAL = 74  # engines that scan a Windows file (76 minus 2 type-unsupported)
URL_TOTAL = len(URL_ENGINES)

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A bounded mapping that forgets the least recently used entry."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self.size:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


# --------------------------------------------------------------------------- primitives

def seeded(kind: str, value: str, salt: str = "") -> random.Random:
    """The generator for one indicator (and optional facet)."""
    digest = hashlib.sha256(f"{kind}:{value}:{salt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def past(rng: random.Random, max_days: int = 5 * 365, min_days: int = 0) -> int:
    """An epoch second between ``max_days`` and ``min_days`` before the reference epoch."""
    return REFERENCE_EPOCH - rng.randint(min_days * _DAY, max_days * _DAY)


def v2_date(epoch: int) -> str:
    """VirusTotal v2's ``YYYY-MM-DD HH:MM:SS`` (UTC)."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def hexstr(rng: random.Random, nbytes: int) -> str:
    return f"{rng.getrandbits(nbytes * 8):0{nbytes * 2}x}"


def sha256_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


WORDS = ("cloud", "secure", "update", "mail", "login", "cdn", "portal", "shop", "news", "data",
          "account", "service", "online", "micro", "soft", "net", "web", "tech", "pay", "bank",
          "smart", "fast", "global", "media", "app", "verify", "support", "track", "host", "box")
_TLDS = ("com", "net", "org", "ru", "cn", "info", "top", "xyz", "io", "de", "br", "biz", "online", "site")


def random_domain(rng: random.Random) -> str:
    name = rng.choice(WORDS) + rng.choice(("", "-")) + rng.choice(WORDS)
    if rng.random() < 0.3:
        name += str(rng.randint(1, 999))
    return f"{name}.{rng.choice(_TLDS)}"


def random_ip(rng: random.Random) -> str:
    first = rng.choice((5, 23, 31, 37, 45, 46, 51, 62, 77, 78, 79, 80, 81, 82, 85, 89, 91, 93, 94,
                       95, 103, 104, 107, 109, 116, 138, 141, 146, 149, 151, 159, 162, 167, 172,
                       176, 178, 185, 188, 192, 193, 194, 195, 198, 203, 209, 212, 213, 217))
    return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def random_url(rng: random.Random, host: str) -> str:
    path = rng.choice(("", "index.php", "login.html", "wp-admin/", "files/invoice.doc", "dl/setup.exe",
                       "api/v1/gate.php", "images/logo.png", "update/", "download.php?id=" + str(rng.randint(1, 9999)),
                       "secure/verify.html", "bin/payload.bin", "docs/report.pdf"))
    return f"{rng.choice(('http', 'https'))}://{host}/{path}"


def random_sha256(rng: random.Random) -> str:
    return hexstr(rng, 32)


# --------------------------------------------------------------------------- validation

_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)(?!-)([a-z0-9_-]{1,63}\.)+[a-z][a-z0-9-]{1,62}$")
_HASH_RE = re.compile(r"^[0-9a-f]{32}$|^[0-9a-f]{40}$|^[0-9a-f]{64}$")


def valid_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def valid_domain(value: str) -> bool:
    return bool(_DOMAIN_RE.match(value.lower())) and not valid_ip(value)


def valid_hash(value: str) -> bool:
    return bool(_HASH_RE.match(value.lower()))


def canonical_url(raw: str) -> str | None:
    """VirusTotal's canonical form: scheme added, host lower-cased, empty path -> "/"."""
    raw = raw.strip()
    if not raw:
        return None
    if "://" not in raw:
        raw = "http://" + raw
    parts = urlsplit(raw)
    if parts.scheme.lower() not in ("http", "https", "ftp") or not parts.hostname:
        return None
    netloc = parts.netloc.rsplit("@", 1)[-1].lower()
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, parts.fragment))


# --------------------------------------------------------------------------- shared fact shapes

@dataclass(frozen=True, slots=True)
class SampleRef:
    """A related file as v2 lists it: sha256, date, positives/total."""

    sha256: str
    date: int
    positives: int
    total: int


@dataclass(frozen=True, slots=True)
class UrlRef:
    url: str
    date: int
    positives: int
    total: int


def positives_of(kind: str, value: str, total: int) -> int:
    digest = hashlib.sha256(f"{kind}:{value}:verdict".encode()).digest()
    return positives_from(int.from_bytes(digest[:4], "big") / 2**32, int.from_bytes(digest[4:8], "big") / 2**32, total)


def file_positives(sha256: str) -> int:
    """The positives count of any file, the same wherever the file appears."""
    return positives_of("file", sha256, FILE_TOTAL)


def url_positives(url: str) -> int:
    """The positives count of any URL, the same wherever the URL appears."""
    return positives_of("url", url, URL_TOTAL)


def sample_refs(rng: random.Random, n: int, *, detected: bool) -> list[SampleRef]:
    """``n`` related samples, all detected (positives > 0) or all undetected."""
    out: list[SampleRef] = []
    while len(out) < n:
        sha = random_sha256(rng)
        pos = file_positives(sha)
        if (pos > 0) == detected:
            out.append(SampleRef(sha, past(rng, 900), pos, FILE_TOTAL - rng.randint(0, 6)))
    out.sort(key=lambda s: -s.date)
    return out


def url_refs(rng: random.Random, hosts: list[str], n: int) -> list[UrlRef]:
    out = []
    for _ in range(n):
        url = random_url(rng, rng.choice(hosts))
        out.append(UrlRef(url, past(rng, 700), max(1, url_positives(url)), URL_TOTAL))
    out.sort(key=lambda u: -u.date)
    return out


@dataclass(frozen=True, slots=True)
class Samples:
    """The six v2 sample lists (downloaded/referrer/communicating x detected/undetected)."""

    detected_downloaded: list[SampleRef]
    undetected_downloaded: list[SampleRef]
    detected_referrer: list[SampleRef]
    undetected_referrer: list[SampleRef]
    detected_communicating: list[SampleRef]
    undetected_communicating: list[SampleRef]

    def all(self, relation: str) -> list[SampleRef]:
        """``relation`` is downloaded | referrer | communicating."""
        return getattr(self, "detected_" + relation) + getattr(self, "undetected_" + relation)


def samples_for(rng: random.Random, malicious: bool) -> Samples:
    def n(hi: int) -> int:
        return rng.randint(0, hi)
    bad = 6 if malicious else 2
    return Samples(
        sample_refs(rng, n(bad), detected=True), sample_refs(rng, n(4), detected=False),
        sample_refs(rng, n(bad), detected=True), sample_refs(rng, n(4), detected=False),
        sample_refs(rng, n(bad + 2), detected=True), sample_refs(rng, n(3), detected=False),
    )
