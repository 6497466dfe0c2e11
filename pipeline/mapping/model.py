"""The compiled form of a mapping file: frozen rules that evaluate JMESPath against a body.

The loader (:mod:`pipeline.mapping.loader`) builds these once; applying them
(:mod:`pipeline.mapping.apply`) walks them per body. Nothing here reads a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.visitor import TreeInterpreter

from pipeline.mapping.functions import to_string, truthy

STEPS = ("report", "scan")
APIS = ("v2", "v3")
INDICATOR_TYPES = ("ip", "domain", "url", "md5", "sha1", "sha256")

#: Attribute names for the count of items a cap left out (documented in mappings/README.md).
OMITTED_RELATIONS = "VirusTotal Omitted Related Indicators"
OMITTED_ATTRIBUTES = "VirusTotal Omitted Attributes"
#: Summary keys every card carries, whatever the indicator type (ThreatConnect's common fields).
SUMMARY_BASE = ("found", "positives", "total", "scan_date")



@dataclass(frozen=True)
class AddOptions:
    """What ThreatConnect calls 'adding indicators': applied to every related indicator."""

    tags: tuple[str, ...] = ()
    confidence: int = 50
    rating: float = 3.0
    relation_cap: int = 1000


@dataclass(frozen=True)
class Mapped:
    """The events for one body, and the ThreatConnect card (a payload, not an event)."""

    events: list[dict[str, Any]]
    summary: dict[str, Any]



def plain_path(ast: dict[str, Any]) -> tuple[str, ...] | None:
    """The field names of an expression that is only ``a.b.c`` (or ``@``: no names), else None.

    Seven in ten mapping expressions are such paths; walking them with dict lookups
    instead of the JMESPath interpreter took a third of the mapping's time off the
    miss path (``vtstream bench misses --profile``).

    >>> plain_path(jmespath.compile("data.attributes.country").parsed)
    ('data', 'attributes', 'country')
    >>> plain_path(jmespath.compile("a[0].b").parsed) is None
    True
    """
    kind = ast["type"]
    if kind == "field":
        return (ast["value"],)
    if kind == "current":
        return ()
    if kind == "subexpression":
        names: list[str] = []
        for child in ast["children"]:
            part = plain_path(child)
            if part is None:
                return None
            names.extend(part)
        return tuple(names)
    return None


class Expr:
    """A compiled JMESPath expression that answers None instead of raising.

    Plain field paths are walked with dict lookups (same answers as JMESPath: a
    missing key or a non-object on the way gives None); anything else is evaluated
    by the interpreter of the current mapping run (see :func:`pipeline.mapping.apply.runner`),
    so one apply() builds one interpreter, not one per expression.

    >>> Expr("a.b").search({"a": {"b": 1}}, TreeInterpreter()), Expr("a.b").search({"a": [1]}, TreeInterpreter())
    (1, None)
    """

    __slots__ = ("source", "_ast", "_path")

    def __init__(self, source: str) -> None:
        self.source = source
        self._ast: dict[str, Any] = jmespath.compile(source).parsed
        self._path = plain_path(self._ast)

    def search(self, data: Any, opts: TreeInterpreter) -> Any:
        if self._path is not None:
            for name in self._path:
                if not isinstance(data, dict):
                    return None
                data = data.get(name)
            return data
        try:
            return opts.visit(self._ast, data)
        except (JMESPathError, TypeError, ValueError, AttributeError, KeyError, IndexError,
                ArithmeticError, RecursionError):
            return None


class Value:
    """A compiled value spec: expression, template, constant or first matching case."""

    __slots__ = ("expr", "parts", "const", "cases")

    def __init__(self, *, expr: Expr | None = None,
                 parts: tuple[str | tuple[Expr, Callable[[Any], Any]], ...] | None = None,
                 const: Any = None,
                 cases: tuple[tuple[Expr | None, "Value"], ...] | None = None) -> None:
        self.expr, self.parts, self.const, self.cases = expr, parts, const, cases

    def eval(self, data: Any, opts: TreeInterpreter) -> Any:
        if self.expr is not None:
            return self.expr.search(data, opts)
        if self.parts is not None:
            out: list[str] = []
            for part in self.parts:
                if isinstance(part, str):
                    out.append(part)
                    continue
                rendered = part[1](part[0].search(data, opts))
                if rendered is None or rendered == "":
                    return None  # a template renders only when every placeholder has a value
                out.append(rendered if isinstance(rendered, str) else str(rendered))
            return "".join(out)
        if self.cases is not None:
            for when, value in self.cases:
                if when is None or truthy(when.search(data, opts)):
                    return value.eval(data, opts)
            return None
        return self.const


@dataclass(frozen=True)
class AttrRule:
    label: str
    source: Expr | None
    name: Value
    value: Value
    convert: Callable[[Any], Any]

    def produce(self, scope: Any, opts: TreeInterpreter, cap: int) -> tuple[list[tuple[str, str]], int]:
        """(name, value) pairs and how many items the cap left out."""
        items, omitted = walk_items(self.source, scope, opts, cap)
        pairs: list[tuple[str, str]] = []
        for item in items:
            name = to_string(self.name.eval(item, opts))
            value = self.convert(self.value.eval(item, opts))
            if name and value is not None and value != "":
                pairs.append((name, value if isinstance(value, str) else str(value)))
        return pairs, omitted


@dataclass(frozen=True)
class RelRule:
    label: str
    source: Expr | None
    type: Value
    value: Value
    convert: Callable[[Any], Any]
    attributes: tuple[AttrRule, ...]
    root_attributes: tuple[AttrRule, ...]


@dataclass(frozen=True)
class Report:
    title: Value
    attributes: tuple[AttrRule, ...]


@dataclass(frozen=True)
class SummaryList:
    key: str
    source: Expr
    fields: tuple[tuple[str, Value, Callable[[Any], Any]], ...]


@dataclass(frozen=True)
class Step:
    name: str
    detect: Expr | None
    found: Expr
    error: Expr | None
    attributes: tuple[AttrRule, ...]
    relations: tuple[RelRule, ...]
    reports: tuple[Report, ...]
    summary_fields: tuple[tuple[str, Value, Callable[[Any], Any]], ...]
    summary_lists: tuple[SummaryList, ...]


@dataclass(frozen=True)
class ActionMapping:
    api: str
    action: str
    source: str
    indicator_type: str
    indicator_value: Expr | None
    indicator_type_from: Value | None
    batch: Expr | None
    relationships: tuple[str, ...]
    steps: dict[str, Step] = field(default_factory=dict)


def walk_items(source: Expr | None, scope: Any, opts: TreeInterpreter, cap: int) -> tuple[list[Any], int]:
    """The items a rule walks: the source's list (cut at ``cap``) or its one value."""
    if source is None:
        return [scope], 0
    found = source.search(scope, opts)
    if found is None:
        return [], 0
    if isinstance(found, list):
        if len(found) > cap:
            return found[:cap], len(found) - cap
        return found, 0
    return [found], 0

