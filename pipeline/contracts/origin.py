"""The origin of a piece of work: the sighting that caused it.

Intake builds one :class:`Origin` per accepted record; it travels inside every
record the work causes (vt.lookups, vt.requests, vt.responses, the cache's
waiters) and is published, without its private note, in the sighting's
summary event::

    {"id": "e1", "source": "siem", "observed_at": "...", "labels": ["TLP:GREEN"],
     "tags": [...], "tlp": ["green"], "ref": "indicators.raw/0/17", "file_name": "x.exe",
     "received_at": 1767225600.123, "replay": "june"}

``ref`` (topic/partition/offset) is the sighting's identity across replays;
``replay`` names the ``vtstream replay`` run that fed it (published at the
event's top level, not in its origin); ``as_seen`` keeps, for a URL that was
redacted or refused, the URL as the SIEM sent it: it never leaves vtstream.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

from pipeline.contracts.reader import FieldReader
from pipeline.contracts.quick import quick_init

#: Free-text fields of a raw record that intake copies into the origin.
TEXT_FIELDS = ("id", "source", "observed_at")
#: List fields of a raw record that intake copies into the origin (``tlp``: a TLP level, or several).
LIST_FIELDS = ("labels", "tags", "tlp")


@dataclass(frozen=True, slots=True)
class SeenAs:
    """A URL sighting's URL as the SIEM sent it, what was taken out, and whether any form was sent."""

    value: str
    redacted: tuple[str, ...] = ()
    sent: bool = True

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"value": self.value, "redacted": list(self.redacted)}
        if not self.sent:
            doc["sent"] = False
        return doc

    @classmethod
    def read(cls, r: FieldReader) -> "SeenAs":
        return cls(value=r.text("value"), redacted=r.texts("redacted"), sent=r.boolean("sent", True))


@quick_init
@dataclass(frozen=True, slots=True)
class Origin:
    """The sighting behind a piece of work (see the module docstring for each field)."""

    ref: str | None = None
    id: str | None = None
    source: str | None = None
    observed_at: str | None = None
    labels: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    tlp: tuple[str, ...] = ()
    file_name: str | None = None
    received_at: float | None = None
    replay: str | None = None
    as_seen: SeenAs | None = None

    def to_dict(self) -> dict[str, Any]:
        """The wire form inside vtstream's own records (the private note included)."""
        doc = self.published()
        if self.replay:
            doc["replay"] = self.replay
        if self.as_seen is not None:
            doc["as_seen"] = self.as_seen.to_dict()
        return doc

    def published(self) -> dict[str, Any]:
        """The ``origin`` object of an output event: no private note, and no replay run
        (an event carries that at its top level)."""
        doc = self.published_texts(self.id, self.source, self.observed_at)
        if self.labels:
            doc["labels"] = list(self.labels)
        if self.tags:
            doc["tags"] = list(self.tags)
        if self.tlp:
            doc["tlp"] = list(self.tlp)
        if self.ref is not None:
            doc["ref"] = self.ref
        if self.file_name is not None:
            doc["file_name"] = self.file_name
        if self.received_at is not None:
            doc["received_at"] = self.received_at
        return doc

    @staticmethod
    def published_texts(id: str | None, source: str | None, observed_at: str | None) -> dict[str, Any]:
        """The start of :meth:`published`: the free-text fields that are set, in their order."""
        doc: dict[str, Any] = {}
        if id is not None:
            doc["id"] = id
        if source is not None:
            doc["source"] = source
        if observed_at is not None:
            doc["observed_at"] = observed_at
        return doc

    @staticmethod
    def published_plain(id: str | None, source: str | None, observed_at: str | None, ref: str,
                        received_at: float | None) -> dict[str, Any]:
        """:meth:`published` of an origin with no lists, file name or note, without building one
        (intake's plain repeats: one per cache hit)."""
        doc = Origin.published_texts(id, source, observed_at)
        doc["ref"] = ref
        if received_at is not None:
            doc["received_at"] = received_at
        return doc

    @classmethod
    def of_record(cls, fields: Mapping[str, Any], ref: str, file_name: str | None = None, *,
                  received_at: float | None = None, replay: str | None = None) -> "Origin":
        """The origin of a raw record: its validated ``id``, ``source``, ``observed_at``, ``labels``,
        ``tags`` and ``tlp`` (intake's checked fields), where it was read and, for a file event, the name;
        when intake read it, and the replay run that fed it, if one did."""
        get = fields.get  # every accepted record builds one: positional, in field order (0.5 us less per record)
        labels, tags, tlp = get("labels"), get("tags"), get("tlp")
        return cls(ref, get("id"), get("source"), get("observed_at"), tuple(labels) if labels else (),
                   tuple(tags) if tags else (), tuple(tlp) if tlp else (), file_name, received_at, replay)

    @property
    def identity(self) -> str | None:
        """What tells two sightings apart in a summary's event id: ``ref``, else ``id``."""
        return self.ref or self.id

    def seen_value(self, sent: str) -> str:
        """The indicator value as the SIEM sent it (``sent`` is what went to VirusTotal)."""
        return self.as_seen.value if self.as_seen is not None else sent

    def noting(self, seen: SeenAs) -> "Origin":
        """This origin with its URL note, unless one is kept already (intake's note wins)."""
        return self if self.as_seen is not None else replace(self, as_seen=seen)

    @classmethod
    def read(cls, r: FieldReader) -> "Origin":
        seen = r.doc.get("as_seen")
        received = r.number("received_at", None)
        return cls(ref=r.text("ref", None), id=r.text("id", None), source=r.text("source", None),
                   observed_at=r.text("observed_at", None), labels=r.texts("labels"), tags=r.texts("tags"),
                   tlp=r.texts("tlp"), file_name=r.text("file_name", None), received_at=received,
                   replay=r.text("replay", None) or None,
                   as_seen=SeenAs.read(r.nested("as_seen")) if isinstance(seen, dict) else None)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], record: str = "origin") -> "Origin":
        """An origin from its wire form; raises RecordError naming the field at fault."""
        return cls.read(FieldReader(record, dict(doc)))


def read_origin(r: FieldReader, name: str = "origin", *, required: bool = True) -> Origin:
    """The origin in field ``name`` of a record (an absent one is empty unless ``required``)."""
    if not required and r.doc.get(name) is None:
        return Origin()
    return Origin.read(r.nested(name))
