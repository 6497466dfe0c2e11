"""Compiled JMESPath (pipeline/mapping/compiled.py) answers exactly as jmespath's interpreter does.

The oracle is ``TreeInterpreter(...).visit(ast, data)`` with the same functions
object. "Exactly" means same types too (``1`` is not ``1.0``, ``true`` is not
``1``), in the same order; where the interpreter raises, the compiled form must
raise an exception of the same class.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Iterator

import jmespath
import pytest
from jmespath.visitor import TreeInterpreter

from tests.support.mapping_cases import MAPPINGS, SAMPLES, Case, all_cases
from pipeline.mapping import AddOptions, MappingSet, map_saved_response
from pipeline.mapping.compiled import Compiled, compile_expression
from pipeline.mapping.functions import MappingFunctions
from pipeline.mapping.loader import compile_dir
from pipeline.mapping.model import ActionMapping, Expr, Value

pytestmark = pytest.mark.unit

RAISES = object()  # expected answer of a case the interpreter refuses


def typed(value: Any) -> Any:
    """A value with every type spelled out, so that 1 == 1.0 == True no longer holds."""
    if isinstance(value, dict):
        return ("object", [(key, typed(item)) for key, item in value.items()])
    if isinstance(value, list):
        return ("array", [typed(item) for item in value])
    return (type(value).__name__, value)


@dataclass(frozen=True)
class Raised:
    error: type[BaseException]


def same(x: Any, y: Any) -> bool:
    """The same answer: identical, or equal with the same types throughout (or the same error class)."""
    return x is y or typed(x) == typed(y)


@functools.cache
def parsed(source: str) -> dict[str, Any]:
    return jmespath.compile(source).parsed


@functools.cache
def compiled_form(source: str) -> Compiled:
    return compile_expression(source, MappingFunctions)


def interpreted(source: str, data: Any, funcs: MappingFunctions) -> Any:
    """The oracle's answer, or Raised(the class of what it raised)."""
    try:
        return TreeInterpreter(jmespath.Options(custom_functions=funcs)).visit(parsed(source), data)
    except Exception as exc:  # any failure is an answer to compare
        return Raised(type(exc))


def compiled(source: str, data: Any, funcs: MappingFunctions) -> Any:
    try:
        return compiled_form(source)(data, funcs)
    except Exception as exc:
        return Raised(type(exc))


def agree(source: str, data: Any, funcs: MappingFunctions) -> bool:
    return same(compiled(source, data, funcs), interpreted(source, data, funcs))


# ---------------------------------------------------------------- every mapping expression on real bodies

def expressions(node: Any) -> Iterator[Expr]:
    """Every expression in a loaded mapping (rules, values, templates, cases)."""
    if isinstance(node, Expr):
        yield node
    elif isinstance(node, Value):
        for slot in Value.__slots__:
            yield from expressions(getattr(node, slot))
    elif is_dataclass(node):
        for f in fields(node):
            yield from expressions(getattr(node, f.name))
    elif isinstance(node, (tuple, list)):
        for item in node:
            yield from expressions(item)
    elif isinstance(node, dict):
        for item in node.values():
            yield from expressions(item)


def shape(value: Any) -> Any:
    """Items of one list mostly share their keys: a few of each shape cover them."""
    return tuple(sorted(value)) if isinstance(value, dict) else type(value).__name__


class Walked:
    """What mapping every golden case (with no cap) hands to expressions: (source, data, functions) calls."""

    def __init__(self, mappings: MappingSet, cases: list[Case]) -> None:
        self.calls: dict[tuple[str, int], tuple[Any, MappingFunctions]] = {}
        self.bodies: list[Any] = []
        search = Expr.search

        def record(expr: Expr, data: Any, funcs: MappingFunctions) -> Any:
            self.calls.setdefault((expr.source, id(data)), (data, funcs))  # keeps data alive: ids stay unique
            return search(expr, data, funcs)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Expr, "search", record)
            for case in cases:
                body = case.body()
                self.bodies.append(body)
                map_saved_response(mappings, case.api, case.action, body, AddOptions(relation_cap=10**6),
                                   indicator=case.indicator(body, mappings))

    def scopes(self, per_shape: int = 3) -> list[Any]:
        """Every body, and a few of each shape of the items rules walk and of the bodies' inner objects."""
        out = list(self.bodies)
        seen: dict[Any, int] = {}
        inner = [data for data, _funcs in self.calls.values()]
        for value in [*inner, *(sub for body in self.bodies for sub in containers(body))]:
            key = shape(value)
            if seen.get(key, 0) < per_shape:
                seen[key] = seen.get(key, 0) + 1
                out.append(value)
        return out


def containers(value: Any) -> Iterator[Any]:
    """The objects and lists inside a body (not the body itself)."""
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        if isinstance(child, (dict, list)):
            yield child
            yield from containers(child)


@pytest.fixture(scope="module")
def loaded() -> dict[tuple[str, str], ActionMapping]:
    return compile_dir(MAPPINGS)


@pytest.fixture(scope="module")
def walked(loaded: dict[tuple[str, str], ActionMapping]) -> Walked:
    return Walked(MappingSet(loaded), all_cases())


@pytest.fixture(scope="module")
def sources(loaded: dict[tuple[str, str], ActionMapping]) -> list[str]:
    found = {e.source for m in loaded.values() for e in expressions(m)}
    assert len(found) > 200
    return sorted(found)


def test_every_call_mapping_the_golden_cases_makes_answers_as_the_interpreter(walked: Walked) -> None:
    assert len(walked.calls) > 10_000
    wrong = [(source, data) for (source, _), (data, funcs) in walked.calls.items() if not agree(source, data, funcs)]
    assert not wrong, wrong[:3]


def test_every_mapping_expression_answers_as_the_interpreter_on_every_body_and_walked_item(
        walked: Walked, sources: list[str]) -> None:
    funcs = MappingFunctions("1.1.1.1")
    scopes = walked.scopes()
    assert len(scopes) > 300
    wrong = [(source, data) for source in sources for data in scopes if not agree(source, data, funcs)]
    assert not wrong, wrong[:3]


def key_paths(body: Any, prefix: tuple[str, ...] = (), depth: int = 4) -> Iterator[tuple[str, ...]]:
    """Every key path of ``body`` to ``depth``, one missing key below each object, one step past each leaf."""
    if not isinstance(body, dict) or depth == 0:
        return
    yield (*prefix, "no_such_key")
    for name, value in body.items():
        yield (*prefix, name)
        yield (*prefix, name, "below")  # through a string, number, list or null: None
        yield from key_paths(value, (*prefix, name), depth - 1)


def test_every_key_path_of_the_recorded_bodies_answers_as_the_interpreter() -> None:
    funcs = MappingFunctions()
    checked = 0
    for sample in sorted(SAMPLES.rglob("*.json")):
        body = json.loads(sample.read_text(encoding="utf-8"))
        for names in key_paths(body):
            source = ".".join(json.dumps(name) for name in names)
            assert agree(source, body, funcs), (sample, source)
            checked += 1
    assert checked > 1000


# ---------------------------------------------------------------- each node type and the tricky semantics

ITEMS = {"a": [{"b": 1, "c": "x"}, {"b": 2, "c": "y"}, {"c": "z"}, {"b": None}, {"b": False, "c": "f"}, 7]}
TRUTHS = {"a": [{"b": 0}, {"b": ""}, {"b": []}, {"b": {}}, {"b": False}, {"b": None}, {"b": "x"}, {"b": [0]}]}

CASES: list[tuple[str, Any, Any]] = [
    # field, subexpression, current, identity
    ("a", {"a": 1}, 1),
    ("a", [{"a": 1}], None),
    ("a.b", {"a": "text"}, None),
    ("a.b.c", {"a": {"b": {"c": False}}}, False),
    ('"x-y".z', {"x-y": {"z": 2}}, 2),
    ("@", 5, 5),
    ("@.a", {"a": 1}, 1),
    ("a.@", {"a": 1}, RAISES),  # not JMESPath: jmespath.compile refuses it
    # index, negative index, index_expression
    ("[0]", [1, 2], 1),
    ("[-1]", [1, 2, 3], 3),
    ("[5]", [1], None),
    ("[-5]", [1], None),
    ("[0]", "abc", None),
    ("a[0]", {"a": {"0": 1}}, None),
    ("a[0][1]", {"a": [[1, 2]]}, 2),
    ("a[0].b", {"a": [{"b": 3}]}, 3),
    # slices (projected)
    ("[1:3]", [0, 1, 2, 3], [1, 2]),
    ("[::-1]", [1, 2, 3], [3, 2, 1]),
    ("[::2]", [0, 1, 2, 3, 4], [0, 2, 4]),
    ("[-2:]", [1, 2, 3], [2, 3]),
    ("[1::-1]", [1, 2, 3], [2, 1]),
    ("[:]", "abc", None),
    ("[::0]", [1], RAISES),
    ("a[1:].b", {"a": [{"b": 1}, {"b": 2}, {}]}, [2]),
    # projections drop nulls; a non-list base gives null
    ("a[*].b", ITEMS, [1, 2, False]),
    ("a[*].b", {"a": {"b": 1}}, None),
    ("a[*]", {"a": [1, None, 2]}, [1, 2]),
    ("a[*].b[0]", {"a": [{"b": [1]}, {"b": []}]}, [1]),
    ("a[*].b[*].c", {"a": [{"b": [{"c": 1}, {"c": 2}]}, {"b": [{"c": 3}]}, {"b": 1}]}, [[1, 2], [3]]),
    ("*.b", {"x": {"b": 1}, "y": {"b": None}, "z": 3}, [1]),
    ("*", [1], None),
    ("*.*", {"x": {"y": 1}}, [[1]]),
    # flatten
    ("a[]", {"a": [[1, [2]], 3, [4]]}, [1, [2], 3, 4]),
    ("a[][]", {"a": [[1, [2]], 3]}, [1, 2, 3]),
    ("a[].b", {"a": [[{"b": 1}], {"b": 2}, [None]]}, [1, 2]),
    ("a[]", {"a": {"b": 1}}, None),
    ("[a, b][]", {"a": [1], "b": 2}, [1, 2]),
    # pipe stops a projection
    ("a[*].b[0]", {"a": [{"b": [1]}, {"b": [2]}]}, [1, 2]),
    ("a[*].b | [0]", {"a": [{"b": [1]}, {"b": [2]}]}, [1]),
    ("a | b", {"a": {"b": 3}}, 3),
    ("a[].b | length(@)", {"a": [{"b": 1}, {"b": 2}]}, 2),
    # filters and truthiness
    ("a[?b]", TRUTHS, [{"b": 0}, {"b": "x"}, {"b": [0]}]),  # 0 is true
    ("a[?b].b", {"a": [{"b": 0}, {"b": ""}]}, [0]),
    ("a[?!b]", TRUTHS, [{"b": ""}, {"b": []}, {"b": {}}, {"b": False}, {"b": None}]),
    ("a[?b > `1`].c", ITEMS, ["y"]),
    ("a[?b == `1`].c", {"a": [{"b": 1, "c": "x"}, {"b": True, "c": "y"}, {"b": 1.0, "c": "z"}]}, ["x", "z"]),
    ("a[?c == 'z']", ITEMS, [{"c": "z"}]),
    ("[?@]", [0, None, 1, "", [], False], [0, 1]),
    ("a[?b > `1`]", {"a": [{"b": 2}, {"b": "3"}]}, RAISES),  # a string against a number
    ("a[?b]", {"a": {"b": 1}}, None),
    # comparators: JSON equality, ordering on numbers and strings only
    ("`1` == `1.0`", None, True),
    ("`true` == `1`", None, False),
    ("`0` == `false`", None, False),
    ("`false` != `0`", None, True),
    ("`2` == `true`", None, False),
    ("`[1]` == `[true]`", None, True),  # only the top level tells booleans from 0 and 1
    ("a == b", {"a": {"x": [1]}, "b": {"x": [1]}}, True),
    ("`null` == a", {}, True),
    ("a == 'x'", {"a": "x"}, True),
    ("'x' != a", {"a": "x"}, False),
    ("a == `1`", {"a": True}, False),
    ("a != `1`", {"a": 1.0}, False),
    ("a < b", {"a": 1, "b": 2}, True),
    ("a < b", {"a": "a", "b": "b"}, True),
    ("a < b", {"a": 1, "b": "2"}, RAISES),
    ("a < b", {"a": True, "b": 2}, None),
    ("a < b", {"a": None, "b": 1}, None),
    ("a < b", {"a": [1], "b": [2]}, None),
    ("a >= b", {"a": 2.5, "b": 2}, True),
    ("a <= b", {"a": 2, "b": 2}, True),
    ("a > b", {"a": 2, "b": 2}, False),
    # or, and, not
    ("a || b", {"a": [], "b": 2}, 2),
    ("a || b", {"a": 0, "b": 2}, 0),
    ("a || b", {"a": "", "b": None}, None),
    ("a || b", {"a": {}, "b": False}, False),
    ("a && b", {"a": [], "b": 2}, []),
    ("a && b", {"a": 0, "b": 2}, 2),
    ("a && b", {"a": "x", "b": None}, None),
    ("a && b || c", {"a": 1, "c": 3}, 3),
    ("!a", {"a": 0}, False),
    ("!a", {"a": 0.0}, False),
    ("!a", {"a": []}, True),
    ("!a", {"a": "x"}, False),
    ("!a", {}, True),
    ("!a", {"a": False}, True),
    ("!!a", {"a": {}}, False),
    # multi-selects, literals
    ("[a, b]", {"a": 1}, [1, None]),
    ("[a, b]", None, None),
    ("a.[b, c]", {"a": None}, None),
    ("a.[b]", {"a": 5}, [None]),
    ("{x: a, y: b}", {"a": 1}, {"x": 1, "y": None}),
    ("{x: a}", None, None),
    ("{x: a, x: b}", {"a": 1, "b": 2}, {"x": 2}),
    ("a[*].{n: b}", {"a": [{"b": 1}, 2]}, [{"n": 1}, {"n": None}]),
    ('`{"a": [1, 2.0]}`', None, {"a": [1, 2.0]}),
    ("'raw'", None, "raw"),
    # functions: answers, and type errors
    ("length(a)", {"a": "abc"}, 3),
    ("length(a)", {"a": {"x": 1}}, 1),
    ("length(a)", {"a": 1}, RAISES),
    ("length(a)", {"a": True}, RAISES),
    ("length(a)", {}, RAISES),
    ("length(a, b)", {}, RAISES),
    ("no_such_function(a)", {}, RAISES),
    ("join(', ', a)", {"a": ["x", "y"]}, "x, y"),
    ("join(', ', a)", {"a": []}, ""),
    ("join(', ', a)", {"a": ["x", 1]}, RAISES),
    ("join(`1`, a)", {"a": ["x"]}, RAISES),
    ("sum(a)", {"a": [1, 2.5]}, 3.5),
    ("sum(a)", {"a": [1, 2]}, 3),
    ("sum(a)", {"a": []}, 0),
    ("sum(a)", {"a": [1, True]}, RAISES),
    ("sum(values(@))", {"x": 1, "y": 2}, 3),
    ("avg(a)", {"a": [1, 3]}, 2.0),
    ("avg(a)", {"a": []}, None),
    ("max(a)", {"a": ["b", "a"]}, "b"),
    ("max(a)", {"a": [1, "a"]}, RAISES),
    ("max(a)", {"a": []}, None),
    ("min(a)", {"a": [3, 1]}, 1),
    ("sort(a)", {"a": ["b", "a"]}, ["a", "b"]),
    ("values(a)", {"a": {"x": 1}}, [1]),
    ("values(a)", {"a": [1]}, RAISES),
    ("keys(@)", {"x": 1}, ["x"]),
    ("type(a)", {"a": True}, "boolean"),
    ("type(a)", {"a": 1.5}, "number"),
    ("type(@)", None, "null"),
    ("type(&a)", {}, None),
    ("[type(a), type(b), type(c)]", {"a": [], "b": {}, "c": "s"}, ["array", "object", "string"]),
    ("to_string(a)", {"a": [1, "x"]}, '[1,"x"]'),
    ("to_string(a)", {"a": "x"}, "x"),
    ("to_string(a)", {}, "null"),
    ("to_number(a)", {"a": "1.5"}, 1.5),
    ("to_number(a)", {"a": "7"}, 7),
    ("to_number(a)", {"a": "x"}, None),
    ("to_number(a)", {"a": True}, None),
    ("to_array(a)", {"a": 1}, [1]),
    ("contains(a, 'x')", {"a": ["x"]}, True),
    ("contains(a, 'x')", {"a": "axb"}, True),
    ("contains(a, 'x')", {"a": 1}, RAISES),
    ("starts_with(a, 'x')", {"a": "xy"}, True),
    ("ends_with(a, `1`)", {"a": "xy"}, RAISES),
    ("reverse(a)", {"a": "abc"}, "cba"),
    ("reverse(a)", {"a": [1, 2]}, [2, 1]),
    ("abs(a)", {"a": -1}, 1),
    ("abs(a)", {"a": "1"}, RAISES),
    ("ceil(`1.5`)", None, 2),
    ("floor(`1.5`)", None, 1),
    ("not_null(a, b, 'z')", {"b": 2}, 2),
    ("not_null(a)", {}, None),
    ("not_null()", {}, RAISES),
    ("merge(a, b)", {"a": {"x": 1}, "b": {"x": 2, "y": 3}}, {"x": 2, "y": 3}),
    ("merge(a, b)", {"a": {}, "b": 1}, RAISES),  # only the first argument is type-checked; update() fails
    ("merge(a)", {"a": 1}, RAISES),
    # exprefs
    ("map(&b, a)", {"a": [{"b": 1}, {}]}, [1, None]),
    ("map(&b, a)", {"a": {"b": 1}}, RAISES),
    ("sort_by(a, &b)[*].b", {"a": [{"b": 2}, {"b": 1}]}, [1, 2]),
    ("sort_by(a, &b)", {"a": [{"b": 1}, {"b": "x"}]}, RAISES),
    ("sort_by(a, &b)", {"a": [{"b": True}]}, RAISES),
    ("sort_by(a, &b)", {"a": []}, []),
    ("max_by(a, &b).c", ITEMS | {"a": ITEMS["a"][:2]}, "y"),
    ("min_by(a, &b)", {"a": []}, None),
    ("min_by(a, &b)", {"a": [{"b": None}]}, RAISES),
    ("map(&[b, c], a)", {"a": [{"b": 1}]}, [[1, None]]),
    ("length(&a)", {}, RAISES),
    # the mapping functions
    ("entries(@)", {"k": 1}, [{"key": "k", "value": 1}]),
    ("entries(@)", [1], None),
    ("entries(@)[?value > `1`].key", {"x": 1, "y": 2}, ["y"]),
    ("indicator_value()", None, "8.8.8.8"),
    ("indicator_value(a)", {}, RAISES),
    ("strip_suffix(id, indicator_value())", {"id": "1.2.3.48.8.8.8"}, "1.2.3.4"),
    ("strip_prefix(id, indicator_value())", {"id": "1.2.3.4"}, None),
    ("is_global_ip(@)", "8.8.8.8", True),
    ("is_global_ip(@)", "10.0.0.1", False),
    ("is_ip(@)", "x", False),
    ("replace(key, '_!_', '.')", {"key": "a_!_b"}, "a.b"),
    ("flatten_tree(a, 'c')[*].n", {"a": [{"n": 1, "c": [{"n": 2}]}, {"n": 3}]}, [1, 2, 3]),
    ("unique(a)", {"a": [1, 1, {"x": 1}, {"x": 1}]}, [1, {"x": 1}]),
    ("length(to_string(a || b || '')) == `2`", {"b": "xy"}, True),
]


@pytest.mark.parametrize(("source", "data", "expected"), CASES, ids=[c[0] for c in CASES])
def test_node_types_and_semantics(source: str, data: Any, expected: Any) -> None:
    funcs = MappingFunctions("8.8.8.8")
    want = interpreted(source, data, funcs)
    if expected is RAISES:
        assert isinstance(want, Raised), f"the interpreter answers {want!r}"
    else:
        assert same(want, expected), f"the table disagrees with the interpreter, which answers {want!r}"
    assert same(compiled(source, data, funcs), want)


@pytest.mark.parametrize(("source", "data"), [
    ("length(a)", {"a": 1}), ("join(', ', a)", {"a": [1]}), ("a < b", {"a": 1, "b": "x"}),
    ("[::0]", [1]), ("no_such_function(@)", {}), ("merge(a, b)", {"a": {}, "b": 1}),
])
def test_a_search_that_fails_answers_none(source: str, data: Any) -> None:
    assert Expr(source).search(data, MappingFunctions()) is None


def test_an_expref_is_a_function_argument_jmespath_recognises() -> None:
    funcs = MappingFunctions()
    ref = compile_expression("&a.b", MappingFunctions)(None, funcs)
    assert funcs.call_function("map", [ref, [{"a": {"b": 1}}, {}]]) == [1, None]
