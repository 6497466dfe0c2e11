"""The lookup stage remembers a request as on Kafka only once the broker acknowledged it."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.rules.cache import SentRequests
from pipeline.stages.lookup import _remember_when_acked

pytestmark = pytest.mark.unit


def test_only_an_acknowledged_request_is_remembered() -> None:
    async def run() -> SentRequests:
        sent, loop = SentRequests(), asyncio.get_running_loop()
        acks = {name: loop.create_future() for name in ("acked", "refused", "travelling")}
        for generation, ack in acks.items():
            _remember_when_acked(sent, generation, ack)
        acks["acked"].set_result(None)
        acks["refused"].set_exception(RuntimeError("the broker went away"))
        await asyncio.sleep(0)
        acks["refused"].exception()  # retrieved: no "never retrieved" warning
        return sent

    sent = asyncio.run(run())
    assert "acked" in sent and "refused" not in sent and "travelling" not in sent
