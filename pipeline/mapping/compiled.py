"""JMESPath expressions compiled to Python closures, once, when a mapping file is loaded.

jmespath's ``TreeInterpreter`` walks the parsed tree for every body: a dict
lookup and a method call per node (``Visitor.visit``), and for every function
call a type check that re-reads the signature (``Functions.call_function``).
Over the golden bodies that walk was 36% of ``MappingSet.apply`` (py-spy; mapping
is a quarter of a worker's miss path, bench-results.md, so about 9% of it). Here
each node becomes one closure over its compiled children, built once: apply
takes 0.7x the time. Function arguments are checked against signatures worked
out at compile time; calling ``Functions.call_function`` instead still cost 8%
of apply.

The answers are exactly the interpreter's (``tests/unit/test_mapping_compiled.py``
holds both to every expression of every mapping file on every recorded body):
JMESPath truth, ``==`` that tells ``true`` from ``1``, ordering only between
numbers or strings, projections that drop nulls, pipes that stop them, and
function arguments type-checked as jmespath checks them (a wrong type raises
:class:`~jmespath.exceptions.JMESPathTypeError`). A compiled expression takes
the body and the functions object of the run, whose class it was compiled
against (:func:`compile_expression`).
"""

from __future__ import annotations

import operator
from numbers import Number
from typing import Any, Callable, Sequence

import jmespath
from jmespath.exceptions import ArityError, JMESPathTypeError, UnknownFunctionError, VariadictArityError
from jmespath.functions import REVERSE_TYPES_MAP, TYPES_MAP, Functions

from pipeline.mapping.functions import truthy

#: A compiled expression: (the value searched, the run's functions object) -> the answer.
Compiled = Callable[[Any, Functions], Any]

_ORDERING: dict[str, Callable[[Any, Any], Any]] = {
    "lt": operator.lt, "gt": operator.gt, "lte": operator.le, "gte": operator.ge,
}
#: Nodes that apply their children one after the other, each to the previous answer.
_SEQUENCES = ("subexpression", "index_expression", "pipe")
#: Nodes that answer the value they are given (``@``, and what ``a[*]`` projects).
_IDENTITIES = ("current", "identity")


def compile_expression(source: str, functions: type[Functions]) -> Compiled:
    """Compile ``source``; the compiled form must be called with an instance of ``functions``.

    Raises what ``jmespath.compile`` raises on a bad expression.

    >>> from pipeline.mapping.functions import MappingFunctions
    >>> find = compile_expression("a[?b > `1`].c || 'none'", MappingFunctions)
    >>> find({"a": [{"b": 1, "c": "x"}, {"b": 2, "c": "y"}]}, MappingFunctions()), find({}, MappingFunctions())
    (['y'], 'none')
    """
    return _Compiler(functions).node(jmespath.compile(source).parsed)


class _Expression:
    """The value of ``&expr``, as sort_by, min_by, max_by and map receive it.

    jmespath's functions type-check it by class name and evaluate it with
    ``expref.visit(expref.expression, item)``, so both are kept.
    """

    __slots__ = ("expression", "functions")

    def __init__(self, expression: Compiled, functions: Functions) -> None:
        self.expression, self.functions = expression, functions

    def visit(self, expression: Compiled, value: Any) -> Any:
        return expression(value, self.functions)


def _is_number(value: Any) -> bool:
    """A JSON number: Python's bools are ints, JMESPath's are not."""
    return isinstance(value, Number) and not isinstance(value, bool)


def _equals(x: Any, y: Any) -> Any:
    """JMESPath ``==``: Python's, except that 0 and 1 never equal false and true."""
    if _is_number(x) and x in (0, 1):
        if isinstance(y, bool):
            return False
    elif _is_number(y) and y in (0, 1) and isinstance(x, bool):
        return False
    return x == y


def _is_comparable(value: Any) -> bool:
    """What ``<`` and friends accept (jmespath orders strings too); anything else makes them null."""
    return _is_number(value) or isinstance(value, str)


def _identity(value: Any, funcs: Functions) -> Any:
    return value


def _walk(names: Sequence[str]) -> Compiled:
    """``a.b.c``: dict lookups; a missing key or a non-object on the way answers None."""
    if len(names) == 1:
        name = names[0]

        def field(value: Any, funcs: Functions) -> Any:
            return value.get(name) if isinstance(value, dict) else None
        return field

    def path(value: Any, funcs: Functions) -> Any:
        for name in names:
            if not isinstance(value, dict):
                return None
            value = value.get(name)
        return value
    return path


def _chain(steps: Sequence[Compiled]) -> Compiled:
    """Each step applied to the previous one's answer."""
    if len(steps) == 1:
        return steps[0]

    def chain(value: Any, funcs: Functions) -> Any:
        for step in steps:
            value = step(value, funcs)
        return value
    return chain


def _project(base: Compiled, each: Compiled | None, keep: Compiled | None = None) -> Compiled:
    """``base[*].each``: ``each`` of every item of a list base (``None``: the item), nulls dropped.

    With ``keep`` (``base[?keep].each``), only the items ``keep`` finds true.
    """
    def projection(value: Any, funcs: Functions) -> Any:
        found = base(value, funcs)
        if not isinstance(found, list):
            return None
        out = []
        for item in found:
            if keep is not None and not truthy(keep(item, funcs)):
                continue
            current = item if each is None else each(item, funcs)
            if current is not None:
                out.append(current)
        return out
    return projection


class _Compiler:
    """One method per node type the interpreter knows (``TreeInterpreter.visit_<type>``)."""

    def __init__(self, functions: type[Functions]) -> None:
        self.functions = functions

    def node(self, node: dict[str, Any]) -> Compiled:
        build: Callable[[dict[str, Any]], Compiled] | None = getattr(self, f"_compile_{node['type']}", None)
        if build is None:
            raise NotImplementedError(node["type"])
        return build(node)

    def _children(self, node: dict[str, Any]) -> list[Compiled]:
        return [self.node(child) for child in node["children"]]

    # -- paths and sequences

    def _compile_field(self, node: dict[str, Any]) -> Compiled:
        return _walk((node["value"],))

    def _compile_current(self, node: dict[str, Any]) -> Compiled:
        return _identity

    _compile_identity = _compile_current

    def _compile_sequence(self, node: dict[str, Any]) -> Compiled:
        """``a.b``, ``a[0]``, ``a | b``; runs of field names become one dict walk."""
        steps: list[Compiled] = []
        names: list[str] = []
        for child in _steps(node):
            if child["type"] == "field":
                names.append(child["value"])
            elif child["type"] not in _IDENTITIES:
                if names:
                    steps.append(_walk(tuple(names)))
                    names = []
                steps.append(self.node(child))
        if names:
            steps.append(_walk(tuple(names)))
        return _chain(steps) if steps else _identity

    _compile_subexpression = _compile_index_expression = _compile_pipe = _compile_sequence

    def _compile_index(self, node: dict[str, Any]) -> Compiled:
        position: int = node["value"]

        def index(value: Any, funcs: Functions) -> Any:
            if not isinstance(value, list):
                return None
            try:
                return value[position]
            except IndexError:
                return None
        return index

    def _compile_slice(self, node: dict[str, Any]) -> Compiled:
        cut = slice(*node["children"])  # a zero step raises ValueError on use, as in jmespath

        def slice_(value: Any, funcs: Functions) -> Any:
            return value[cut] if isinstance(value, list) else None
        return slice_

    def _compile_literal(self, node: dict[str, Any]) -> Compiled:
        constant = node["value"]

        def literal(value: Any, funcs: Functions) -> Any:
            return constant
        return literal

    # -- projections

    def _compile_projection(self, node: dict[str, Any]) -> Compiled:
        left, right = node["children"]
        return _project(self.node(left), self._each(right))

    def _compile_value_projection(self, node: dict[str, Any]) -> Compiled:
        left, right = node["children"]
        base = self.node(left)

        def values(value: Any, funcs: Functions) -> Any:
            found = base(value, funcs)
            return list(found.values()) if isinstance(found, dict) else None
        return _project(values, self._each(right))

    def _compile_filter_projection(self, node: dict[str, Any]) -> Compiled:
        left, right, condition = node["children"]
        return _project(self.node(left), self._each(right), self.node(condition))

    def _each(self, node: dict[str, Any]) -> Compiled | None:
        """What a projection applies to each item; None when that is the item itself."""
        return None if node["type"] in _IDENTITIES else self.node(node)

    def _compile_flatten(self, node: dict[str, Any]) -> Compiled:
        (base,) = self._children(node)

        def flatten(value: Any, funcs: Functions) -> Any:
            found = base(value, funcs)
            if not isinstance(found, list):
                return None
            out: list[Any] = []
            for item in found:
                if isinstance(item, list):
                    out.extend(item)
                else:
                    out.append(item)
            return out
        return flatten

    # -- multi-selects

    def _compile_multi_select_list(self, node: dict[str, Any]) -> Compiled:
        parts = self._children(node)

        def select_list(value: Any, funcs: Functions) -> Any:
            if value is None:
                return None
            return [part(value, funcs) for part in parts]
        return select_list

    def _compile_multi_select_dict(self, node: dict[str, Any]) -> Compiled:
        parts = [(child["value"], self.node(child)) for child in node["children"]]

        def select_dict(value: Any, funcs: Functions) -> Any:
            if value is None:
                return None
            return {key: part(value, funcs) for key, part in parts}
        return select_dict

    def _compile_key_val_pair(self, node: dict[str, Any]) -> Compiled:
        return self.node(node["children"][0])

    # -- logic

    def _compile_or_expression(self, node: dict[str, Any]) -> Compiled:
        left, right = self._children(node)

        def either(value: Any, funcs: Functions) -> Any:
            found = left(value, funcs)
            return found if truthy(found) else right(value, funcs)
        return either

    def _compile_and_expression(self, node: dict[str, Any]) -> Compiled:
        left, right = self._children(node)

        def both(value: Any, funcs: Functions) -> Any:
            found = left(value, funcs)
            return right(value, funcs) if truthy(found) else found
        return both

    def _compile_not_expression(self, node: dict[str, Any]) -> Compiled:
        (inner,) = self._children(node)

        def negate(value: Any, funcs: Functions) -> Any:
            found = inner(value, funcs)
            if _is_number(found) and found == 0:
                return False  # 0 is true in JMESPath, so !0 is false
            return not found
        return negate

    def _compile_comparator(self, node: dict[str, Any]) -> Compiled:
        op: str = node["value"]
        left, right = self._children(node)
        if op in ("eq", "ne"):
            return _equality(left, right, op == "ne", _string_literal(node["children"]))
        order = _ORDERING[op]

        def compare(value: Any, funcs: Functions) -> Any:
            x, y = left(value, funcs), right(value, funcs)
            if _is_comparable(x) and _is_comparable(y):
                return order(x, y)  # a string against a number raises TypeError, as in jmespath
            return None
        return compare

    # -- functions

    def _compile_expref(self, node: dict[str, Any]) -> Compiled:
        (inner,) = self._children(node)

        def expref(value: Any, funcs: Functions) -> Any:
            return _Expression(inner, funcs)
        return expref

    def _compile_function_expression(self, node: dict[str, Any]) -> Compiled:
        name: str = node["value"]
        args = self._children(node)
        return _call(name, args, self.functions.FUNCTION_TABLE.get(name))


def _steps(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The children of nested sequence nodes, in order (``(a.b)[0] | c`` -> a, b, [0], c)."""
    out: list[dict[str, Any]] = []
    for child in node["children"]:
        if child["type"] in _SEQUENCES:
            out.extend(_steps(child))
        else:
            out.append(child)
    return out


def _string_literal(operands: list[dict[str, Any]]) -> bool:
    """Whether one side of ``==`` is a string literal: then Python's ``==`` is JMESPath's."""
    return any(o["type"] == "literal" and isinstance(o["value"], str) for o in operands)


def _equality(left: Compiled, right: Compiled, negated: bool, plain: bool) -> Compiled:
    equals = operator.eq if plain else _equals
    if negated:
        def differ(value: Any, funcs: Functions) -> Any:
            return not equals(left(value, funcs), right(value, funcs))
        return differ

    def same(value: Any, funcs: Functions) -> Any:
        return equals(left(value, funcs), right(value, funcs))
    return same


def _call(name: str, args: list[Compiled], spec: dict[str, Any] | None) -> Compiled:
    """A function call: arguments evaluated, then arity and types checked as ``Functions.call_function`` does.

    The checks are built from the signature once (jmespath re-reads it on every
    call); only the first ``len(signature)`` arguments are type-checked, variadic
    or not, as in jmespath.
    """
    if spec is None:
        return _failing(args, lambda: UnknownFunctionError(f"Unknown function: {name}()"))
    function: Callable[..., Any] = spec["function"]
    signature: tuple[dict[str, Any], ...] = spec["signature"]
    if signature and signature[-1].get("variadic"):
        if len(args) < len(signature):
            return _failing(args, lambda: VariadictArityError(len(signature), len(args), name))
    elif len(args) != len(signature):
        return _failing(args, lambda: ArityError(len(signature), len(args), name))
    checks = [(k, _type_check(name, arg["types"])) for k, arg in enumerate(signature) if arg["types"]]

    def call(value: Any, funcs: Functions) -> Any:
        resolved = [arg(value, funcs) for arg in args]
        for k, check_arg in checks:
            check_arg(resolved[k])
        return function(funcs, *resolved)
    return call


def _failing(args: list[Compiled], error: Callable[[], Exception]) -> Compiled:
    """A call jmespath refuses every time, after evaluating its arguments (which may fail first)."""
    def fail(value: Any, funcs: Functions) -> Any:
        for arg in args:
            arg(value, funcs)
        raise error()
    return fail


def _type_check(function: str, types: list[str]) -> Callable[[Any], None]:
    """``Functions._type_check_single`` for one argument, with the allowed class names worked out once.

    jmespath compares class *names* (a bool is not a number); ``array-string``
    also checks the items: all of one allowed kind, chosen by the first item
    when several kinds are allowed.
    """
    allowed: set[str] = set()
    item_kinds: list[tuple[str, ...]] = []
    for kind in types:
        outer, _, inner = kind.partition("-")
        allowed.update(REVERSE_TYPES_MAP[outer])
        if inner:
            item_kinds.append(REVERSE_TYPES_MAP[inner])

    def refuse(current: Any, typename: str) -> JMESPathTypeError:
        return JMESPathTypeError(function, current, typename, types)

    def check(current: Any) -> None:
        typename = type(current).__name__
        if typename not in allowed:
            raise refuse(current, TYPES_MAP.get(typename, "unknown"))
        if not item_kinds:
            return
        if len(item_kinds) == 1:
            kinds = item_kinds[0]
        elif not current:
            return
        else:
            first = type(current[0]).__name__
            for kinds in item_kinds:
                if first in kinds:
                    break
            else:
                raise refuse(current[0], first)
        for item in current:
            if type(item).__name__ not in kinds:
                raise refuse(item, type(item).__name__)
    return check
