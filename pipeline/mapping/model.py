"""The compiled form of a mapping file: frozen rules that evaluate JMESPath against a body.

The loader (:mod:`pipeline.mapping.loader`) builds these once; applying them
(:mod:`pipeline.mapping.apply`) walks them per body. Nothing here reads a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from jmespath.exceptions import JMESPathError

from pipeline.contracts.card import SummaryCard
from pipeline.mapping.compiled import compile_expression
from pipeline.mapping.functions import MappingFunctions, to_string, truthy

STEPS = ("report", "scan")
APIS = ("v2", "v3")
INDICATOR_TYPES = ("ip", "domain", "url", "md5", "sha1", "sha256")

#: Attribute names for the count of items a cap left out (documented in mappings/README.md).
OMITTED_RELATIONS = "VirusTotal Omitted Related Indicators"
OMITTED_ATTRIBUTES = "VirusTotal Omitted Attributes"
#: Summary keys every card carries, whatever the indicator type (ThreatConnect's common fields).



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
    summary: SummaryCard



class Expr:
    """A JMESPath expression, compiled at load time, that answers None instead of raising.

    The run's functions object (see :func:`pipeline.mapping.apply.runner`) carries
    the indicator ``indicator_value()`` answers, so one apply() builds one, not
    one per expression.

    >>> Expr("a.b").search({"a": {"b": 1}}, MappingFunctions()), Expr("a.b").search({"a": [1]}, MappingFunctions())
    (1, None)
    >>> Expr("length(a)").search({"a": 1}, MappingFunctions()) is None  # a number has no length
    True
    """

    __slots__ = ("source", "_compiled")

    def __init__(self, source: str) -> None:
        self.source = source
        self._compiled = compile_expression(source, MappingFunctions)

    def search(self, data: Any, funcs: MappingFunctions) -> Any:
        try:
            return self._compiled(data, funcs)
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

    def eval(self, data: Any, funcs: MappingFunctions) -> Any:
        if self.expr is not None:
            return self.expr.search(data, funcs)
        if self.parts is not None:
            out: list[str] = []
            for part in self.parts:
                if isinstance(part, str):
                    out.append(part)
                    continue
                rendered = part[1](part[0].search(data, funcs))
                if rendered is None or rendered == "":
                    return None  # a template renders only when every placeholder has a value
                out.append(rendered if isinstance(rendered, str) else str(rendered))
            return "".join(out)
        if self.cases is not None:
            for when, value in self.cases:
                if when is None or truthy(when.search(data, funcs)):
                    return value.eval(data, funcs)
            return None
        return self.const


@dataclass(frozen=True)
class AttrRule:
    label: str
    source: Expr | None
    name: Value
    value: Value
    convert: Callable[[Any], Any]

    def produce(self, scope: Any, funcs: MappingFunctions, cap: int) -> tuple[list[tuple[str, str]], int]:
        """(name, value) pairs and how many items the cap left out."""
        items, omitted = walk_items(self.source, scope, funcs, cap)
        pairs: list[tuple[str, str]] = []
        for item in items:
            name = to_string(self.name.eval(item, funcs))
            value = self.convert(self.value.eval(item, funcs))
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


def walk_items(source: Expr | None, scope: Any, funcs: MappingFunctions, cap: int) -> tuple[list[Any], int]:
    """The items a rule walks: the source's list (cut at ``cap``) or its one value."""
    if source is None:
        return [scope], 0
    found = source.search(scope, funcs)
    if found is None:
        return [], 0
    if isinstance(found, list):
        if len(found) > cap:
            return found[:cap], len(found) - cap
        return found, 0
    return [found], 0

