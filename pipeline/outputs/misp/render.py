"""The MISP feed format of one day's event: objects, manifest entry, hashes.csv lines (pure).

The shapes are those PyMISP's feed tools write (``MISPEvent.to_feed``,
``MISPEvent.manifest``, ``pymisp.tools.feed``): the event under ``Event``
with its organisation, tags and objects; a manifest entry per event with
its ``timestamp``; ``hashes.csv`` with the MD5 of every attribute value and
the event uuid. Each indicator gives two objects: the observable from MISP's
template for its kind (``ip-port``, ``domain-ip``, ``url``, ``file``),
``analysed-with`` its ``virustotal-report``; every attribute of both carries
the indicator's ``tlp:`` tag, and the observable's own value carries
``to_ids`` when the indicator is now malicious.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, Iterator

from pipeline.outputs.misp.feed import NAMESPACE, Day, Entry
from pipeline.outputs.misp.objects import misp_object, reference, tlp_tags
from pipeline.outputs.stix import gui_url

ORG = {"name": "vtstream", "uuid": str(uuid.uuid5(NAMESPACE, "organisation vtstream"))}
INFO = "vtstream: VirusTotal enrichment {day}"
_TEMPLATE_OF = {"ip": "ip-port", "domain": "domain-ip", "url": "url", "md5": "file", "sha1": "file", "sha256": "file"}


def _observable_rows(entry: Entry) -> list[tuple[str, str, bool]]:
    obs, ids = entry.obs, entry.to_ids
    if obs.kind == "ip":
        return [("ip", obs.value, ids), *([("AS", obs.asn, False)] if obs.asn else []),
                *([("country-code", obs.country, False)] if obs.country else [])]
    if obs.kind == "domain":
        return [("domain", obs.value, ids), *(("ip", address, False) for address in obs.resolutions)]
    if obs.kind == "url":
        return [("url", obs.value, ids)]
    hashes = dict(obs.hashes)
    hashes[obs.kind] = obs.value
    return [(name, hashes[name], ids) for name in ("md5", "sha1", "sha256") if name in hashes]


def _report_rows(entry: Entry, indicator_at: int) -> list[tuple[str, str, bool]]:
    obs = entry.obs
    rows = [("permalink", gui_url({"type": obs.kind, "value": obs.value}), False)]
    if obs.total:
        rows.append(("detection-ratio", f"{obs.positives or 0}/{obs.total}", False))
    if obs.scan_date:
        rows.append(("last-submission", obs.scan_date, False))
    if entry.community is not None:
        rows.append(("community-score", entry.community, False))
    verdict = obs.verdict(indicator_at)
    text = f"{verdict}: {obs.positives or 0} of {obs.total} engines flagged it" if obs.total else (
        f"{verdict}: VirusTotal {'gave no engine results' if obs.found else 'does not know it'}")
    if obs.previous and obs.previous != verdict:
        text += f" (was {obs.previous})"
    rows.append(("comment", text, False))
    return rows


def event_objects(day: Day, indicator_at: int) -> Iterator[dict[str, Any]]:
    """Each indicator's observable object (with its ``analysed-with`` reference) and its VirusTotal report."""
    for value, entry in day.entries.items():
        kind = entry.obs.kind
        tags = tlp_tags(entry.obs.tlp)
        identity = f"{kind}:{value}"
        observable = misp_object(_TEMPLATE_OF[kind], day.uuid, identity, _observable_rows(entry),
                                 timestamp=entry.version, tags=tags)
        report = misp_object("virustotal-report", day.uuid, identity, _report_rows(entry, indicator_at),
                             timestamp=entry.version, tags=tags)
        observable["ObjectReference"] = [reference(observable, report, "analysed-with", entry.version)]
        yield observable
        yield report


def manifest_entry(day: Day) -> dict[str, Any]:
    """The day's line in ``manifest.json``: what MISP compares before it pulls the event."""
    return {"Orgc": dict(ORG), "Tag": tlp_tags(day.tlp), "info": INFO.format(day=day.day.isoformat()),
            "date": day.day.isoformat(), "analysis": 2, "threat_level_id": 4, "timestamp": day.version}


def event(day: Day, indicator_at: int) -> dict[str, Any]:
    """The day's MISP event in the feed format (``{"Event": {...}}``), marked with the day's highest TLP."""
    meta = manifest_entry(day)
    return {"Event": {"uuid": day.uuid, "info": meta["info"], "date": meta["date"], "analysis": 2,
                      "threat_level_id": 4, "timestamp": day.version, "publish_timestamp": day.version,
                      "published": False, "Orgc": meta["Orgc"], "Tag": meta["Tag"],
                      "Object": list(event_objects(day, indicator_at))}}


def hash_lines(day: Day, indicator_at: int) -> Iterator[str]:
    """The day's lines of ``hashes.csv``: the MD5 of every attribute value, then the event uuid
    (the format of PyMISP's feed generator; MISP caches and correlates a feed from it), in the
    event's order, from the same rows as the objects but without building them."""
    for entry in day.entries.values():
        for _, value, _ in (*_observable_rows(entry), *_report_rows(entry, indicator_at)):
            yield f"{hashlib.md5(value.encode(), usedforsecurity=False).hexdigest()},{day.uuid}\n"
