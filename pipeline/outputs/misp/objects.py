"""MISP objects in the feed format, shaped after MISP's own object templates (misp-objects).

Only the five templates the feed uses are described, with the facts MISP
checks when it imports an object: the template's uuid, version and
meta-category, and for each object relation its attribute type, a category
the type allows, and whether it correlates. The tests hold every object the
feed serves against the templates PyMISP ships, so a drift shows there.

Written out here rather than built with PyMISP at run time: five shapes do
not justify PyMISP and its dependencies in the worker image, and the feed
must render a day of thousands of objects per request without PyMISP's
per-attribute validation cost. PyMISP stays the oracle in the tests.

Every uuid is a UUIDv5 under the event's: the same indicator on the same day
keeps its object and attribute uuids across versions and restarts, so MISP
updates them in place instead of adding copies.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable

#: MISP taxonomy ``tlp`` tags (TLP 2.0 names), lowest first, with the taxonomy's colours.
TLP_TAGS: tuple[tuple[str, str], ...] = (
    ("tlp:clear", "#ffffff"), ("tlp:green", "#339900"), ("tlp:amber", "#FFC000"),
    ("tlp:amber+strict", "#FFC000"), ("tlp:red", "#CC0033"))


@dataclass(frozen=True)
class Relation:
    """One object relation of a template: the MISP attribute type it holds and how it is filed."""

    type: str
    category: str
    correlate: bool = True


@dataclass(frozen=True)
class Template:
    name: str
    uuid: str
    version: int
    meta_category: str
    description: str
    relations: dict[str, Relation]


_NET, _EXT, _PAYLOAD, _OTHER = "Network activity", "External analysis", "Payload delivery", "Other"

TEMPLATES: dict[str, Template] = {t.name: t for t in (
    Template("domain-ip", "43b3b146-77eb-4931-b4cc-b66c60f28734", 11, "network",
             "A domain/hostname and IP address seen as a tuple in a specific time frame.",
             {"domain": Relation("domain", _NET), "ip": Relation("ip-dst", _NET)}),
    Template("ip-port", "9f8cea74-16fe-4968-a2b4-026676949ac6", 10, "network",
             "An IP address (or domain or hostname) and a port seen as a tuple (or as a triple) "
             "in a specific time frame.",
             {"ip": Relation("ip-dst", _NET), "AS": Relation("AS", _NET, correlate=False),
              "country-code": Relation("text", _NET, correlate=False)}),
    Template("url", "60efb77b-40b5-4c46-871b-ed1ed999fce5", 10, "network",
             "url object describes an url along with its normalized field (like extracted using faup parsing "
             "library) and its metadata.",
             {"url": Relation("url", _NET)}),
    Template("file", "688c46fb-5edb-40a3-8273-1af7923e2215", 25, "file",
             "File object describing a file with meta-information",
             {"md5": Relation("md5", _PAYLOAD), "sha1": Relation("sha1", _PAYLOAD),
              "sha256": Relation("sha256", _PAYLOAD)}),
    Template("virustotal-report", "d7dd0154-e04f-4c34-a2fb-79f3a3a52aa4", 5, "misc", "VirusTotal report",
             {"permalink": Relation("link", _EXT, correlate=False),
              "detection-ratio": Relation("text", _EXT, correlate=False),
              "last-submission": Relation("datetime", _OTHER, correlate=False),
              "community-score": Relation("text", _EXT, correlate=False),
              "comment": Relation("text", _EXT, correlate=False)}),
)}


def tlp_tags(level: int) -> list[dict[str, Any]]:
    """The ``tlp:`` tag of a TLP level (an index of :data:`TLP_TAGS`; -1 is no marking)."""
    if level < 0:
        return []
    name, colour = TLP_TAGS[level]
    return [{"name": name, "colour": colour, "local": False, "relationship_type": ""}]


@lru_cache(maxsize=256)
def _uuid_bytes(text: str) -> bytes:
    return uuid.UUID(text).bytes


def derived_uuid(parent: str, *parts: str) -> str:
    """A stable uuid under ``parent`` (an event or object uuid): RFC 4122's UUIDv5, computed without
    building two ``uuid.UUID`` objects per call (a day's event has tens of thousands of uuids).

    >>> derived_uuid(str(uuid.NAMESPACE_URL), "a", "b") == str(uuid.uuid5(uuid.NAMESPACE_URL, "a\x1fb"))
    True
    >>> all(derived_uuid(str(uuid.NAMESPACE_DNS), str(i)) == str(uuid.uuid5(uuid.NAMESPACE_DNS, str(i)))
    ...     for i in range(256))
    True
    """
    digest = bytearray(hashlib.sha1(_uuid_bytes(parent) + "\x1f".join(parts).encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def misp_object(template_name: str, parent: str, identity: str, rows: Iterable[tuple[str, str, bool]], *,
                timestamp: int, tags: list[dict[str, Any]]) -> dict[str, Any]:
    """One object in the feed format from ``(relation, value, to_ids)`` rows.

    A relation that appears once keeps one attribute uuid whatever its value
    (a detection ratio that moves is the same attribute, edited); a relation
    that repeats (a domain's resolved IPs) gets one uuid per value.
    """
    template = TEMPLATES[template_name]
    object_uuid = derived_uuid(parent, template_name, identity)
    rows = list(rows)
    counts = Counter(relation for relation, _, _ in rows)
    attributes = []
    for relation, value, to_ids in rows:
        kind = template.relations[relation]
        attributes.append({
            "uuid": derived_uuid(object_uuid, relation, *([value] if counts[relation] > 1 else [])),
            "object_relation": relation, "type": kind.type, "category": kind.category, "value": value,
            "to_ids": to_ids, "disable_correlation": not kind.correlate, "comment": "", "deleted": False,
            "timestamp": timestamp, "Tag": tags})
    return {"name": template.name, "meta-category": template.meta_category, "description": template.description,
            "template_uuid": template.uuid, "template_version": str(template.version), "uuid": object_uuid,
            "timestamp": timestamp, "comment": "", "deleted": False, "Attribute": attributes}


def reference(source: dict[str, Any], target: dict[str, Any], relationship: str, timestamp: int) -> dict[str, Any]:
    """An object reference from ``source`` to ``target`` (stored on the source object)."""
    return {"uuid": derived_uuid(source["uuid"], relationship, target["uuid"]), "timestamp": timestamp,
            "object_uuid": source["uuid"], "referenced_uuid": target["uuid"], "relationship_type": relationship,
            "comment": ""}
