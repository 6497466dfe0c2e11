"""Checks of a MISP feed with PyMISP, the off-the-shelf MISP client, and the templates it ships.

Every served event is loaded with ``MISPEvent().load``; every object is held
against MISP's own object template (the misp-objects definitions bundled in
PyMISP): the template exists and has the same uuid and meta-category, every
object relation is one the template knows, with the template's attribute
type and a category MISP allows for that type, and PyMISP's strict
validation passes (required attributes present, repeats only where the
template allows them). References name objects of the event with a
relationship MISP knows. The manifest entry equals PyMISP's own manifest of
the event, and ``hashes.csv`` equals what PyMISP's feed generator writes
(``pymisp.tools.feed``: the MD5 of each attribute value, then the event uuid).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pymisp
from pymisp import MISPEvent, MISPObject

DATA = Path(pymisp.__file__).resolve().parent / "data"


@cache
def template(name: str) -> dict[str, Any]:
    path = DATA / "misp-objects" / "objects" / name / "definition.json"
    assert path.is_file(), f"no MISP object template {name!r}"
    return dict(json.loads(path.read_text()))


@cache
def categories_of(misp_type: str) -> frozenset[str]:
    types = json.loads((DATA / "describeTypes.json").read_text())["result"]
    return frozenset(c for c, allowed in types["category_type_mappings"].items() if misp_type in allowed)


@cache
def relationships() -> frozenset[str]:
    doc = json.loads((DATA / "misp-objects" / "relationships" / "definition.json").read_text())
    return frozenset(r["name"] for r in doc["values"])


def check_object(obj: Any) -> None:
    """One loaded object against its template; raises AssertionError (or PyMISP's InvalidMISPObject)."""
    definition = template(obj.name)
    assert obj.template_uuid == definition["uuid"], obj.name
    assert getattr(obj, "meta-category") == definition["meta-category"], obj.name
    strict = MISPObject(obj.name, strict=True)
    for attribute in obj.attributes:
        known = definition["attributes"].get(attribute.object_relation)
        assert known is not None, f"{obj.name} has no relation {attribute.object_relation!r}"
        assert attribute.type == known["misp-attribute"], (obj.name, attribute.object_relation, attribute.type)
        assert attribute.category in categories_of(attribute.type), (attribute.type, attribute.category)
        strict.add_attribute(attribute.object_relation, value=attribute.value, type=attribute.type)
    strict.to_dict(strict=True)  # required attributes present, repeats only where allowed


def check_feed(manifest: dict[str, Any], hashes_csv: str, events: dict[str, bytes]) -> dict[str, MISPEvent]:
    """The whole feed: every manifest entry served and valid, hashes.csv as PyMISP computes it."""
    assert set(manifest) == set(events), "the manifest lists exactly the events served"
    loaded: dict[str, MISPEvent] = {}
    expected_hashes: list[str] = []
    for uuid, body in events.items():
        event = MISPEvent()
        event.load(body)
        assert event.uuid == uuid
        assert manifest[uuid] == event.manifest[uuid], "the manifest entry is PyMISP's manifest of the event"
        object_uuids = {o.uuid for o in event.objects}
        for obj in event.objects:
            check_object(obj)
            for ref in obj.references:
                assert ref.relationship_type in relationships(), ref.relationship_type
                assert ref.referenced_uuid in object_uuids and ref.object_uuid == obj.uuid
        expected_hashes += [f"{h},{uuid}" for h in event.attributes_hashes("md5")]
        loaded[uuid] = event
    assert hashes_csv.splitlines() == expected_hashes
    return loaded


def objects_of(event: MISPEvent, name: str) -> list[Any]:
    return [o for o in event.objects if o.name == name]


def value_of(obj: Any, relation: str) -> Any:
    values = [a.value for a in obj.attributes if a.object_relation == relation]
    return values[0] if len(values) == 1 else values or None


def attribute(obj: Any, relation: str) -> Any:
    return next(a for a in obj.attributes if a.object_relation == relation)


def report_of(event: MISPEvent, observable: Any) -> Any:
    """The virustotal-report an observable object references with analysed-with."""
    (ref,) = [r for r in observable.references if r.relationship_type == "analysed-with"]
    return next(o for o in event.objects if o.uuid == ref.referenced_uuid)
