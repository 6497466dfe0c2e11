"""VirusTotal's own recorded answers, served as they are for the indicators they describe.

A demo that printed 8.8.8.8 as owned by some other network would look like a
wrong real-world fact; so the emulator answers the indicators it has a
recorded body for (``recorded/``, described in ``recorded/SOURCES.md``) with
that body, and every other indicator with plainly synthetic facts (documentation
ASNs, owners marked EMULATOR: :mod:`pipeline.devtools.emulator.netdata`).
Asked for relationships, the emulator adds its own (drawn) related objects
to the recorded object.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import orjson

RECORDED = Path(__file__).resolve().parent / "recorded"


@lru_cache(maxsize=1)
def _index() -> dict[tuple[str, str, str], bytes]:
    """(api, kind, value) -> body, for IP addresses and domains: the indicators whose drawn facts
    (an owner, a registrar) could read as wrong real-world facts."""
    index: dict[tuple[str, str, str], bytes] = {}
    for path in sorted((RECORDED / "v3").glob("*.json")):
        body = path.read_bytes()
        data = orjson.loads(body)["data"]
        index[("v3", data["type"], data["id"])] = body
    for path in sorted((RECORDED / "v2").glob("*.json")):
        # ip_address_report_<ip>.json, domain_report_<domain>[_<label>].json: the value is in the name
        kind, _, rest = path.stem.partition("_report_")
        index[("v2", kind, rest.split("_")[0])] = path.read_bytes()
    return index


def recorded(api: str, kind: str, value: str) -> bytes | None:
    """The recorded body for ``value`` of ``kind`` (ip_address, domain) in API ``api``, or None.

    >>> recorded("v3", "ip_address", "8.8.8.8") is not None, recorded("v3", "ip_address", "192.0.2.1")
    (True, None)
    """
    return _index().get((api, kind, value))
