"""``vtstream bench hostile``: how long one hostile 1 MiB record holds the event loop, per stage entry point.

A micro-benchmark, no broker. Each entry point a record reaches on the loop
(intake's parse, the dead-letter builder, the scrubber, URL redaction,
classification, and the results stage's mapping and trimming of a VirusTotal
body) is timed on hostile inputs of 1 MiB: colon, bracket, separator and userinfo
bombs, deep JSON, bytes that are not UTF-8, a URL nested 480 times, bodies with
thousands of engines and names, and hostile URLs of 8 KiB, the longest intake
passes on. It prints the worst time per entry point, and its ratio to the same
run's baseline: one orjson decode and encode of 1 MiB.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Callable

import click
import orjson

from pipeline.devtools.bench.harness import BenchReport
from pipeline.mapping import AddOptions, load_mappings
from pipeline.rules import fitting
from pipeline.rules.deadletter import dead_letter
from pipeline.rules.indicators import MAX_URL_LENGTH, classify
from pipeline.rules.privacy import redact, scrub
from pipeline.settings import Settings
from pipeline.stages import intake

MIB = 1 << 20
#: The target: no record holds the loop longer (issue 21).
TARGET_MS = 100.0


def _fill(block: str) -> str:
    return (block * (MIB // len(block) + 1))[:MIB]


def _nested(times: int) -> str:
    url = "https://bob:pw@bank.example/reset?token=t"
    for _ in range(times):
        url = "https://wrap.example/?u=" + url.replace("%", "%25").replace("?", "%3F").replace("=", "%3D")
    return url


def texts() -> dict[str, str]:
    """Hostile texts of 1 MiB (the nested URL is as long as 480 wrappings make it)."""
    return {"colon bomb": _fill("a:"), "colon bomb, '@' at the end": _fill("a:")[:-1] + "@",
            "userinfo every 4 bytes": _fill("//a@"), "'a:a@' bomb": _fill("a:a@"), "pairs": "?" + _fill("a=1&"),
            "secret pairs": "?" + _fill("token=1&"), "encoded names": "?" + _fill("%61=1&"),
            "encoded values": "?" + _fill("a=%&"), "nested values": "?" + _fill("u=http%3A%2F%2Fa%3Ab%40h%2F%3Ft%3D1&"),
            "address-shaped values": "?" + _fill("x=a@b.cd&"), "JWT-shaped values": "?v=" + _fill("eyJa.eyJb."),
            "brackets": _fill("["), "defang brackets": _fill("[.]("), "URL nested 480 times": _nested(480),
            "non-ASCII": _fill("\u017f\u200b\uff34é")}


def records(hostile: dict[str, str]) -> dict[str, bytes]:
    """Raw records of about 1 MiB for intake and the dead-letter builder."""
    raw = {name: text.encode() for name, text in hostile.items()}
    raw.update({"deep JSON": b"[" * MIB, "deep objects": b'{"a":' * (MIB // 5), "not UTF-8": b"\xff\xfe" * (MIB // 2),
                "JSON value": orjson.dumps({"value": hostile["userinfo every 4 bytes"]}),
                "JSON labels": orjson.dumps({"value": "8.8.8.8", "labels": [hostile["colon bomb"][:4000]] * 256})})
    return raw


def bodies(mappings_dir: Path) -> dict[str, tuple[str, str, Any]]:
    """VirusTotal bodies of about 1 MiB: (action, indicator type, body)."""
    sample = Path(__file__).resolve().parents[3] / "tests" / "samples" / "vt" / "v3" / "file_report_pe_01ba4719.json"
    pe = orjson.loads(sample.read_bytes()) if sample.is_file() else {"data": {"attributes": {}}}
    engines = copy.deepcopy(pe)
    engines["data"]["attributes"]["last_analysis_results"] = {
        f"E{i}": {"category": "malicious", "engine_name": f"E{i}", "result": "x" * 100} for i in range(6000)}
    names = copy.deepcopy(pe)
    names["data"]["attributes"]["names"] = [f"name{i}.exe" for i in range(70000)]
    resolutions = {"data": {"id": "example.com", "type": "domain", "attributes": {}, "relationships": {"resolutions": {
        "data": [{"type": "resolution", "id": f"10.0.{i // 256 % 256}.{i % 256}example.com",
                  "attributes": {"ip_address": f"10.0.{i // 256 % 256}.{i % 256}", "host_name": "example.com",
                                 "date": 1600000000 + i}} for i in range(6000)]}}}}
    return {"6,000 engines": ("submit_file", "sha256", engines), "70,000 names": ("submit_file", "sha256", names),
            "6,000 resolutions": ("submit_domain", "domain", resolutions)}


def worst(call: Callable[[Any], Any], inputs: dict[str, Any], repeat: int) -> tuple[float, str]:
    """The worst input's best time, in ms, and its name."""
    found = (0.0, "")
    for name, value in inputs.items():
        best = min(_time(call, value) for _ in range(repeat))
        found = max(found, (best * 1000, name))
    return found


def _time(call: Callable[[Any], Any], value: Any) -> float:
    started = time.perf_counter()
    call(value)
    return time.perf_counter() - started


@click.command(name="hostile")
@click.option("--repeat", default=3, show_default=True, help="Runs per input; the best is kept, the worst input reported.")
def hostile(repeat: int) -> None:
    """How long one hostile 1 MiB record holds the event loop, per stage entry point."""
    settings = Settings()
    privacy, limit = settings.privacy, settings.kafka.max_record_bytes
    mappings = load_mappings(settings.mappings_dir)
    options = AddOptions(relation_cap=settings.outputs.relation_cap)
    hostile_texts, raw = texts(), records(texts())
    # What intake passes on to classify and redact is at most 8 KiB: hostile URLs of that length too.
    urls = {name: ("https://files.evil-cdn.com/p?" + text)[:MAX_URL_LENGTH] for name, text in hostile_texts.items()}
    raw.update({f"URL: {name}": url.encode() for name, url in urls.items()})
    scrub("?a=1", privacy)  # the patterns compile once per worker, not per record

    def results(item: tuple[str, str, Any]) -> None:
        action, kind, body = item
        mapped = mappings.apply("v3", action, "report", body, indicator={"type": kind, "value": "x"},
                                options=options, found=True)
        fitting.fit_events(mapped.events, fitting.budget(limit, b"k"))
        fitting.fit_card(mapped.summary, fitting.budget(limit, b"k") // 2, limit)

    baseline = min(_time(lambda v: orjson.dumps(orjson.loads(v)), orjson.dumps(hostile_texts["pairs"]))
                   for _ in range(repeat)) * 1000
    report = BenchReport(f"hostile: worst 1 MiB input per entry point, best of {repeat}; target {TARGET_MS:.0f} ms; "
                         f"baseline {baseline:.1f} ms (orjson decode + encode of 1 MiB)")
    worst_ms = 0.0
    entries: list[tuple[str, Callable[[Any], Any], dict[str, Any]]] = [
        ("intake.parse", lambda value: _parse(value, settings), raw),
        ("dead_letter", lambda value: dead_letter(value, stage="intake", reason="r", privacy=privacy), raw),
        ("scrub", lambda value: scrub(value, privacy), hostile_texts),
        ("redact", lambda value: redact(value, privacy), {**hostile_texts, **urls}),
        ("classify", lambda value: _classify(value), {**hostile_texts, **urls}),
        ("results mapping + trimming", results, bodies(settings.mappings_dir)),
    ]
    for entry, call, inputs in entries:
        ms, name = worst(call, inputs, repeat)
        report.add(f"{entry} (worst: {name}), ms", round(ms, 1))
        report.add(f"{entry}, x baseline", round(ms / baseline, 1))
        worst_ms = max(worst_ms, ms)
    report.emit("worst_ms", f"{worst_ms:.1f}")


def _parse(raw: bytes, settings: Settings) -> None:
    """intake's parse (hostile values are longer than its memos remember: each is worked out)."""
    intake.parse(raw, "indicators.raw/0/1", settings)


def _classify(text: str) -> None:
    try:
        classify(text)
    except Exception:  # InputError: what intake makes a Rejected of
        pass
