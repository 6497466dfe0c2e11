"""Loading mapping files: read YAML, apply ``extends:``, validate against the schema, compile.

A bad file stops the worker with a :class:`~pipeline.errors.ConfigError` naming
the file, the rule and the problem, e.g. ``mappings/v3/submit_ip.yaml: rule
report.attributes[3] ('VirusTotal ASN'): bad JMESPath expression ...``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

# jsonschema imports its optional IRI syntax checker, rfc3987-syntax, whenever it is installed,
# and that module builds a grammar as it is imported: 1.1 s of CPU at every worker and command
# start where another tool installed it beside vtstream (kubernetes-validate does, in the test
# environment: the suite starts some hundreds of processes). No schema vtstream checks uses the
# "iri" formats, so the import is refused unless something imported the module already.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

import jsonschema  # noqa: E402 - after the line above
import yaml
from jmespath.exceptions import JMESPathError

from pipeline.errors import ConfigError
from pipeline.mapping.functions import CONVERTERS
from pipeline.mapping.model import (APIS, ActionMapping, AttrRule, Expr, RelRule, Report, Step, SummaryList,
                                    Value)
from pipeline.mapping.template import TemplateError, split_template

SCHEMA_FILE = "schema.json"
#: libyaml's loader when PyYAML was built with it (several times faster), else the pure one.
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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

    def __init__(self, shown: str) -> None:
        self.shown = shown

    def fail(self, where: str, label: str | None, problem: str) -> ConfigError:
        named = f" ({label!r})" if label else ""
        return ConfigError(f"{self.shown}: rule {where}{named}: {problem}")

    # -- small parts

    def expr(self, source: str, where: str, label: str | None) -> Expr:
        try:
            return Expr(source)
        except JMESPathError as exc:
            problem = str(exc).replace("\n", " ")
            raise self.fail(where, label, f"bad JMESPath expression {source!r}: {problem}") from None

    def convert(self, name: str | None, where: str, label: str | None) -> Callable[[Any], Any]:
        if name is None:
            return CONVERTERS["string"]
        if name not in CONVERTERS:
            raise self.fail(where, label, f"unknown converter {name!r}; use one of {sorted(CONVERTERS)}")
        return CONVERTERS[name]

    def template(self, text: str, where: str, label: str | None) -> Value:
        """Compile a name template (see :mod:`pipeline.mapping.template`)."""
        try:
            pieces = split_template(text)
        except TemplateError as exc:
            raise self.fail(where, label, str(exc)) from None
        parts = tuple(p if isinstance(p, str) else (self.expr(p[0], where, label), self.convert(p[1], where, label))
                      for p in pieces)
        if all(isinstance(p, str) for p in parts):
            return Value(const="".join(p for p in parts if isinstance(p, str)))
        return Value(parts=parts)

    def value(self, spec: Any, where: str, label: str | None, *, text: bool) -> Value:
        """A value spec; a bare string is a template for names (``text``) and an expression otherwise."""
        if isinstance(spec, str):
            return self.template(spec, where, label) if text else Value(expr=self.expr(spec, where, label))
        if "expr" in spec:
            return Value(expr=self.expr(spec["expr"], where, label))
        if "template" in spec:
            return self.template(spec["template"], where, label)
        if "const" in spec:
            return Value(const=spec["const"])
        cases: list[tuple[Expr | None, Value]] = []
        for k, case in enumerate(spec["cases"]):
            when = self.expr(case["when"], f"{where}.cases[{k}]", label) if "when" in case else None
            body = {key: v for key, v in case.items() if key != "when"}
            cases.append((when, self.value(body, f"{where}.cases[{k}]", label, text=text)))
        return Value(cases=tuple(cases))

    # -- rules

    def attr_rule(self, raw: dict[str, Any], where: str) -> AttrRule:
        label = raw.get("label") or (raw["name"] if isinstance(raw["name"], str) else None)
        source = self.expr(raw["from"], where, label) if "from" in raw else None
        return AttrRule(
            label=label or where,
            source=source,
            name=self.value(raw["name"], f"{where}.name", label, text=True),
            value=self.value(raw.get("value", "@"), f"{where}.value", label, text=False),
            convert=self.convert(raw.get("as"), where, label),
        )

    def rel_rule(self, raw: dict[str, Any], where: str) -> RelRule:
        label = raw.get("label") or (f"{raw['type']} from {raw['from']}" if isinstance(raw["type"], str)
                                     and "from" in raw else None)
        return RelRule(
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

    def step(self, name: str, raw: dict[str, Any]) -> Step:
        w = name
        fields: list[tuple[str, Value, Callable[[Any], Any]]] = []
        lists: list[SummaryList] = []
        for key, spec in (raw.get("summary") or {}).items():
            where = f"{w}.summary.{key}"
            if isinstance(spec, dict) and "fields" in spec:
                lists.append(SummaryList(
                    key=key, source=self.expr(spec["from"], where, key),
                    fields=tuple((fk, self.value(_value_part(fs), f"{where}.fields.{fk}", key, text=False),
                                  self.convert(_as_part(fs), f"{where}.fields.{fk}", key))
                                 for fk, fs in spec["fields"].items())))
            else:
                fields.append((key, self.value(_value_part(spec), where, key, text=False),
                               self.convert(_as_part(spec), where, key)))
        return Step(
            name=name,
            detect=self.expr(raw["detect"], f"{w}.detect", None) if "detect" in raw else None,
            found=self.expr(raw["found"], f"{w}.found", None),
            error=self.expr(raw["error"], f"{w}.error", None) if "error" in raw else None,
            attributes=tuple(self.attr_rule(a, f"{w}.attributes[{k}]")
                             for k, a in enumerate(raw.get("attributes", ()))),
            relations=tuple(self.rel_rule(r, f"{w}.relations[{k}]")
                            for k, r in enumerate(raw.get("relations", ()))),
            reports=tuple(Report(
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


def _compile(directory: Path, path: Path, validator: jsonschema.protocols.Validator) -> ActionMapping:
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
    return ActionMapping(
        api=api, action=action, source=shown,
        indicator_type=raw["indicator_type"],
        indicator_value=loader.expr(ind["value"], "indicator.value", None) if "value" in ind else None,
        indicator_type_from=loader.value(ind["type"], "indicator.type", None, text=True) if "type" in ind else None,
        batch=loader.expr(raw["batch"], "batch", None) if "batch" in raw else None,
        relationships=tuple(raw.get("relationships", ())),
        steps=steps,
    )



def compile_dir(directory: Path) -> dict[tuple[str, str], ActionMapping]:
    """Read, validate and compile every ``<api>/<action>.yaml`` under ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"mappings folder {directory} does not exist")
    schema = _schema(directory)
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema)
    mappings: dict[tuple[str, str], ActionMapping] = {}
    for api in APIS:
        for path in sorted((directory / api).glob("*.yaml")):
            m = _compile(directory, path, validator)
            mappings[(m.api, m.action)] = m
    if not mappings:
        raise ConfigError(f"mappings folder {directory} holds no v2/*.yaml or v3/*.yaml files")
    return mappings

