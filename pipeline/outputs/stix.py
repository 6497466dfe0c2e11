"""STIX 2.1 output: one bundle per enrichment, built from the mapped events and the summary card.

Pure: the caller gives the indicator, the mapped events and summary (the same
mapping rows and caps as the ``indicators.enriched`` events), the input's
labels, the options and the time. Ids are deterministic, so the same
indicator always yields the same ids and platforms merge repeats:

- observables (SCOs) get the UUIDv5 ids the STIX 2.1 specification defines
  (``stix2`` computes them from the id-contributing properties);
- the other objects get UUIDv5 ids over what they state (the analysis: the
  observable, the product and the analysis date; a relationship: its ends and
  type), so a repeat is a new *version* (a later ``modified``) of the same object;
- the ``indicator`` gets a UUIDv5 id over the indicator and the start of its
  malicious period (:class:`~pipeline.rules.verdicts.Standing`, from the verdict
  memory; the analysis date when no memory is kept), so every check during one
  malicious period versions the same indicator, and the answer that ends the
  period publishes it once more with ``revoked: true``. A revoked object may
  never be versioned again (STIX 2.1, 3.6), so a later malicious period gets
  another id.

A bundle a ``vtstream replay`` run caused says so the STIX way: its analyses,
indicator and relationships carry ``x_vtstream_replay`` (the run's name),
declared by vtstream's extension definition (a top-level property extension,
:data:`REPLAY_EXTENSION`), which the bundle carries too.

>>> b = build_bundle({"type": "domain", "value": "example.com"}, [],
...                  SummaryCard(found=True, positives=0, total=90, scan_date="2026-01-02T03:04:05Z"),
...                  labels=["TLP:GREEN"], options=StixOptions(), now=0.0)
>>> sorted({o["type"] for o in b["objects"]})
['domain-name', 'identity', 'malware-analysis', 'marking-definition']
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

import orjson
import stix2

from pipeline.contracts.card import SummaryCard
from pipeline.contracts.indicator import HASH_TYPES, vt_url_id
from pipeline.errors import InputError
from pipeline.rules.indicators import classify
from pipeline.rules.labels import MARKING_LEVELS, Labels, as_labels
from pipeline.rules.verdicts import Standing, verdict_of

#: Namespace of vtstream's deterministic ids for non-observable objects.
NAMESPACE = uuid.UUID("5f0f5a36-4e1d-5b3b-9a43-7c1f3a8e2d11")
TLP_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
#: The OASIS TLP 2.0 marking definitions (cti-stix-common-objects, extension 60a3c5c5), lowest first.
TLP_MARKINGS: tuple[tuple[str, str], ...] = (
    ("clear", "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487"),
    ("green", "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"),
    ("amber", "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"),
    ("amber+strict", "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003"),
    ("red", "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"),
)
_IDENTITY_CREATED = "2026-01-01T00:00:00.000Z"
IDENTITY_ID = f"identity--{uuid.uuid5(NAMESPACE, 'vtstream')}"
VT_GUI = "https://www.virustotal.com/gui"
#: Relation rows whose values are properties of the sample, not observables of their own.
_NOT_OBSERVABLES = ("Import Hash", "Authenticode Hash", "Main Icon")
_HASH_NAMES = {"md5": "MD5", "sha1": "SHA-1", "sha256": "SHA-256"}
_DETECTED = ("Detected ", "Did Detect ")
#: vtstream's extension definition: objects a replay run caused carry ``x_vtstream_replay``.
REPLAY_EXTENSION = f"extension-definition--{uuid.uuid5(NAMESPACE, 'x_vtstream_replay')}"
REPLAY_PROPERTY = "x_vtstream_replay"


@dataclass(frozen=True)
class StixOptions:
    """What the settings decide about a bundle."""

    confidence: int = 50
    labels: tuple[str, ...] = ()
    indicator_at: int = 5
    indicator_valid_s: float = 30 * 86400.0


def tlp_level(labels: Labels) -> str | None:
    """The highest TLP level among ``labels`` (``TLP:GREEN``, ``tlp-amber+strict``, ``TLP:WHITE``...),
    read as the policy gate reads them (:mod:`pipeline.rules.labels`).

    >>> tlp_level(["TLP:GREEN", "ops", "tlp : amber"]), tlp_level(["TLP:WHITE"]), tlp_level([])
    ('amber', 'clear', None)
    """
    ranks = [label.rank for label in as_labels(labels) if label.scheme == "tlp" and not label.unknown]
    return MARKING_LEVELS["tlp"][max(ranks)] if ranks else None


def marking_definition(level: str) -> stix2.v21.MarkingDefinition:
    """The OASIS TLP 2.0 marking-definition object for ``level``."""
    return stix2.v21.MarkingDefinition(
        id=dict(TLP_MARKINGS)[level], created="2022-10-01T00:00:00.000Z", name=f"TLP:{level.upper()}",
        extensions={TLP_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": level}})


def replay_extension() -> stix2.v21.ExtensionDefinition:
    """The extension definition behind ``x_vtstream_replay`` (fixed id and dates: every bundle carries the same)."""
    return stix2.v21.ExtensionDefinition(
        id=REPLAY_EXTENSION, created_by_ref=IDENTITY_ID, created=_IDENTITY_CREATED, modified=_IDENTITY_CREATED,
        name="vtstream replay", version="1.0.0", extension_types=["toplevel-property-extension"],
        extension_properties=[REPLAY_PROPERTY],
        description="Marks the objects a vtstream replay run caused, so platforms can tell a replayed verdict "
                    "from a live one.",
        schema=f"{REPLAY_PROPERTY} (string): the name of the vtstream replay run whose replayed record caused "
               "this object; absent on objects live enrichment caused.")


def gui_url(indicator: Mapping[str, str]) -> str:
    """The VirusTotal web page of an indicator (not the API URL)."""
    kind, value = indicator["type"], indicator["value"]
    if kind == "ip":
        return f"{VT_GUI}/ip-address/{value}"
    if kind == "domain":
        return f"{VT_GUI}/domain/{value}"
    if kind == "url":
        return f"{VT_GUI}/url/{vt_url_id(value)}"
    return f"{VT_GUI}/file/{value}"


def _sid(kind: str, *parts: Any) -> str:
    return f"{kind}--{uuid.uuid5(NAMESPACE, orjson.dumps(parts, option=orjson.OPT_SORT_KEYS).decode())}"


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


#: Relation event types that name a network observable -> the pipeline's indicator type.
_NETWORK_RELATIONS = {"IP Address": "ip", "FQDN": "domain", "URL": "url"}


def _network_sco(kind: str, value: str, marks: list[str]) -> Any:
    """The SCO of an ip / domain / url value."""
    if kind == "ip":
        sco = stix2.v21.IPv6Address if ":" in value else stix2.v21.IPv4Address
        return sco(value=value, object_marking_refs=marks)
    if kind == "domain":
        return stix2.v21.DomainName(value=value, object_marking_refs=marks)
    return stix2.v21.URL(value=value, object_marking_refs=marks)


def _observable(kind: str, value: str, hashes: Mapping[str, str], marks: list[str]) -> Any:
    """The SCO of a pipeline indicator (a file: with every hash the answer gave)."""
    if kind in ("ip", "domain", "url"):
        return _network_sco(kind, value, marks)
    return stix2.v21.File(hashes={**hashes, _HASH_NAMES[kind]: value}, object_marking_refs=marks)


def _network_value(kind: str, value: str) -> str | None:
    """``value`` normalized as the pipeline's classifier does, or None when it is no valid ip / domain / url.

    VirusTotal lists hold the odd broken host name (``/site1.example.com``) and URLs
    with spaces; spaces are percent-encoded, the rest are left out of the bundle. A DNS
    name with an underscore (``_dmarc.example.com``, ``shuixian_53.example.com``) is a
    valid lookup but no host name, which STIX requires of a ``domain-name``: left out too.

    >>> _network_value("domain", "shuixian_53.example.com"), _network_value("domain", "Example.COM")
    (None, 'example.com')
    """
    try:
        normalized = classify("%20".join(value.split()) if kind == "url" else value, kind).value
    except InputError:
        return None
    return None if kind == "domain" and "_" in normalized else normalized


def _related(relation: Mapping[str, Any], own_hashes: set[str], marks: list[str]) -> Any | None:
    """The SCO of a relation event, or None for rows that are not observables (file names, imphash...)."""
    kind, value = str(relation.get("type")), str(relation.get("value") or "")
    names = {a.get("name") for a in relation.get("attributes") or ()}
    if not value or names & set(_NOT_OBSERVABLES):
        return None
    if kind in _NETWORK_RELATIONS:
        network = _network_value(_NETWORK_RELATIONS[kind], value)
        return _network_sco(_NETWORK_RELATIONS[kind], network, marks) if network else None
    if kind in ("MD5", "SHA-1", "SHA-256") and value.lower() not in own_hashes:
        return stix2.v21.File(hashes={kind: value.lower()}, object_marking_refs=marks)
    if kind == "Mutex":
        return stix2.v21.Mutex(name=value, object_marking_refs=marks)
    return None


def _engine_detections(events: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(engine, result) of every engine that flagged the indicator, from the mapped ``<engine> Scan`` rows."""
    out = []
    for event in events:
        attr = event.get("attribute") if event.get("kind") == "attribute" else None
        name, value = (attr or {}).get("name", ""), (attr or {}).get("value", "")
        if not name.endswith(" Scan") or not value.startswith(_DETECTED):
            continue
        result = value.split(" ", 2)[-1] if value.startswith("Did ") else value[len("Detected "):]
        out.append((name[:-len(" Scan")], result.split(" on ")[0].strip()))
    return out


def _pattern(observable: Any) -> str:
    def quoted(text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    if observable.type == "file":
        return "[" + " OR ".join(f"file:hashes.{quoted(k)} = {quoted(v)}"
                                 for k, v in sorted(observable.hashes.items()) if k != "SSDEEP") + "]"
    return f"[{observable.type}:value = {quoted(observable.value)}]"


def _indicator(indicator: Mapping[str, str], observable: Any, since: str, sdo: Mapping[str, Any],
               reference: Mapping[str, str], *, name: str, description: str, valid_until: str,
               revoked: bool = False) -> list[Any]:
    """The ``indicator`` of one malicious period (it began at ``since``) and its ``based-on`` relationship;
    ``revoked``: the version that ends the period."""
    indicator_id = _sid("indicator", indicator["type"], indicator["value"], since)
    common = {**sdo, "created": since, "modified": max(since, sdo["modified"]),
              **({"revoked": True} if revoked else {})}
    window = {"valid_from": since, **({"valid_until": valid_until} if valid_until > since else {})}
    return [stix2.v21.Indicator(id=indicator_id, name=name, description=description, pattern=_pattern(observable),
                                pattern_type="stix", indicator_types=["malicious-activity"],
                                external_references=[reference], **window, **common),
            stix2.v21.Relationship(id=_sid("relationship", indicator_id, "based-on", observable.id),
                                   relationship_type="based-on", source_ref=indicator_id, target_ref=observable.id,
                                   **common)]


def build_bundle(indicator: Mapping[str, str], events: Sequence[Mapping[str, Any]], summary: SummaryCard,
                 *, labels: Labels, options: StixOptions, now: float, replay: str | None = None,
                 standing: Standing | None = None) -> dict[str, Any]:
    """The STIX 2.1 bundle of one enrichment, as a JSON-ready dict.

    Every object carries the highest TLP 2.0 marking among ``labels`` (none
    when the input had no TLP label), and the bundle carries that marking's
    definition. ``replay``: the replay run that caused the enrichment (its
    objects say so, see the module docstring). ``standing`` (from the verdict
    memory) dates the indicator's malicious period and names one this answer
    ended. Raises ValueError when a value cannot be said in STIX (an offline
    body that does not name its indicator).
    """
    try:
        return _bundle(indicator, events, summary, labels=labels, options=options, now=now, replay=replay,
                       standing=standing or Standing())
    except stix2.exceptions.STIXError as exc:
        raise ValueError(f"{indicator.get('type')} {indicator.get('value')!r}: not expressible in STIX: {exc}") from None


def _bundle(indicator: Mapping[str, str], events: Sequence[Mapping[str, Any]], summary: SummaryCard,
            *, labels: Labels, options: StixOptions, now: float, replay: str | None,
            standing: Standing) -> dict[str, Any]:
    level = tlp_level(labels)
    marks = [dict(TLP_MARKINGS)[level]] if level else []
    stamp = _stamp(now)
    ended = summary.scan_date
    # An object keeps its id and its ``created`` across versions: both come from the analysis
    # (its date, or vtstream's fixed epoch when VirusTotal gave none); a repeat only moves ``modified``.
    created = f"{ended[:19]}.000Z" if isinstance(ended, str) and len(ended) >= 19 else _IDENTITY_CREATED
    sdo = {"created_by_ref": IDENTITY_ID, "created": created, "modified": max(created, stamp),
           "object_marking_refs": marks,
           "confidence": options.confidence, **({"labels": list(options.labels)} if options.labels else {})}
    if replay:
        sdo.update({REPLAY_PROPERTY: replay,
                    "extensions": {REPLAY_EXTENSION: {"extension_type": "toplevel-property-extension"}}})
    kind, value = indicator["type"], indicator["value"]
    if kind in ("ip", "domain", "url") and _network_value(kind, value) is None:
        raise ValueError(f"{kind} {value!r} is not a valid {kind}")
    hashes = {_HASH_NAMES[h]: v for h, v in summary.hashes.items()} if kind in HASH_TYPES else {}
    relations = [e["relation"] for e in events if e.get("kind") == "relation"]
    if kind in ("md5", "sha1", "sha256"):
        ssdeep = next((r["value"] for r in relations if r.get("type") == "Fuzzy Hash"), None)
        if ssdeep and summary.found:
            hashes["SSDEEP"] = ssdeep
    observable = _observable(kind, value, hashes, marks)
    own = {v.lower() for v in observable.hashes.values()} if kind in ("md5", "sha1", "sha256") else set()
    reference = {"source_name": "VirusTotal", "url": gui_url(indicator)}
    if summary.total:
        reference["description"] = f"{summary.positives or 0} of {summary.total} engines flagged it"
    objects: list[Any] = [stix2.v21.Identity(
        id=IDENTITY_ID, name="vtstream", identity_class="system", created=_IDENTITY_CREATED,
        modified=max(_IDENTITY_CREATED, stamp), description="VirusTotal enrichment pipeline", object_marking_refs=marks),
        observable]

    related: dict[str, Any] = {}
    for relation in relations:
        sco = _related(relation, own | {value.lower()}, marks)
        if sco is not None and sco.id != observable.id:
            related.setdefault(sco.id, (sco, relation))
    for sco, relation in related.values():
        objects.append(sco)
        source, rel_type, target = observable.id, "related-to", sco.id
        if kind == "domain" and sco.type in ("ipv4-addr", "ipv6-addr"):
            rel_type = "resolves-to"
        elif kind == "ip" and sco.type == "domain-name":
            source, rel_type, target = sco.id, "resolves-to", observable.id
        resolved = next((a["value"] for a in relation.get("attributes") or () if a.get("name") == "Last Resolved"),
                        None)
        objects.append(stix2.v21.Relationship(
            id=_sid("relationship", source, rel_type, target, ended), relationship_type=rel_type, source_ref=source,
            target_ref=target, **({"description": f"last resolved {resolved}"} if resolved else {}), **sdo))

    is_file = observable.type == "file"
    verdict = verdict_of(summary, options.indicator_at)
    captured = [i for i, (sco, _) in related.items() if sco.type in ("ipv4-addr", "ipv6-addr", "domain-name", "url")]
    scope: dict[str, Any] = {"sample_ref": observable.id} if is_file else {"analysis_sco_refs": [observable.id]}
    if is_file and captured:
        scope["analysis_sco_refs"] = captured
    timing = {"analysis_ended": ended} if ended else {}
    objects.append(stix2.v21.MalwareAnalysis(
        id=_sid("malware-analysis", observable.id, "VirusTotal", ended), product="VirusTotal",
        result=verdict, external_references=[reference], **scope, **timing, **sdo))
    for engine, detection in _engine_detections(events):
        objects.append(stix2.v21.MalwareAnalysis(
            id=_sid("malware-analysis", observable.id, engine, ended), product=engine, result="malicious",
            **({"result_name": detection} if detection else {}), **scope, **timing, **sdo))

    positives, total = summary.positives, summary.total
    analysis = f"analysis {summary.scan_date or 'date unknown'}"
    if verdict == "malicious":
        since = _stamp(standing.malicious_since) if standing.malicious_since is not None else created
        objects += _indicator(indicator, observable, since, sdo, reference,
                              name=f"{value} (VirusTotal: {positives} of {total} engines)",
                              description=f"{positives} of {total} VirusTotal engines flagged {value} ({analysis}).",
                              valid_until=_stamp(now + options.indicator_valid_s))
    elif standing.withdrawn_since is not None:
        counts = f"{positives} of {total} engines" if total else "VirusTotal does not know it"
        objects += _indicator(indicator, observable, _stamp(standing.withdrawn_since), sdo, reference,
                              name=f"{value} (VirusTotal: no longer malicious, {verdict})",
                              description=f"Revoked: VirusTotal now calls {value} {verdict} ({counts}, {analysis}).",
                              valid_until=stamp, revoked=True)
    if level:
        objects.append(marking_definition(level))
    if replay:
        objects.append(replay_extension())
    bundle = stix2.v21.Bundle(objects=objects, id=f"bundle--{uuid.uuid4()}")
    serialized: dict[str, Any] = orjson.loads(bundle.serialize())
    return serialized

