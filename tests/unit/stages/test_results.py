"""The results stage against the lookup stage on one worker, with no broker.

Both are faust agents in one event loop: the lookup agent runs whenever the
results agent awaits a send. These tests drive the two handlers the same way.
"""

import asyncio

import orjson
import pytest

from pipeline.kafka.runtime import Context, Outbox, Received
from pipeline.mapping import load_mappings
from pipeline.settings import Settings
from pipeline.stages import lookup, results
from topics import ENRICHED, REQUESTS, STIX

pytestmark = pytest.mark.unit

KEY = b"ip:8.8.8.8"
INDICATOR = {"type": "ip", "value": "8.8.8.8"}
BODY = {"data": {"id": "8.8.8.8", "type": "ip_address",
                 "attributes": {"last_analysis_stats": {"malicious": 1, "harmless": 60}, "country": "US"}}}


def sighting(ref: str) -> bytes:
    return orjson.dumps({"indicator": INDICATOR, "action": "submit_ip", "origin": {"ref": ref, "id": ref}})


def answer(status: str) -> bytes:
    return orjson.dumps({"status": status, "api": "v3", "action": "submit_ip", "indicator": INDICATOR,
                         "origin": {"ref": "raw/0/1", "id": "raw/0/1"}, "body": BODY if status == "found" else None,
                         "reason": "VirusTotal answered 500" if status == "error" else None})


class YieldingOutbox(Outbox):
    """Records what is sent; every send yields to the loop, as a producer under load does."""

    def __init__(self) -> None:
        async def send(topic: str, key: bytes | None, value: bytes) -> asyncio.Future[None]:
            await asyncio.sleep(0)
            self.sent.append((topic, orjson.loads(value)))
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

        super().__init__(send)
        self.sent: list[tuple[str, dict]] = []

    def summaries(self) -> list[tuple[str, dict]]:
        """(sighting id, summary card) of every summary sent, in order."""
        return [(e["origin"]["id"], e["summary"]) for t, e in self.sent if t == ENRICHED and e["kind"] == "summary"]


def context() -> Context:
    settings = Settings()
    return Context(settings=settings, app=None, topics={}, cache={}, quota={},  # type: ignore[arg-type]
                   mappings=load_mappings(settings.mappings_dir))


def run(status: str) -> YieldingOutbox:
    """Sighting 1 is in flight and 2 waits; 3 arrives between two sends of the answer's handling."""
    async def scenario() -> YieldingOutbox:
        ctx, out = context(), YieldingOutbox()
        await lookup.handle(ctx, out, Received(KEY, sighting("raw/0/1"), "vt.lookups/0/1", 1.0))
        await lookup.handle(ctx, out, Received(KEY, sighting("raw/0/2"), "vt.lookups/0/2", 1.0))
        await asyncio.gather(results.handle(ctx, out, Received(KEY, answer(status), "vt.responses/0/1", 2.0)),
                             lookup.handle(ctx, out, Received(KEY, sighting("raw/0/3"), "vt.lookups/0/3", 2.0)))
        return out

    return asyncio.run(scenario())


def test_a_duplicate_that_joins_while_the_answer_is_mapped_gets_its_summary():
    answered = run("found").summaries()
    assert sorted(ref for ref, _ in answered) == ["raw/0/1", "raw/0/2", "raw/0/3"]  # each exactly once
    late = dict(answered)["raw/0/3"]
    assert late["found"] is True and late["checked"] is True and late["coalesced"] is True


def test_a_sighting_after_a_failed_answer_asks_again_instead_of_waiting_forever():
    out = run("error")
    assert sorted(ref for ref, _ in out.summaries()) == ["raw/0/1", "raw/0/2"]
    asked = [e["origin"]["id"] for t, e in out.sent if t == REQUESTS]
    assert asked == ["raw/0/1", "raw/0/3"]


def test_waiters_are_records_of_their_own_answered_and_removed():
    """1,000 duplicates: every one answered once, no cache value ever over a few hundred bytes,
    and no waiter record left behind."""
    async def scenario() -> tuple[YieldingOutbox, Context, int]:
        ctx, out = context(), YieldingOutbox()
        largest = 0
        for offset in range(1, 1001):
            await lookup.handle(ctx, out, Received(KEY, sighting(f"raw/0/{offset}"), f"vt.lookups/0/{offset}", 1.0))
            largest = max(largest, *(len(value) for value in ctx.cache.values()))
        await results.handle(ctx, out, Received(KEY, answer("found"), "vt.responses/0/1", 2.0))
        return out, ctx, largest

    out, ctx, largest = asyncio.run(scenario())
    refs = [ref for ref, _ in out.summaries()]
    assert sorted(refs) == sorted(f"raw/0/{offset}" for offset in range(1, 1001))
    assert largest < 1000 and list(ctx.cache) == [KEY]


def test_an_answer_larger_than_a_record_is_trimmed_and_the_summary_says_so():
    """4,000 resolutions, all mapped (no relation cap), into one summary at a 128 KiB limit."""
    settings = Settings.of(kafka_max_record_bytes=128 * 1024, outputs_relation_cap=50_000, outputs_publish=("events", "stix"))
    ctx = Context(settings=settings, app=None, topics={}, cache={},
                  quota={}, mappings=load_mappings(Settings().mappings_dir))  # type: ignore[arg-type]
    body = {"data": {"id": "example.com", "type": "domain", "attributes": {"last_analysis_stats": {"malicious": 1}},
                     "relationships": {"resolutions": {"data": [
                         {"type": "resolution", "id": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}example.com",
                          "attributes": {"ip_address": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
                                         "host_name": "example.com", "date": 1600000000 + i}}
                         for i in range(4_000)]}}}}
    record = orjson.dumps({"status": "found", "api": "v3", "action": "submit_domain",
                           "indicator": {"type": "domain", "value": "example.com"},
                           "origin": {"ref": "raw/0/1", "id": "raw/0/1"}, "body": body})
    out = YieldingOutbox()
    out.limit = 128 * 1024

    asyncio.run(results.handle(ctx, out, Received(b"domain:example.com", record, "vt.responses/0/1", 2.0)))
    assert max(len(orjson.dumps(value)) for _, value in out.sent) < 128 * 1024
    assert not [value for topic, value in out.sent if topic == "vt.dead"]
    (summary,) = [card for _, card in out.summaries()]
    assert summary["found"] is True and 0 < len(summary["resolutions"]) < 4_000
    assert summary["resolutions_omitted"] == 4_000 - len(summary["resolutions"])
    assert any("summary trimmed to fit a Kafka record" in note for note in summary["notes"])
    assert any(note.startswith("STIX bundle without") for note in summary["notes"])
    assert [topic for topic, _ in out.sent].count("indicators.stix") == 1
    assert len(ctx.cache[b"domain:example.com"]) < 128 * 1024


@pytest.mark.parametrize("run", [None, "november"])
def test_a_bundle_caused_by_a_replayed_record_carries_the_run(run):
    """The bundle follows the sighting whose request was answered: replayed, it is marked; live, it is not."""
    async def scenario() -> YieldingOutbox:
        settings = Settings.of(outputs_publish=("events", "stix"))
        ctx = Context(settings=settings, app=None, topics={}, cache={}, quota={},  # type: ignore[arg-type]
                      mappings=load_mappings(settings.mappings_dir))
        out = YieldingOutbox()
        doc = orjson.loads(answer("found"))
        if run:
            doc["origin"]["replay"] = run
        await results.handle(ctx, out, Received(KEY, orjson.dumps(doc), "vt.responses/0/1", 2.0))
        return out

    (bundle,) = [value for topic, value in asyncio.run(scenario()).sent if topic == STIX]
    marks = {o.get("x_vtstream_replay") for o in bundle["objects"] if o["type"] == "malware-analysis"}
    assert marks == {run}
