"""Applying mappings: VirusTotal bodies -> attribute / relation / report events + a summary card.

What to emit lives in ``mappings/<api>/<action>.yaml`` (format: ``mappings/README.md``);
this package only loads, validates and applies those files, so no VirusTotal field
name appears here. Applying is a pure function of the body and never raises on
odd input: an expression that fails yields nothing, lists are cut at
``relation_cap`` *before* events are built, and the cut is reported as a count.

>>> from mappings import MAPPINGS_DIR
>>> m = load_mappings(MAPPINGS_DIR)
>>> out = m.apply("v2", "submit_ip", "report", {"response_code": 1, "asn": 15169},
...               indicator={"type": "ip", "value": "8.8.8.8"}, options=AddOptions())
>>> [e["attribute"] for e in out.events]
[{'name': 'VirusTotal ASN', 'value': '15169'}]
>>> out.summary.found, out.summary.field("asn")
(True, '15169')
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import orjson

from pipeline.contracts.card import SummaryCard
from pipeline.contracts.events import make_event
from pipeline.errors import ConfigError
from pipeline.mapping.functions import MappingFunctions, to_string, truthy
from pipeline.mapping.loader import compile_dir
from pipeline.mapping.model import (APIS, INDICATOR_TYPES, OMITTED_ATTRIBUTES, OMITTED_RELATIONS, STEPS,
                                    ActionMapping, AddOptions, Mapped, Step, walk_items)
from pipeline.vt.behaviour import NO_SANDBOX_REPORT, merge_behaviour_summary


def load_mappings(directory: Path) -> "MappingSet":
    """Load and validate every ``<api>/<action>.yaml`` under ``directory``.

    Raises ConfigError, e.g. ``mappings/v3/submit_ip.yaml: rule report.attributes[3]
    ('VirusTotal ASN'): bad JMESPath expression ...``.
    """
    return MappingSet(compile_dir(Path(directory)))


def runner(indicator_value: str) -> MappingFunctions:
    """The JMESPath functions for one mapping run, bound to the indicator ``indicator_value()`` answers."""
    return MappingFunctions(indicator_value)


class MappingSet:
    """Every loaded mapping, by (api, action). Immutable; share it between agents."""

    def __init__(self, mappings: dict[tuple[str, str], ActionMapping]) -> None:
        self._mappings = dict(mappings)

    def actions(self, api: str) -> tuple[str, ...]:
        return tuple(sorted(a for (p, a) in self._mappings if p == api))

    def steps(self, api: str, action: str) -> tuple[str, ...]:
        return tuple(self._get(api, action).steps)

    def relationships(self, api: str, action: str) -> tuple[str, ...]:
        """The v3 relationships the rules read, to ask for with ``?relationships=``."""
        key = (api, action)
        return self._mappings[key].relationships if key in self._mappings else ()

    def _get(self, api: str, action: str) -> ActionMapping:
        try:
            return self._mappings[(api, action)]
        except KeyError:
            known = ", ".join(f"{p}/{a}" for p, a in sorted(self._mappings))
            raise ConfigError(f"no mapping for api {api!r} action {action!r} (have: {known})") from None

    def _step(self, api: str, action: str, step: str) -> Step:
        m = self._get(api, action)
        try:
            return m.steps[step]
        except KeyError:
            raise ConfigError(f"{m.source}: no step {step!r} (have: {', '.join(m.steps)})") from None

    def detect_step(self, api: str, action: str, body: Any) -> str:
        """Which step produced ``body``: the first step whose ``detect`` matches, else report."""
        m = self._get(api, action)
        funcs = runner("")
        for name in STEPS:
            st = m.steps.get(name)
            if st is not None and st.detect is not None and truthy(st.detect.search(body, funcs)):
                return name
        return "report" if "report" in m.steps else next(iter(m.steps))

    def indicator_from_body(self, api: str, action: str, body: Any) -> dict[str, str]:
        """The indicator a saved body is about (offline mapping), from the file's ``indicator`` rule.

        A body that does not say (v2 IP and domain reports don't) gets value "unknown".
        """
        m = self._get(api, action)
        funcs = runner("")
        value = to_string(m.indicator_value.search(body, funcs)) if m.indicator_value else None
        kind = to_string(m.indicator_type_from.eval(body, funcs)) if m.indicator_type_from else None
        if kind not in INDICATOR_TYPES:
            kind = m.indicator_type
        value = (value or "").strip() or "unknown"
        if kind in ("md5", "sha1", "sha256", "domain"):
            value = value.lower()
        return {"type": kind, "value": value}

    def not_found_summary(self, api: str, action: str, step: str = "report",
                          error: str | None = None) -> SummaryCard:
        """The card for an indicator VirusTotal does not know: found=false, every field empty."""
        st = self._step(api, action, step)
        summary: dict[str, Any] = {}
        for key, _value, _conv in st.summary_fields:
            summary[key] = None
        for lst in st.summary_lists:
            summary[lst.key] = []
            summary[f"{lst.key}_omitted"] = 0
        if "scan_finished" in summary:
            summary["scan_finished"] = False
        if error:
            summary["error"] = error
        return SummaryCard.mapped_from(False, summary)

    def apply(self, api: str, action: str, step: str, body: Any, *, indicator: dict[str, str],
              options: AddOptions, enriched_at: str | None = None, found: bool | None = None,
              replay: str | None = None) -> Mapped:
        """Map one VirusTotal body. Never raises on the body's content.

        ``found`` lets the caller (which saw the HTTP status) override the mapping's own
        ``found`` test; a body that is not found yields no events and a found=false card.
        ``replay``: the replay run that asked, which marks every event.
        """
        st = self._step(api, action, step)
        funcs = runner(str(indicator.get("value", "")))
        is_found = truthy(st.found.search(body, funcs)) if found is None else (
            found and truthy(st.found.search(body, funcs)))
        if not is_found:
            error = to_string(st.error.search(body, funcs)) if st.error is not None else None
            return Mapped([], self.not_found_summary(api, action, step, error))
        cap = max(0, int(options.relation_cap))
        ind = {"type": indicator["type"], "value": indicator["value"]}
        emit = functools.partial(make_event, indicator=ind, action=action, api=api,
                                 enriched_at=enriched_at, replay=replay)
        events: list[dict[str, Any]] = []
        omitted_notes: list[tuple[str, str]] = []

        seen_attrs: set[tuple[str, str]] = set()
        for rule in st.attributes:
            pairs, omitted = rule.produce(body, funcs, cap)
            for pair in pairs:
                if pair not in seen_attrs:
                    seen_attrs.add(pair)
                    events.append(emit("attribute", {"name": pair[0], "value": pair[1]}))
            if omitted:
                omitted_notes.append((OMITTED_ATTRIBUTES, f"{rule.label}: {omitted} more"))

        for payload in self._relations(st, body, funcs, cap, ind["value"], options, omitted_notes):
            events.append(emit("relation", payload))

        for name, value in omitted_notes:
            events.append(emit("attribute", {"name": name, "value": value}))

        for report in st.reports:
            title = to_string(report.title.eval(body, funcs))
            attrs: list[dict[str, str]] = []
            seen: set[tuple[str, str]] = set()
            for rule in report.attributes:
                pairs, omitted = rule.produce(body, funcs, cap)
                if omitted:
                    pairs.append((OMITTED_ATTRIBUTES, f"{rule.label}: {omitted} more"))
                for pair in pairs:
                    if pair not in seen:
                        seen.add(pair)
                        attrs.append({"name": pair[0], "value": pair[1]})
            if title and attrs:
                events.append(emit("report", {"title": title, "attributes": attrs}))

        return Mapped(events, self._summary(st, body, funcs, cap))

    @staticmethod
    def _relations(st: Step, body: Any, funcs: MappingFunctions, cap: int, self_value: str,
                   options: AddOptions, notes: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Related indicators, one per (type, value); attributes of duplicates are merged."""
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        self_key = self_value.lower()
        for rule in st.relations:
            items, omitted = walk_items(rule.source, body, funcs, cap)
            if omitted:
                notes.append((OMITTED_RELATIONS, f"{rule.label}: {omitted} more"))
            if not items:
                continue
            shared: list[tuple[str, str]] = []
            for sub in rule.root_attributes:
                shared.extend(sub.produce(body, funcs, cap)[0])
            for item in items:
                kind = to_string(rule.type.eval(item, funcs))
                value = rule.convert(rule.value.eval(item, funcs))
                if not kind or not isinstance(value, str) or not value or value.lower() == self_key:
                    continue
                attrs: list[tuple[str, str]] = []
                for sub in rule.attributes:
                    attrs.extend(sub.produce(item, funcs, cap)[0])
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
    def _summary(st: Step, body: Any, funcs: MappingFunctions, cap: int) -> SummaryCard:
        summary: dict[str, Any] = {}
        for key, value, conv in st.summary_fields:
            summary[key] = conv(value.eval(body, funcs))
        for lst in st.summary_lists:
            items, omitted = walk_items(lst.source, body, funcs, cap)
            rows = []
            for item in items:
                row = {fk: conv(fv.eval(item, funcs)) for fk, fv, conv in lst.fields}
                if any(v is not None for v in row.values()):
                    rows.append(row)
            summary[lst.key] = rows
            summary[f"{lst.key}_omitted"] = omitted
        return SummaryCard.mapped_from(True, summary)

    def map_saved(self, api: str, action: str, body: Any, options: AddOptions, *,
                  indicator: dict[str, str] | None = None, enriched_at: str | None = None,
                  notes: Sequence[str] = ()) -> list[dict[str, Any]]:
        """See :func:`map_saved_response`."""
        m = self._get(api, action)
        funcs = runner("")
        bodies: Sequence[Any] = [body]
        if m.batch is not None:
            split = m.batch.search(body, funcs)
            if isinstance(split, list) and split:
                bodies = split
        out: list[dict[str, Any]] = []
        for one in bodies:
            step = self.detect_step(api, action, one)
            ind = indicator or self.indicator_from_body(api, action, one)
            mapped = self.apply(api, action, step, one, indicator=ind, options=options, enriched_at=enriched_at)
            out.extend(mapped.events)
            card = mapped.summary.with_fields(notes=tuple(notes)) if notes else mapped.summary
            out.append(make_event("summary", card.to_dict(), indicator=ind, action=action, api=api,
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
                       indicator: dict[str, str] | None = None, enriched_at: str | None = None,
                       notes: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Everything ``vtstream map`` prints for one saved body: its events, then one summary event.

    A batch body (v2 file/report for several hashes: a JSON list) is mapped report by
    report, as is a v3 listing of objects of the action's own type. The step and the
    indicator are read from the body unless ``indicator`` is given. ``notes`` go on the
    summary, as the pipeline's notes do.
    """
    return mappings.map_saved(api, action, body, options, indicator=indicator, enriched_at=enriched_at,
                              notes=notes)


def map_files(mappings_dir: Path, api: str, action: str, paths: Iterable[Path], options: AddOptions, *,
              indicator: str | None = None, enriched_at: str | None = None,
              behaviour: Path | None = None) -> Iterator[dict[str, Any]]:
    """Map saved VirusTotal responses offline (the ``vtstream map`` command).

    Every file is read and parsed before the first event is yielded, so a bad file
    fails the command before anything is printed: ValueError names the file.
    ``indicator`` overrides the indicator value read from the bodies. ``behaviour``
    is a saved v3 behaviour_summary answer, merged into the one saved file object as
    the client merges it; without a sandbox report the summary says so in ``notes``.
    """
    mappings = load_mappings(Path(mappings_dir))
    if api not in APIS:
        raise ValueError(f"api must be one of {', '.join(APIS)}, got {api!r}")
    if action not in mappings.actions(api):
        raise ValueError(f"action must be one of {', '.join(mappings.actions(api))}, got {action!r}")
    bodies = [_read_json(Path(path)) for path in paths]
    notes: list[str] = []
    if behaviour is not None:
        if api != "v3" or len(bodies) != 1:
            raise ValueError(f"{behaviour}: a behaviour_summary goes with one saved v3 file object "
                             f"(--api v3 and one FILE), got api {api} and {len(bodies)} files")
        if not merge_behaviour_summary(bodies[0], _read_json(Path(behaviour))):
            notes.append(NO_SANDBOX_REPORT)

    def generate() -> Iterator[dict[str, Any]]:
        for body in bodies:
            ind = None
            if indicator is not None:
                ind = {**mappings.indicator_from_body(api, action, body), "value": indicator}
            yield from map_saved_response(mappings, api, action, body, options, indicator=ind,
                                          enriched_at=enriched_at, notes=notes)

    return generate()


def _read_json(path: Path) -> Any:
    """A saved body; ValueError names the file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
