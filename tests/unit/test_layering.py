"""The shape holds: no module imports a folder above it, and shared shapes are read through their classes.

The floors are those of docs/architecture.md, bottom to top. A folder may import
its own modules and any folder on a lower floor; two folders on one floor never
import each other. Imports inside functions count: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

#: Bottom to top. ``errors`` and ``__init__``/``__main__`` are modules of the package root.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("errors", "topics", "mappings"),
    ("contracts", "settings"),
    ("rules",),
    ("inputs", "observe"),
    ("vt",),
    ("mapping",),
    ("kafka",),
    ("outputs",),
    ("stages",),
    ("app", "replay"),
    ("cli",),
    ("devtools", "__main__"),
)
FLOOR = {part: level for level, parts in enumerate(FLOORS) for part in parts}

#: Field names of the shared shapes (origin, summary card, quota state, run state) that no module
#: outside pipeline/contracts/ may read by string key: a rename must reach every reader through mypy.
SHAPE_FIELDS = frozenset({
    "as_seen", "received_at", "observed_at", "file_name",  # Origin
    "positives", "scan_date", "checked", "cached", "coalesced", "skipped", "sent_as", "redacted", "fetched_at",
    "used_today", "used_month", "blocked_until", "blocked_reason", "by_source", "last_call_at",  # QuotaState
    "vt_requests", "cache_hits",  # RunState
})


#: The command line's own output documents (``status --json``, the replay report): written and read
#: in the one module that defines them, from the typed shapes.
OWN_DOCUMENTS = frozenset({"pipeline/cli/status.py", "pipeline/cli/replay.py"})


def _part(module: str) -> str | None:
    """The folder (floor key) of a module of ours, or None for a library."""
    head, _, rest = module.partition(".")
    if head in ("topics", "mappings"):
        return head
    if head != "pipeline" or not rest:
        return None
    return rest.split(".")[0]


def _modules() -> list[Path]:
    return sorted(p for base in ("pipeline", "topics", "mappings") for p in (ROOT / base).rglob("*.py"))


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


def test_every_folder_has_a_floor() -> None:
    parts = {_part(".".join(p.relative_to(ROOT).with_suffix("").parts)) for p in _modules()}
    assert parts - {None, "__init__"} <= set(FLOOR), f"add to FLOORS and docs/architecture.md: {parts - set(FLOOR)}"


def test_no_module_imports_a_folder_above_it_or_beside_it() -> None:
    wrong = []
    for path in _modules():
        own = _part(".".join(path.relative_to(ROOT).with_suffix("").parts))
        if own is None or own == "__init__":
            continue
        for line, module in _imports(path):
            other = _part(module)
            if other is None or other == own or other == "__init__":
                continue
            if FLOOR[other] >= FLOOR[own]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({own}, floor {FLOOR[own]}) imports {module} "
                             f"({other}, floor {FLOOR[other]})")
    assert not wrong, "\n".join(wrong)


def test_shared_shapes_are_read_through_their_classes() -> None:
    """``x["positives"]`` or ``x.get("used_today")`` outside contracts/ reads a shape by key."""
    wrong = []
    for path in _modules():
        rel = path.relative_to(ROOT)
        if rel.parts[:2] in (("pipeline", "contracts"), ("pipeline", "devtools"), ("pipeline", "vt")):
            continue  # the one reader and writer; VirusTotal's own bodies use some of the same names
        if rel.as_posix() in OWN_DOCUMENTS:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            key = None
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                key = node.slice.value
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                  and node.args and isinstance(node.args[0], ast.Constant)):
                key = node.args[0].value
            if key in SHAPE_FIELDS:
                wrong.append(f"{rel}:{node.lineno} reads {key!r} by key")
    assert not wrong, "\n".join(wrong)


def test_every_logger_is_named_vtstream_folder_module() -> None:
    """``logging.getLogger("vtstream.<folder>.<module>")``: one style, so an operator can raise one
    module's level by the path they read in the source."""
    wrong = []
    for path in _modules():
        rel = path.relative_to(ROOT).with_suffix("")
        expected = "vtstream." + ".".join(rel.parts[1:])
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "getLogger" and node.args):
                continue
            name = node.args[0].value if isinstance(node.args[0], ast.Constant) else ast.unparse(node.args[0])
            ours = not isinstance(node.args[0], ast.Constant) or str(name).startswith("vtstream")
            if ours and name != expected:  # another library's logger ("aiokafka") is named by that library
                wrong.append(f"{rel}:{node.lineno} names its logger {name!r}, not {expected!r}")
    assert not wrong, "\n".join(wrong)


def test_no_two_classes_share_a_name() -> None:
    """One name, one meaning: a class name found twice in pipeline/ reads as one shape where there are two."""
    where: dict[str, list[str]] = {}
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                where.setdefault(node.name, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    shared = {name: places for name, places in where.items() if len(places) > 1}
    assert not shared, "\n".join(f"{name}: {', '.join(places)}" for name, places in sorted(shared.items()))
