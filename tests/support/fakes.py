"""Fakes the stage unit tests share: a clock that moves only when told, an outbox that keeps what is sent."""

from __future__ import annotations

import asyncio
from typing import Any

from pipeline.contracts.wire import Outgoing
from pipeline.kafka.runtime import Outbox

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC: far from midnight, so no quota rolls over


class Clock:
    """A clock that moves only when told, or by ``step`` each time it is read (a wait that polls it)."""

    def __init__(self, step: float = 0.0) -> None:
        self.now, self.step = T0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class RecordingOutbox(Outbox):
    """Keeps every record a stage sends, typed, in order; sends resolve at once."""

    def __init__(self) -> None:
        async def send(topic: str, key: bytes | None, value: bytes) -> asyncio.Future[None]:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

        super().__init__(send)
        self.sent: list[tuple[str, Outgoing]] = []

    async def send(self, topic: str, key: bytes | str | None, value: Any) -> None:
        self.sent.append((topic, value))
        await super().send(topic, key, value)

    def topics(self) -> list[str]:
        return [topic for topic, _ in self.sent]

    def one(self, topic: str) -> Any:
        (record,) = [value for t, value in self.sent if t == topic]
        return record


