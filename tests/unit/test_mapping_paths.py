"""Plain field paths in mappings are walked with dict lookups: they must answer exactly as JMESPath does."""

from __future__ import annotations

import json
from typing import Any, Iterator

import jmespath
import pytest
from jmespath.visitor import TreeInterpreter

from _mapping_cases import SAMPLES
from pipeline.mapping.model import Expr, plain_path

pytestmark = pytest.mark.unit


def paths(body: Any, prefix: tuple[str, ...] = (), depth: int = 4) -> Iterator[tuple[str, ...]]:
    """Every key path of ``body`` to ``depth``, and one missing key below each object."""
    if not isinstance(body, dict) or depth == 0:
        return
    yield (*prefix, "no_such_key")
    for name, value in body.items():
        yield (*prefix, name)
        yield (*prefix, name, "below")  # through a string, number, list or null: None
        yield from paths(value, (*prefix, name), depth - 1)


def source(names: tuple[str, ...]) -> str:
    return ".".join(json.dumps(name) for name in names)


def test_every_key_path_of_the_recorded_bodies_answers_as_jmespath() -> None:
    checked = 0
    for sample in sorted(SAMPLES.rglob("*.json")):
        body = json.loads(sample.read_text())
        for names in paths(body):
            expr = Expr(source(names))
            assert expr._path == names
            assert expr.search(body, TreeInterpreter()) == jmespath.search(source(names), body), (sample, names)
            checked += 1
    assert checked > 1000


@pytest.mark.parametrize("text", ["@", "a", "a.b.c", '"x-y".z'])
def test_plain_paths_are_recognised(text: str) -> None:
    assert plain_path(jmespath.compile(text).parsed) is not None


@pytest.mark.parametrize("text", ["a[0]", "a[*].b", "a || b", "length(a)", "a[?b == `1`]", "a.b | c"])
def test_other_expressions_stay_with_the_interpreter(text: str) -> None:
    assert plain_path(jmespath.compile(text).parsed) is None
    assert Expr(text).search({"a": [{"b": 1}], "b": 2}, TreeInterpreter()) == \
        jmespath.search(text, {"a": [{"b": 1}], "b": 2})
