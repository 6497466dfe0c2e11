"""The two value types everything keys on: an :class:`Indicator` and a :class:`FileRef`.

Classification and normalization (:mod:`pipeline.rules.indicators`) make them;
every record and event carries them.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

INDICATOR_TYPES = ("ip", "domain", "url", "md5", "sha1", "sha256")
HASH_TYPES = ("md5", "sha1", "sha256")
_ACTIONS = {kind: "submit_hash" if kind in HASH_TYPES else f"submit_{kind}" for kind in INDICATOR_TYPES}


@dataclass(frozen=True, slots=True)
class Indicator:
    """A classified, normalized indicator: the unit the whole pipeline keys on."""

    type: str
    value: str
    _key: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.type not in INDICATOR_TYPES:
            raise ValueError(f"indicator type {self.type!r} is not one of {INDICATOR_TYPES}")

    @property
    def key(self) -> str:
        """Kafka key, so one indicator always lands on one partition and one cache entry (computed
        once: intake's classification hands repeats the same indicator, and a URL's key is base64).

        >>> Indicator("sha1", "a" * 40).key == "file:" + "a" * 40
        True
        """
        if not self._key:
            prefix = "file" if self.type in HASH_TYPES else self.type
            key = f"url:{vt_url_id(self.value)}" if self.type == "url" else f"{prefix}:{self.value}"
            object.__setattr__(self, "_key", key)
        return self._key

    @property
    def action(self) -> str:
        """The ThreatQ action that enriches this type (names the mapping file)."""
        return _ACTIONS[self.type]

    def as_dict(self) -> dict[str, str]:
        """The ``indicator`` object of events: ``{"type": ..., "value": ...}``."""
        return {"type": self.type, "value": self.value}


def vt_url_id(url: str) -> str:
    """VirusTotal v3 URL id: unpadded URL-safe base64 of the URL string.

    >>> vt_url_id("http://www.google.com")
    'aHR0cDovL3d3dy5nb29nbGUuY29t'
    """
    return base64.urlsafe_b64encode(url.encode("utf-8")).decode("ascii").rstrip("=")



@dataclass(frozen=True, slots=True)
class FileRef:
    """A validated file: its sha256, size, name, and where the gateway finds the bytes."""

    sha256: str
    size: int
    name: str
    content_b64: str | None = None
    path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        ref: dict[str, Any] = {"name": self.name, "size": self.size, "sha256": self.sha256}
        if self.content_b64 is not None:
            ref["content_b64"] = self.content_b64
        if self.path is not None:
            ref["path"] = self.path
        return ref
