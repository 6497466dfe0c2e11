"""Frozen records built at hot-path speed.

A frozen dataclass's generated ``__init__`` stores every field through
``object.__setattr__``, looked up and called once per field: a cache hit builds
an origin (ten fields), an outcome, a received record and a summary event, and
those stores were a quarter of intake's time per hit (``vtstream bench
hot-path``, bench-results.md). :func:`quick_init` gives such a class an
``__init__`` that stores through the fields' slot descriptors instead, about
twice as fast: the same parameters, defaults and factories, and the same
frozen, slotted object (assigning to a field still raises).
"""

from __future__ import annotations

from dataclasses import MISSING, fields, is_dataclass
from typing import Any, TypeVar

T = TypeVar("T")
_NOTHING: Any = object()


def quick_init(cls: type[T]) -> type[T]:
    """Replace the generated ``__init__`` of a frozen, slotted dataclass (no ``__post_init__``, no
    keyword-only fields) with one that stores through slot descriptors.

    >>> from dataclasses import dataclass, field
    >>> @quick_init
    ... @dataclass(frozen=True, slots=True)
    ... class Point:
    ...     x: int
    ...     y: int = 0
    ...     tags: list[str] = field(default_factory=list)
    >>> Point(1), Point(1, 2, ["a"]) == Point(x=1, y=2, tags=["a"])
    (Point(x=1, y=0, tags=[]), True)
    """
    params = getattr(cls, "__dataclass_params__", None)
    if not is_dataclass(cls) or params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__}: quick_init is for frozen, slotted dataclasses")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: quick_init does not call __post_init__")
    namespace: dict[str, Any] = {"_NOTHING": _NOTHING}
    args: list[str] = []
    body: list[str] = []
    for f in fields(cls):
        if f.kw_only:
            raise TypeError(f"{cls.__name__}.{f.name}: quick_init takes no keyword-only fields")
        namespace[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        if f.default is not MISSING:
            namespace[f"_default_{f.name}"] = f.default
            value = f"_default_{f.name}"
        elif f.default_factory is not MISSING:
            namespace[f"_factory_{f.name}"] = f.default_factory
            value = f"_factory_{f.name}()"
        else:
            value = ""
        if not f.init:
            if value:
                body.append(f"    _set_{f.name}(self, {value})")
            continue
        if not value:
            args.append(f.name)
        elif f.default is not MISSING:
            args.append(f"{f.name}={value}")
        else:  # a factory: called only when no value is given
            args.append(f"{f.name}=_NOTHING")
            body.append(f"    if {f.name} is _NOTHING: {f.name} = {value}")
        body.append(f"    _set_{f.name}(self, {f.name})")
    source = f"def __init__(self, {', '.join(args)}):\n" + "\n".join(body or ["    pass"]) + "\n"
    exec(source, namespace)  # as dataclasses itself builds __init__
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    setattr(cls, "__init__", init)
    return cls
