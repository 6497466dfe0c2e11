"""Typed access to one decoded record: every failure names the record and the field at fault.

Every contract's reader goes through :class:`FieldReader`, so a malformed record
anywhere raises :class:`~pipeline.errors.RecordError` with the same kind of
message (``malformed vt.lookups record: indicator.type must be a string, not int``).
"""

from __future__ import annotations

from typing import Any

import orjson

from pipeline.contracts.indicator import FileRef, Indicator
from pipeline.errors import RecordError

_MISSING: Any = object()


class FieldReader:
    """Typed access to one decoded record; every failure names the record and the field."""

    __slots__ = ("record", "doc", "prefix")

    def __init__(self, record: str, doc: Any, prefix: str = "") -> None:
        if not isinstance(doc, dict):
            raise RecordError(record, prefix.rstrip(".") or "(record)", f"must be a JSON object, not {kind_of(doc)}")
        self.record, self.doc, self.prefix = record, doc, prefix

    def fault(self, name: str, problem: str) -> RecordError:
        """The error for field ``name`` of this (possibly nested) object."""
        return RecordError(self.record, self.prefix + name, problem)

    @classmethod
    def of(cls, record: str, raw: bytes | None) -> "FieldReader":
        if raw is None:
            raise RecordError(record, "(record)", "is missing (a tombstone)")
        try:
            return cls(record, orjson.loads(raw))
        except orjson.JSONDecodeError as exc:
            raise RecordError(record, "(record)", f"is not JSON ({exc})") from None

    @property
    def version(self) -> int:
        return self.integer("v", 0)

    def _get(self, name: str, default: Any) -> Any:
        value = self.doc.get(name, _MISSING)
        if value is _MISSING or (value is None and default is not _MISSING):
            if default is _MISSING:
                raise self.fault(name, "is missing")
            return default
        return value

    def _fail(self, name: str, expected: str, value: Any) -> RecordError:
        return self.fault(name, f"must be {expected}, not {kind_of(value)}")

    def text(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is not default and not isinstance(value, str):
            raise self._fail(name, "a string", value)
        return value

    def choice(self, name: str, allowed: tuple[str, ...], default: Any = _MISSING) -> Any:
        value = self.text(name, default)
        if value is not default and value not in allowed:
            raise self.fault(name, f"must be one of {', '.join(allowed)}, not {value!r}")
        return value

    def integer(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is not default and (isinstance(value, bool) or not isinstance(value, int)):
            raise self._fail(name, "an integer", value)
        return value

    def boolean(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is not default and not isinstance(value, bool):
            raise self._fail(name, "true or false", value)
        return value

    def number(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._fail(name, "a number", value)
        return float(value)

    def mapping(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is not default and not isinstance(value, dict):
            raise self._fail(name, "an object", value)
        return value

    def texts(self, name: str) -> tuple[str, ...]:
        value = self._get(name, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._fail(name, "a list of strings", value)
        return tuple(value)

    def mappings(self, name: str) -> tuple[dict[str, Any], ...]:
        value = self._get(name, [])
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise self._fail(name, "a list of objects", value)
        return tuple(value)

    def anything(self, name: str) -> Any:
        return self.doc.get(name)

    def nested(self, name: str) -> "FieldReader":
        return FieldReader(self.record, self.mapping(name), f"{self.prefix}{name}.")

    def indicator(self, name: str = "indicator") -> Indicator:
        inner = self.nested(name)
        try:
            return Indicator(inner.text("type"), inner.text("value"))
        except ValueError as exc:
            raise inner.fault("type", str(exc)) from None

    def file(self, name: str = "file") -> FileRef | None:
        if self.doc.get(name) is None:
            return None
        inner = self.nested(name)
        return FileRef(sha256=inner.text("sha256"), size=inner.integer("size"), name=inner.text("name"),
                       content_b64=inner.text("content_b64", None), path=inner.text("path", None))


def kind_of(value: Any) -> str:
    """How a decoded JSON value is named in an error: null, str, int, dict, ..."""
    return "null" if value is None else type(value).__name__


