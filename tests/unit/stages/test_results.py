"""The results stage against the lookup stage on one worker, with no broker.

Both are faust agents in one event loop: the lookup agent runs whenever the
results agent awaits a send. These tests drive the two handlers the same way.
"""

import asyncio

import orjson
import pytest

from pipeline.contracts.events import iso_utc
from pipeline.kafka.runtime import Context, Outbox, Received
from pipeline.mapping import load_mappings
from pipeline.settings import Settings
from pipeline.stages import lookup, results, sightings
from tests.support.stages import stage_context
from topics import DEAD, ENRICHED, REQUESTS, STIX

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


def context(settings: Settings | None = None) -> Context:
    """A worker's lookup and results context with the mapping YAML loaded."""
    settings = settings or Settings()
    return stage_context(settings, mappings=load_mappings(settings.mappings_dir))


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
    ctx = context(settings)
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
    assert not [value for topic, value in out.sent if topic == DEAD]
    (summary,) = [card for _, card in out.summaries()]
    assert summary["found"] is True and 0 < len(summary["resolutions"]) < 4_000
    assert summary["resolutions_omitted"] == 4_000 - len(summary["resolutions"])
    assert any("summary trimmed to fit a Kafka record" in note for note in summary["notes"])
    assert any(note.startswith("STIX bundle without") for note in summary["notes"])
    assert [topic for topic, _ in out.sent].count(STIX) == 1
    assert len(ctx.cache[b"domain:example.com"]) < 128 * 1024


@pytest.mark.parametrize("run", [None, "november"])
def test_a_bundle_caused_by_a_replayed_record_carries_the_run(run):
    """The bundle follows the sighting whose request was answered: replayed, it is marked; live, it is not."""
    async def scenario() -> YieldingOutbox:
        settings = Settings.of(outputs_publish=("events", "stix"))
        ctx = context(settings)
        out = YieldingOutbox()
        doc = orjson.loads(answer("found"))
        if run:
            doc["origin"]["replay"] = run
        await results.handle(ctx, out, Received(KEY, orjson.dumps(doc), "vt.responses/0/1", 2.0))
        return out

    (bundle,) = [value for topic, value in asyncio.run(scenario()).sent if topic == STIX]
    marks = {o.get("x_vtstream_replay") for o in bundle["objects"] if o["type"] == "malware-analysis"}
    assert marks == {run}


# ------------------------------------------------------------------ verdict changes

DAY = 86400.0
T = 1_790_000_000.0


def verdict_answer(malicious: int, received_at: float, ref: str = "raw/0/1", replay: str | None = None) -> bytes:
    body = {"data": {"id": "8.8.8.8", "type": "ip_address", "attributes": {
        "last_analysis_stats": {"malicious": malicious, "harmless": 70 - malicious}, "last_analysis_date": T}}}
    origin = {"ref": ref, "id": ref, "received_at": received_at, **({"replay": replay} if replay else {})}
    return orjson.dumps({"status": "found", "api": "v3", "action": "submit_ip", "indicator": INDICATOR,
                         "origin": origin, "body": body})


class Worker:
    """The lookup, results and sightings handlers of one worker over one cache and one verdict memory."""

    def __init__(self, **settings) -> None:
        self.settings = Settings.of(outputs_publish=("events", "stix"), **settings)
        self.ctx = context(self.settings)
        self.out = YieldingOutbox()

    def answer(self, malicious: int, at: float, offset: int, **origin) -> None:
        record = Received(KEY, verdict_answer(malicious, at - 1, **origin), f"vt.responses/0/{offset}", at)
        asyncio.run(results.handle(self.ctx, self.out, record))

    def hits(self, n: int, at: float) -> None:
        """``n`` live sightings answered from the cache, counted and sent to the memory's owner."""
        for _ in range(n):
            self.ctx.sightings.saw(KEY.decode(), at)
        for key, tally in self.ctx.sightings.take():
            asyncio.run(sightings.handle(self.ctx, self.out, Received(key.encode(), tally.to_bytes(),
                                                                      "vt.sightings/0/1", at)))

    def changes(self) -> list[dict]:
        return [e for t, e in self.out.sent if t == ENRICHED and e["kind"] == "verdict_change"]

    def indicators(self) -> list[dict]:
        return [o for t, b in self.out.sent if t == STIX for o in b["objects"] if o["type"] == "indicator"]


def test_a_clean_answer_then_a_detection_is_one_verdict_change_and_the_stix_indicator_is_revoked_later():
    worker = Worker()
    worker.answer(0, T, offset=1)  # clean, the first time vtstream asks
    assert worker.changes() == [] and worker.indicators() == []
    worker.hits(3, T + 3600)  # three sightings answered from the cache meanwhile
    worker.answer(12, T + DAY, offset=2, ref="raw/0/9")  # the cache expired: asked again, now flagged
    (change,) = worker.changes()
    assert (change["previous"]["verdict"], change["current"]["verdict"]) == ("benign", "malicious")
    assert change["previous"]["positives"] == 0 and change["current"]["positives"] == 12
    assert change["sightings"] == 4 and change["first_seen"] == iso_utc(T + 3600)  # 3 hits and the one that asked
    assert "replay" not in change
    (indicator,) = worker.indicators()  # the bundle after it carries the indicator
    worker.answer(12, T + 2 * DAY, offset=3)  # flagged again: no change, a new version of the same indicator
    assert len(worker.changes()) == 1
    worker.answer(0, T + 3 * DAY, offset=4)  # clean again
    assert [c["current"]["verdict"] for c in worker.changes()] == ["malicious", "benign"]
    first, again, revoked = worker.indicators()
    assert first["id"] == again["id"] == revoked["id"] and revoked["revoked"] is True
    assert revoked["modified"] > again["modified"] > first["modified"]


def test_an_answer_handled_again_after_a_crash_publishes_the_same_change_event():
    worker = Worker()
    worker.answer(0, T, offset=1)
    worker.answer(12, T + DAY, offset=2)
    worker.answer(12, T + DAY + 60, offset=2)  # the same vt.responses record, after a restart
    first, again = worker.changes()
    assert first["event_id"] == again["event_id"] and first["current"] == again["current"]


def test_a_change_a_replay_found_carries_the_run_and_replayed_sightings_are_not_counted():
    worker = Worker()
    worker.answer(0, T, offset=1)
    worker.answer(12, T + DAY, offset=2, ref="siem.archive/0/4", replay="retrohunt-2026-09-22")
    (change,) = worker.changes()
    assert change["replay"] == "retrohunt-2026-09-22" and change["sightings"] == 0 and change["first_seen"] is None


def test_verdict_changes_off_keeps_no_memory_and_tells_nothing():
    worker = Worker(outputs_verdict_changes=False)
    worker.answer(0, T, offset=1)
    worker.answer(12, T + DAY, offset=2)
    assert worker.changes() == [] and worker.ctx.verdicts == {}
