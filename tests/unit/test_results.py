"""The results stage against the lookup stage on one worker, with no broker.

Both are faust agents in one event loop: the lookup agent runs whenever the
results agent awaits a send. These tests drive the two handlers the same way.
"""

import asyncio

import orjson
import pytest

from pipeline import lookup, results
from pipeline.mapping import load_mappings
from pipeline.runtime import Context, Outbox
from pipeline.settings import Settings

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

    def summaries_for(self) -> dict[str, dict]:
        """Summary cards sent, by the sighting's id."""
        return {e["origin"]["id"]: e["summary"] for t, e in self.sent if t == "indicators.enriched"
                and e["kind"] == "summary"}


def context() -> Context:
    settings = Settings()
    return Context(settings=settings, app=None, topics={}, cache={}, quota={},  # type: ignore[arg-type]
                   mappings=load_mappings(settings.mappings_dir))


def run(status: str) -> YieldingOutbox:
    """Sighting 1 is in flight and 2 waits; 3 arrives between two sends of the answer's handling."""
    async def scenario() -> YieldingOutbox:
        ctx, out = context(), YieldingOutbox()
        await lookup.handle(ctx, out, KEY, sighting("raw/0/1"), 1.0)
        await lookup.handle(ctx, out, KEY, sighting("raw/0/2"), 1.0)
        await asyncio.gather(results.handle(ctx, out, KEY, answer(status), 2.0),
                             lookup.handle(ctx, out, KEY, sighting("raw/0/3"), 2.0))
        return out

    return asyncio.run(scenario())


def test_a_duplicate_that_joins_while_the_answer_is_mapped_gets_its_summary():
    out = run("found")
    assert set(out.summaries_for()) == {"raw/0/1", "raw/0/2", "raw/0/3"}


def test_a_sighting_after_a_failed_answer_asks_again_instead_of_waiting_forever():
    out = run("error")
    assert set(out.summaries_for()) == {"raw/0/1", "raw/0/2"}
    asked = [e["origin"]["id"] for t, e in out.sent if t == "vt.requests"]
    assert asked == ["raw/0/1", "raw/0/3"]
