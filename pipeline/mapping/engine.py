"""The mapping engine: VirusTotal bodies -> attribute / relation / report events + a summary card.

What to emit lives in ``mappings/<api>/<action>.yaml`` (format: ``mappings/README.md``);
this module only loads, validates and applies those files, so no VirusTotal field
name appears here. Files are validated once at load (JSON Schema, then every
JMESPath expression and template is compiled); a bad file stops the worker with
a :class:`~pipeline.errors.ConfigError` naming the file, the rule and the problem.
Applying is a pure function of the body and never raises on odd input: an
expression that fails yields nothing, lists are cut at ``relation_cap`` *before*
events are built, and the cut is reported as a count.

>>> from mappings import MAPPINGS_DIR
>>> m = load_mappings(MAPPINGS_DIR)
>>> out = m.apply("v2", "submit_ip", "report", {"response_code": 1, "asn": 15169},
...               indicator={"type": "ip", "value": "8.8.8.8"}, options=AddOptions())
>>> [e["attribute"] for e in out.events]
[{'name': 'VirusTotal ASN', 'value': '15169'}]
>>> out.summary["found"], out.summary["asn"]
(True, '15169')
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import jmespath
import jsonschema
import orjson
import yaml
from jmespath.exceptions import JMESPathError
from jmespath.visitor import TreeInterpreter

from pipeline.errors import ConfigError
from pipeline.events import make_event
from pipeline.mapping.functions import CONVERTERS, MappingFunctions, to_string, truthy

STEPS = ("report", "scan")
APIS = ("v2", "v3")
INDICATOR_TYPES = ("ip", "domain", "url", "md5", "sha1", "sha256")

#: Attribute names for the count of items a cap left out (documented in mappings/README.md).
OMITTED_RELATIONS = "VirusTotal Omitted Related Indicators"
OMITTED_ATTRIBUTES = "VirusTotal Omitted Attributes"
#: Summary keys every card carries, whatever the indicator type (ThreatConnect's common fields).
SUMMARY_BASE = ("found", "positives", "total", "scan_date")

SCHEMA_FILE = "schema.json"
#: libyaml's loader when PyYAML was built with it (several times faster), else the pure one.
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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


# ------------------------------------------------------------ compiled pieces

class _Expr:
    """A compiled JMESPath expression that answers None instead of raising.

    It is evaluated by the interpreter of the current mapping run (see ``_runner``),
    so one apply() builds one interpreter, not one per expression.
    """

    __slots__ = ("source", "_ast")

    def __init__(self, source: str) -> None:
        self.source = source
        self._ast: dict[str, Any] = jmespath.compile(source).parsed

    def search(self, data: Any, opts: TreeInterpreter) -> Any:
        try:
            return opts.visit(self._ast, data)
        except (JMESPathError, TypeError, ValueError, AttributeError, KeyError, IndexError,
                ArithmeticError, RecursionError):
            return None


class _Value:
    """A compiled value spec: expression, template, constant or first matching case."""

    __slots__ = ("expr", "parts", "const", "cases")

    def __init__(self, *, expr: _Expr | None = None,
                 parts: tuple[str | tuple[_Expr, Callable[[Any], Any]], ...] | None = None,
                 const: Any = None,
                 cases: tuple[tuple[_Expr | None, "_Value"], ...] | None = None) -> None:
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
class _AttrRule:
    label: str
    source: _Expr | None
    name: _Value
    value: _Value
    convert: Callable[[Any], Any]

    def produce(self, scope: Any, opts: TreeInterpreter, cap: int) -> tuple[list[tuple[str, str]], int]:
        """(name, value) pairs and how many items the cap left out."""
        items, omitted = _items(self.source, scope, opts, cap)
        pairs: list[tuple[str, str]] = []
        for item in items:
            name = to_string(self.name.eval(item, opts))
            value = self.convert(self.value.eval(item, opts))
            if name and value is not None and value != "":
                pairs.append((name, value if isinstance(value, str) else str(value)))
        return pairs, omitted


@dataclass(frozen=True)
class _RelRule:
    label: str
    source: _Expr | None
    type: _Value
    value: _Value
    convert: Callable[[Any], Any]
    attributes: tuple[_AttrRule, ...]
    root_attributes: tuple[_AttrRule, ...]


@dataclass(frozen=True)
class _Report:
    title: _Value
    attributes: tuple[_AttrRule, ...]


@dataclass(frozen=True)
class _SummaryList:
    key: str
    source: _Expr
    fields: tuple[tuple[str, _Value, Callable[[Any], Any]], ...]


@dataclass(frozen=True)
class _Step:
    name: str
    detect: _Expr | None
    found: _Expr
    error: _Expr | None
    attributes: tuple[_AttrRule, ...]
    relations: tuple[_RelRule, ...]
    reports: tuple[_Report, ...]
    summary_fields: tuple[tuple[str, _Value, Callable[[Any], Any]], ...]
    summary_lists: tuple[_SummaryList, ...]


@dataclass(frozen=True)
class _ActionMapping:
    api: str
    action: str
    source: str
    indicator_type: str
    indicator_value: _Expr | None
    indicator_type_from: _Value | None
    batch: _Expr | None
    relationships: tuple[str, ...]
    steps: dict[str, _Step] = field(default_factory=dict)


def _items(source: _Expr | None, scope: Any, opts: TreeInterpreter, cap: int) -> tuple[list[Any], int]:
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


# ------------------------------------------------------------------- loading

def _schema(directory: Path) -> dict[str, Any]:
    path = directory / SCHEMA_FILE
    try:
        loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{_show(directory, path)}: cannot read the mapping schema: {exc}") from None
    return loaded


def _show(directory: Path, path: Path) -> str:
    """A file name as people see it: 'mappings/v3/submit_ip.yaml'."""
    try:
        return f"{directory.name}/{path.relative_to(directory).as_posix()}"
    except ValueError:
        return str(path)


class _Loader:
    """Compiles one mapping file; every error names the file and the rule."""

    _TEMPLATE_CONV = re.compile(r"^(.*?)\s*!\s*([a-z]+)\s*$", re.S)

    def __init__(self, shown: str) -> None:
        self.shown = shown

    def fail(self, where: str, label: str | None, problem: str) -> ConfigError:
        named = f" ({label!r})" if label else ""
        return ConfigError(f"{self.shown}: rule {where}{named}: {problem}")

    # -- small parts

    def expr(self, source: str, where: str, label: str | None) -> _Expr:
        try:
            return _Expr(source)
        except JMESPathError as exc:
            problem = str(exc).replace("\n", " ")
            raise self.fail(where, label, f"bad JMESPath expression {source!r}: {problem}") from None

    def convert(self, name: str | None, where: str, label: str | None) -> Callable[[Any], Any]:
        if name is None:
            return CONVERTERS["string"]
        if name not in CONVERTERS:
            raise self.fail(where, label, f"unknown converter {name!r}; use one of {sorted(CONVERTERS)}")
        return CONVERTERS[name]

    def template(self, text: str, where: str, label: str | None) -> _Value:
        """Compile 'text with {expression} or {expression !converter} placeholders'."""
        parts: list[str | tuple[_Expr, Callable[[Any], Any]]] = []
        literal: list[str] = []
        i, n = 0, len(text)
        while i < n:
            ch = text[i]
            if ch in "{}" and i + 1 < n and text[i + 1] == ch:
                literal.append(ch)
                i += 2
                continue
            if ch == "}":
                raise self.fail(where, label, f"template {text!r}: unmatched '}}' (write '}}}}' for a brace)")
            if ch != "{":
                literal.append(ch)
                i += 1
                continue
            end = _closing_brace(text, i)
            if end < 0:
                raise self.fail(where, label, f"template {text!r}: unclosed '{{'")
            inner = text[i + 1:end].strip()
            if not inner:
                raise self.fail(where, label, f"template {text!r}: empty placeholder")
            conv_name = None
            m = self._TEMPLATE_CONV.match(inner)
            if m and m.group(2) in CONVERTERS:
                inner, conv_name = m.group(1), m.group(2)
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append((self.expr(inner, where, label), self.convert(conv_name, where, label)))
            i = end + 1
        if literal:
            parts.append("".join(literal))
        if all(isinstance(p, str) for p in parts):
            return _Value(const="".join(p for p in parts if isinstance(p, str)))
        return _Value(parts=tuple(parts))

    def value(self, spec: Any, where: str, label: str | None, *, text: bool) -> _Value:
        """A value spec; a bare string is a template for names (``text``) and an expression otherwise."""
        if isinstance(spec, str):
            return self.template(spec, where, label) if text else _Value(expr=self.expr(spec, where, label))
        if "expr" in spec:
            return _Value(expr=self.expr(spec["expr"], where, label))
        if "template" in spec:
            return self.template(spec["template"], where, label)
        if "const" in spec:
            return _Value(const=spec["const"])
        cases: list[tuple[_Expr | None, _Value]] = []
        for k, case in enumerate(spec["cases"]):
            when = self.expr(case["when"], f"{where}.cases[{k}]", label) if "when" in case else None
            body = {key: v for key, v in case.items() if key != "when"}
            cases.append((when, self.value(body, f"{where}.cases[{k}]", label, text=text)))
        return _Value(cases=tuple(cases))

    # -- rules

    def attr_rule(self, raw: dict[str, Any], where: str) -> _AttrRule:
        label = raw.get("label") or (raw["name"] if isinstance(raw["name"], str) else None)
        source = self.expr(raw["from"], where, label) if "from" in raw else None
        return _AttrRule(
            label=label or where,
            source=source,
            name=self.value(raw["name"], f"{where}.name", label, text=True),
            value=self.value(raw.get("value", "@"), f"{where}.value", label, text=False),
            convert=self.convert(raw.get("as"), where, label),
        )

    def rel_rule(self, raw: dict[str, Any], where: str) -> _RelRule:
        label = raw.get("label") or (f"{raw['type']} from {raw['from']}" if isinstance(raw["type"], str)
                                     and "from" in raw else None)
        return _RelRule(
            label=label or where,
            source=self.expr(raw["from"], where, label) if "from" in raw else None,
            type=self.value(raw["type"], f"{where}.type", label, text=True),
            value=self.value(raw.get("value", "@"), f"{where}.value", label, text=False),
            convert=self.convert(raw.get("as"), where, label),
            attributes=tuple(self.attr_rule(a, f"{where}.attributes[{k}]")
                             for k, a in enumerate(raw.get("attributes", ()))),
            root_attributes=tuple(self.attr_rule(a, f"{where}.root_attributes[{k}]")
                                  for k, a in enumerate(raw.get("root_attributes", ()))),
        )

    def step(self, name: str, raw: dict[str, Any]) -> _Step:
        w = name
        fields: list[tuple[str, _Value, Callable[[Any], Any]]] = []
        lists: list[_SummaryList] = []
        for key, spec in (raw.get("summary") or {}).items():
            where = f"{w}.summary.{key}"
            if isinstance(spec, dict) and "fields" in spec:
                lists.append(_SummaryList(
                    key=key, source=self.expr(spec["from"], where, key),
                    fields=tuple((fk, self.value(_value_part(fs), f"{where}.fields.{fk}", key, text=False),
                                  self.convert(_as_part(fs), f"{where}.fields.{fk}", key))
                                 for fk, fs in spec["fields"].items())))
            else:
                fields.append((key, self.value(_value_part(spec), where, key, text=False),
                               self.convert(_as_part(spec), where, key)))
        return _Step(
            name=name,
            detect=self.expr(raw["detect"], f"{w}.detect", None) if "detect" in raw else None,
            found=self.expr(raw["found"], f"{w}.found", None),
            error=self.expr(raw["error"], f"{w}.error", None) if "error" in raw else None,
            attributes=tuple(self.attr_rule(a, f"{w}.attributes[{k}]")
                             for k, a in enumerate(raw.get("attributes", ()))),
            relations=tuple(self.rel_rule(r, f"{w}.relations[{k}]")
                            for k, r in enumerate(raw.get("relations", ()))),
            reports=tuple(_Report(
                title=self.value(r["title"], f"{w}.reports[{k}].title", None, text=True),
                attributes=tuple(self.attr_rule(a, f"{w}.reports[{k}].attributes[{j}]")
                                 for j, a in enumerate(r.get("attributes", ()))))
                for k, r in enumerate(raw.get("reports", ()))),
            summary_fields=tuple(fields),
            summary_lists=tuple(lists),
        )


def _value_part(spec: Any) -> Any:
    """Summary fields are ``expr`` or ``{value: spec, as: converter}``."""
    return spec.get("value", "@") if isinstance(spec, dict) and ("as" in spec or "value" in spec) else spec


def _as_part(spec: Any) -> str | None:
    return spec.get("as") if isinstance(spec, dict) else None


def _closing_brace(text: str, start: int) -> int:
    """Index of the brace closing ``text[start]``, skipping JMESPath quotes and nested braces."""
    depth, quote = 0, ""
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if ch == "\\":
                continue
            if ch == quote:
                quote = ""
        elif ch in "'`\"":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _flatten_rules(raw: Any) -> Any:
    """Rule lists may nest (YAML anchors pasted into a list); flatten them before validation."""
    if isinstance(raw, dict):
        out = {}
        for key, value in raw.items():
            if key in ("attributes", "relations", "reports", "root_attributes") and isinstance(value, list):
                flat: list[Any] = []
                stack = list(reversed(value))
                while stack:
                    item = stack.pop()
                    if isinstance(item, list):
                        stack.extend(reversed(item))
                    else:
                        flat.append(item)
                value = flat
            out[key] = _flatten_rules(value)
        return out
    if isinstance(raw, list):
        return [_flatten_rules(v) for v in raw]
    return raw


def _read_yaml(directory: Path, path: Path) -> dict[str, Any]:
    shown = _show(directory, path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{shown}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{shown}: not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{shown}: must hold a mapping (YAML object) at the top")
    return raw


def _resolve(directory: Path, path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The file's content with ``extends:`` applied: the base's steps, overridden by name."""
    raw = _read_yaml(directory, path)
    base_name = raw.get("extends")
    if base_name is None:
        return raw
    shown = _show(directory, path)
    if not isinstance(base_name, str) or "/" in base_name or "\\" in base_name:
        raise ConfigError(f"{shown}: extends must name a file beside it, got {base_name!r}")
    base_path = path.parent / base_name
    if base_path in seen or base_path == path:
        raise ConfigError(f"{shown}: extends {base_name!r} makes a cycle")
    if not base_path.is_file():
        raise ConfigError(f"{shown}: extends {base_name!r}, which does not exist")
    base = _resolve(directory, base_path, (*seen, path))
    merged = {**{k: v for k, v in base.items() if k not in ("action", "steps", "definitions")},
              **{k: v for k, v in raw.items() if k not in ("extends", "steps")}}
    steps = dict(base.get("steps") or {})
    for name, step in (raw.get("steps") or {}).items():
        if step is None:
            steps.pop(name, None)
        else:
            steps[name] = step
    merged["steps"] = steps
    return merged


def _schema_error(shown: str, raw: dict[str, Any], err: jsonschema.ValidationError) -> ConfigError:
    path = list(err.absolute_path)
    node: Any = raw
    if path[:1] == ["steps"]:  # name rules as the compiler does: report.attributes[1]
        node, path = raw.get("steps"), path[1:]
    where: list[str] = []
    label = None
    for part in path:
        where.append(f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part)))
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
        if isinstance(node, dict):
            for key in ("label", "name", "type", "title"):
                if isinstance(node.get(key), str):
                    label = node[key]
                    break
    at = "".join(where) or "(top level)"
    named = f" ({label!r})" if label else ""
    return ConfigError(f"{shown}: rule {at}{named}: {err.message}")


def _compile(directory: Path, path: Path, validator: jsonschema.protocols.Validator) -> _ActionMapping:
    shown = _show(directory, path)
    raw = _flatten_rules(_resolve(directory, path))
    errors = sorted(validator.iter_errors(raw), key=lambda e: (len(list(e.absolute_path)), str(e.message)))
    if errors:
        raise _schema_error(shown, raw, errors[0])
    api, action = raw["api"], raw["action"]
    if path.parent.name != api or path.stem != action:
        raise ConfigError(f"{shown}: says api {api!r} action {action!r}; the file must be {api}/{action}.yaml")
    loader = _Loader(shown)
    ind = raw.get("indicator") or {}
    steps = {name: loader.step(name, spec) for name, spec in raw["steps"].items()}
    if not steps:
        raise ConfigError(f"{shown}: no steps")
    return _ActionMapping(
        api=api, action=action, source=shown,
        indicator_type=raw["indicator_type"],
        indicator_value=loader.expr(ind["value"], "indicator.value", None) if "value" in ind else None,
        indicator_type_from=loader.value(ind["type"], "indicator.type", None, text=True) if "type" in ind else None,
        batch=loader.expr(raw["batch"], "batch", None) if "batch" in raw else None,
        relationships=tuple(raw.get("relationships", ())),
        steps=steps,
    )


def load_mappings(directory: Path) -> "MappingSet":
    """Load and validate every ``<api>/<action>.yaml`` under ``directory``.

    Raises ConfigError, e.g. ``mappings/v3/submit_ip.yaml: rule report.attributes[3]
    ('VirusTotal ASN'): bad JMESPath expression ...``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"mappings folder {directory} does not exist")
    schema = _schema(directory)
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema)
    mappings: dict[tuple[str, str], _ActionMapping] = {}
    for api in APIS:
        for path in sorted((directory / api).glob("*.yaml")):
            m = _compile(directory, path, validator)
            mappings[(m.api, m.action)] = m
    if not mappings:
        raise ConfigError(f"mappings folder {directory} holds no v2/*.yaml or v3/*.yaml files")
    return MappingSet(mappings)


# ------------------------------------------------------------------- applying

def _runner(indicator_value: str) -> TreeInterpreter:
    """The JMESPath interpreter for one mapping run, with the mapping functions bound to the indicator."""
    return TreeInterpreter(jmespath.Options(custom_functions=MappingFunctions(indicator_value)))


class MappingSet:
    """Every loaded mapping, by (api, action). Immutable; share it between agents."""

    def __init__(self, mappings: dict[tuple[str, str], _ActionMapping]) -> None:
        self._mappings = dict(mappings)

    def actions(self, api: str) -> tuple[str, ...]:
        return tuple(sorted(a for (p, a) in self._mappings if p == api))

    def steps(self, api: str, action: str) -> tuple[str, ...]:
        return tuple(self._get(api, action).steps)

    def relationships(self, api: str, action: str) -> tuple[str, ...]:
        """The v3 relationships the rules read, to ask for with ``?relationships=``."""
        key = (api, action)
        return self._mappings[key].relationships if key in self._mappings else ()

    def _get(self, api: str, action: str) -> _ActionMapping:
        try:
            return self._mappings[(api, action)]
        except KeyError:
            known = ", ".join(f"{p}/{a}" for p, a in sorted(self._mappings))
            raise ConfigError(f"no mapping for api {api!r} action {action!r} (have: {known})") from None

    def _step(self, api: str, action: str, step: str) -> _Step:
        m = self._get(api, action)
        try:
            return m.steps[step]
        except KeyError:
            raise ConfigError(f"{m.source}: no step {step!r} (have: {', '.join(m.steps)})") from None

    def detect_step(self, api: str, action: str, body: Any) -> str:
        """Which step produced ``body``: the first step whose ``detect`` matches, else report."""
        m = self._get(api, action)
        opts = _runner("")
        for name in STEPS:
            st = m.steps.get(name)
            if st is not None and st.detect is not None and truthy(st.detect.search(body, opts)):
                return name
        return "report" if "report" in m.steps else next(iter(m.steps))

    def indicator_from_body(self, api: str, action: str, body: Any) -> dict[str, str]:
        """The indicator a saved body is about (offline mapping), from the file's ``indicator`` rule.

        A body that does not say (v2 IP and domain reports don't) gets value "unknown".
        """
        m = self._get(api, action)
        opts = _runner("")
        value = to_string(m.indicator_value.search(body, opts)) if m.indicator_value else None
        kind = to_string(m.indicator_type_from.eval(body, opts)) if m.indicator_type_from else None
        if kind not in INDICATOR_TYPES:
            kind = m.indicator_type
        value = (value or "").strip() or "unknown"
        if kind in ("md5", "sha1", "sha256", "domain"):
            value = value.lower()
        return {"type": kind, "value": value}

    def not_found_summary(self, api: str, action: str, step: str = "report",
                          error: str | None = None) -> dict[str, Any]:
        """The card for an indicator VirusTotal does not know: found=false, every field empty."""
        st = self._step(api, action, step)
        summary: dict[str, Any] = {key: None for key in SUMMARY_BASE}
        summary["found"] = False
        for key, _value, _conv in st.summary_fields:
            summary[key] = None
        for lst in st.summary_lists:
            summary[lst.key] = []
            summary[f"{lst.key}_omitted"] = 0
        if "scan_finished" in summary:
            summary["scan_finished"] = False
        if error:
            summary["error"] = error
        return summary

    def apply(self, api: str, action: str, step: str, body: Any, *, indicator: dict[str, str],
              options: AddOptions, enriched_at: str | None = None, found: bool | None = None) -> Mapped:
        """Map one VirusTotal body. Never raises on the body's content.

        ``found`` lets the caller (which saw the HTTP status) override the mapping's own
        ``found`` test; a body that is not found yields no events and a found=false card.
        """
        st = self._step(api, action, step)
        opts = _runner(str(indicator.get("value", "")))
        is_found = truthy(st.found.search(body, opts)) if found is None else (
            found and truthy(st.found.search(body, opts)))
        if not is_found:
            error = to_string(st.error.search(body, opts)) if st.error is not None else None
            return Mapped([], self.not_found_summary(api, action, step, error))
        cap = max(0, int(options.relation_cap))
        ind = {"type": indicator["type"], "value": indicator["value"]}
        emit = functools.partial(make_event, indicator=ind, action=action, api=api,
                                 enriched_at=enriched_at)
        events: list[dict[str, Any]] = []
        omitted_notes: list[tuple[str, str]] = []

        seen_attrs: set[tuple[str, str]] = set()
        for rule in st.attributes:
            pairs, omitted = rule.produce(body, opts, cap)
            for pair in pairs:
                if pair not in seen_attrs:
                    seen_attrs.add(pair)
                    events.append(emit("attribute", {"name": pair[0], "value": pair[1]}))
            if omitted:
                omitted_notes.append((OMITTED_ATTRIBUTES, f"{rule.label}: {omitted} more"))

        for payload in self._relations(st, body, opts, cap, ind["value"], options, omitted_notes):
            events.append(emit("relation", payload))

        for name, value in omitted_notes:
            events.append(emit("attribute", {"name": name, "value": value}))

        for report in st.reports:
            title = to_string(report.title.eval(body, opts))
            attrs: list[dict[str, str]] = []
            seen: set[tuple[str, str]] = set()
            for rule in report.attributes:
                pairs, omitted = rule.produce(body, opts, cap)
                if omitted:
                    pairs.append((OMITTED_ATTRIBUTES, f"{rule.label}: {omitted} more"))
                for pair in pairs:
                    if pair not in seen:
                        seen.add(pair)
                        attrs.append({"name": pair[0], "value": pair[1]})
            if title and attrs:
                events.append(emit("report", {"title": title, "attributes": attrs}))

        return Mapped(events, self._summary(st, body, opts, cap))

    @staticmethod
    def _relations(st: _Step, body: Any, opts: TreeInterpreter, cap: int, self_value: str,
                   options: AddOptions, notes: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Related indicators, one per (type, value); attributes of duplicates are merged."""
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        self_key = self_value.lower()
        for rule in st.relations:
            items, omitted = _items(rule.source, body, opts, cap)
            if omitted:
                notes.append((OMITTED_RELATIONS, f"{rule.label}: {omitted} more"))
            if not items:
                continue
            shared: list[tuple[str, str]] = []
            for sub in rule.root_attributes:
                shared.extend(sub.produce(body, opts, cap)[0])
            for item in items:
                kind = to_string(rule.type.eval(item, opts))
                value = rule.convert(rule.value.eval(item, opts))
                if not kind or not isinstance(value, str) or not value or value.lower() == self_key:
                    continue
                attrs: list[tuple[str, str]] = []
                for sub in rule.attributes:
                    attrs.extend(sub.produce(item, opts, cap)[0])
                attrs.extend(shared)
                key = (kind, value)
                payload = merged.get(key)
                if payload is None:
                    payload = {"type": kind, "value": value, "attributes": [], "tags": list(options.tags),
                               "confidence": int(options.confidence), "rating": float(options.rating)}
                    merged[key] = payload
                    payload["_seen"] = set()
                seen: set[tuple[str, str]] = payload["_seen"]
                for pair in attrs:
                    if pair not in seen:
                        seen.add(pair)
                        payload["attributes"].append({"name": pair[0], "value": pair[1]})
        out = []
        for payload in merged.values():
            del payload["_seen"]
            out.append(payload)
        return out

    @staticmethod
    def _summary(st: _Step, body: Any, opts: TreeInterpreter, cap: int) -> dict[str, Any]:
        summary: dict[str, Any] = {key: None for key in SUMMARY_BASE}
        summary["found"] = True
        for key, value, conv in st.summary_fields:
            summary[key] = conv(value.eval(body, opts))
        for lst in st.summary_lists:
            items, omitted = _items(lst.source, body, opts, cap)
            rows = []
            for item in items:
                row = {fk: conv(fv.eval(item, opts)) for fk, fv, conv in lst.fields}
                if any(v is not None for v in row.values()):
                    rows.append(row)
            summary[lst.key] = rows
            summary[f"{lst.key}_omitted"] = omitted
        return summary

    def map_saved(self, api: str, action: str, body: Any, options: AddOptions, *,
                  indicator: dict[str, str] | None = None,
                  enriched_at: str | None = None) -> list[dict[str, Any]]:
        """See :func:`map_saved_response`."""
        m = self._get(api, action)
        opts = _runner("")
        bodies: Sequence[Any] = [body]
        if m.batch is not None:
            split = m.batch.search(body, opts)
            if isinstance(split, list) and split:
                bodies = split
        out: list[dict[str, Any]] = []
        for one in bodies:
            step = self.detect_step(api, action, one)
            ind = indicator or self.indicator_from_body(api, action, one)
            mapped = self.apply(api, action, step, one, indicator=ind, options=options, enriched_at=enriched_at)
            out.extend(mapped.events)
            out.append(make_event("summary", mapped.summary, indicator=ind, action=action, api=api,
                                  enriched_at=enriched_at))
        return out


_DEFAULT: dict[str, MappingSet] = {}


def _default_mappings() -> MappingSet:
    if "set" not in _DEFAULT:
        from mappings import MAPPINGS_DIR

        _DEFAULT["set"] = load_mappings(MAPPINGS_DIR)
    return _DEFAULT["set"]


def detect_step(api: str, action: str, body: Any, mappings: MappingSet | None = None) -> str:
    """Decide scan vs report from a body's shape (the shipped mappings unless given others).

    >>> detect_step("v3", "submit_url", {"data": {"type": "analysis", "id": "u-1-2"}})
    'scan'
    """
    return (mappings or _default_mappings()).detect_step(api, action, body)


def indicator_from_body(mappings: MappingSet, api: str, action: str, body: Any) -> dict[str, str]:
    """The indicator a saved body is about; see :meth:`MappingSet.indicator_from_body`."""
    return mappings.indicator_from_body(api, action, body)


def map_saved_response(mappings: MappingSet, api: str, action: str, body: Any, options: AddOptions, *,
                       indicator: dict[str, str] | None = None,
                       enriched_at: str | None = None) -> list[dict[str, Any]]:
    """Everything ``vtstream map`` prints for one saved body: its events, then one summary event.

    A batch body (v2 file/report for several hashes: a JSON list) is mapped report by
    report, as is a v3 listing of objects of the action's own type. The step and the
    indicator are read from the body unless ``indicator`` is given.
    """
    return mappings.map_saved(api, action, body, options, indicator=indicator, enriched_at=enriched_at)


def map_files(mappings_dir: Path, api: str, action: str, paths: Iterable[Path], options: AddOptions, *,
              indicator: str | None = None, enriched_at: str | None = None) -> Iterator[dict[str, Any]]:
    """Map saved VirusTotal responses offline (the ``vtstream map`` command).

    Every file is read and parsed before the first event is yielded, so a bad file
    fails the command before anything is printed: ValueError names the file.
    ``indicator`` overrides the indicator value read from the bodies.
    """
    mappings = load_mappings(Path(mappings_dir))
    if api not in APIS:
        raise ValueError(f"api must be one of {', '.join(APIS)}, got {api!r}")
    if action not in mappings.actions(api):
        raise ValueError(f"action must be one of {', '.join(mappings.actions(api))}, got {action!r}")
    bodies: list[Any] = []
    for path in paths:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
        try:
            bodies.append(orjson.loads(raw))
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON: {exc}") from None

    def generate() -> Iterator[dict[str, Any]]:
        for body in bodies:
            ind = None
            if indicator is not None:
                ind = {**mappings.indicator_from_body(api, action, body), "value": indicator}
            yield from map_saved_response(mappings, api, action, body, options, indicator=ind,
                                          enriched_at=enriched_at)

    return generate()


__all__ = [
    "STEPS", "AddOptions", "Mapped", "MappingSet", "load_mappings", "detect_step",
    "indicator_from_body", "map_saved_response", "map_files", "OMITTED_RELATIONS", "OMITTED_ATTRIBUTES",
]
