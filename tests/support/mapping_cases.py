"""Where the mapping tests find their inputs: the recorded VirusTotal samples and the extra cases.

The samples are recorded VirusTotal bodies in ``tests/samples/vt`` (provenance in its
``SOURCES.md``). Every sample is mapped with the action its file name implies;
``tests/golden/extra_cases.yaml`` adds hand-written fixtures, samples merged with
relationship listings, and indicator overrides.

A case is known from its sample *or* from its expectation file, so a sample that
goes missing fails its case (the file cannot be read) instead of shrinking the suite.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jmespath
import yaml

from pipeline.mapping import AddOptions, MappingSet, map_saved_response
from pipeline.vt.behaviour import merge_behaviour_summary

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "tests" / "samples" / "vt"
GOLDEN = REPO / "tests" / "golden"
FIXTURES = GOLDEN / "fixtures"
EXPECTED = GOLDEN / "mapping"
MAPPINGS = REPO / "mappings"

#: Options every golden case is mapped with: a small cap keeps the expectation files
#: readable and exercises the "omitted" count on the long lists.
GOLDEN_OPTIONS = AddOptions(tags=("vt", "golden"), confidence=70, rating=4.0, relation_cap=25)
ENRICHED_AT = "2026-01-01T00:00:00Z"


def action_for(name: str) -> str:
    """The action a sample's file name implies (ip_address -> submit_ip, ...).

    Bodies that belong to no action (errors about quota or keys, YARA rulesets,
    private analyses, intelligence searches of files) go to submit_file: they must
    map without crashing, and a file search result is what submit_file reads.
    """
    stem = name.removesuffix(".json")
    if stem.startswith("ip_address"):
        return "submit_ip"
    if stem.startswith("domain") or stem.endswith("_domain"):
        return "submit_domain"
    if stem.startswith(("url", "urls_")) or re.match(r"analysis_.*url", stem) or stem.endswith("_url_item"):
        return "submit_url"
    return "submit_file"


@dataclass(frozen=True)
class Case:
    id: str
    api: str
    action: str
    spec: dict[str, Any]

    def body(self) -> Any:
        """The body to map, composed as the case says."""
        if "fixture" in self.spec:
            body = json.loads((FIXTURES / self.spec["fixture"]).read_text(encoding="utf-8"))
            if "behaviour" in self.spec:
                merge_behaviour_summary(body, json.loads((FIXTURES / self.spec["behaviour"]).read_text("utf-8")))
            return body
        body = json.loads((SAMPLES / self.spec["sample"]).read_text(encoding="utf-8"))
        for name, listing in (self.spec.get("relationships") or {}).items():
            rel = json.loads((SAMPLES / listing).read_text(encoding="utf-8"))
            body = copy.deepcopy(body)
            body["data"].setdefault("relationships", {})[name] = {"data": rel["data"]}
        return body

    def indicator(self, body: Any, mappings: MappingSet) -> dict[str, str] | None:
        if "indicator" in self.spec:
            return dict(self.spec["indicator"])
        if "indicator_from" in self.spec:
            value = jmespath.search(self.spec["indicator_from"], body)
            kind = {32: "md5", 40: "sha1", 64: "sha256"}[len(value)]
            return {"type": kind, "value": value}
        return None

    def run(self, mappings: MappingSet, options: AddOptions = GOLDEN_OPTIONS) -> list[dict[str, Any]]:
        body = self.body()
        return map_saved_response(mappings, self.api, self.action, body, options,
                                  indicator=self.indicator(body, mappings), enriched_at=ENRICHED_AT)


def sample_cases() -> list[Case]:
    """One case per recorded sample and per sample expectation file (``v2__*``, ``v3__*``)."""
    cases = []
    for api in ("v2", "v3"):
        stems = {p.stem for p in (SAMPLES / api).glob("*.json")}
        stems |= {p.stem.removeprefix(f"{api}__") for p in EXPECTED.glob(f"{api}__*.json")}
        for stem in sorted(stems):
            cases.append(Case(f"{api}/{stem}", api, action_for(stem), {"sample": f"{api}/{stem}.json"}))
    return cases


def extra_cases() -> list[Case]:
    raw = yaml.safe_load((GOLDEN / "extra_cases.yaml").read_text(encoding="utf-8"))
    return [Case(c["id"], c["api"], c["action"], c) for c in raw]


def all_cases() -> list[Case]:
    return sample_cases() + extra_cases()


def comparable(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events without what does not belong in an expectation file (event ids are checked apart)."""
    return [{k: v for k, v in e.items() if k not in ("event_id", "enriched_at")} for e in events]


def expected_path(case: Case) -> Path:
    return EXPECTED / (case.id.replace("/", "__") + ".json")
