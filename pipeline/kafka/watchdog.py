"""The worker's watch on Kafka: ride out a broker that is away, stop when it stays away too long.

faust's and aiokafka's clients reconnect on their own while brokers restart or
fail over, and the worker keeps what it holds, so a worker should outlive a
broker outage. But a worker whose Kafka never comes back would wait forever,
invisibly. :class:`KafkaWatch` probes the bootstrap servers (one connection
with the clients' own TLS/SASL options, as the start-up check does); after
``VTSTREAM_KAFKA_UNAVAILABLE_EXIT_S`` seconds without an answer it asks the
worker to stop, and :func:`pipeline.app.run_worker` exits non-zero with one
line that names the setting and the bootstrap servers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

from pipeline.kafka.security import reachable
from pipeline.settings import Settings

log = logging.getLogger("vtstream.kafka.watchdog")


class KafkaWatch:
    """How long Kafka has been unreachable, and the verdict once that passes the setting."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings, self.clock = settings, clock
        self.limit = settings.kafka.unavailable_exit_s
        self.gone_since: float | None = None
        self.verdict: str | None = None

    @property
    def interval(self) -> float:
        """Seconds between probes: often enough to notice well within the limit."""
        return min(5.0, max(0.5, self.limit / 5))

    def observe(self, answered: bool) -> bool:
        """Record one probe's outcome; True once Kafka has been away for the whole limit.

        >>> now = [0.0]
        >>> watch = KafkaWatch(Settings.of(kafka_unavailable_exit_s=10), clock=lambda: now[0])
        >>> watch.observe(False), watch.observe(True), watch.observe(False)
        (False, False, False)
        >>> now[0] = 9.9; watch.observe(False)
        False
        >>> now[0] = 10.0; watch.observe(False), watch.verdict is not None
        (True, True)
        """
        now = self.clock()
        if answered:
            if self.gone_since is not None:
                log.warning("Kafka at %s answers again after %.0f s", self.settings.kafka.bootstrap,
                            now - self.gone_since)
            self.gone_since = None
            return False
        if self.gone_since is None:
            self.gone_since = now
            log.warning("Kafka at %s does not answer; the worker keeps reconnecting and exits if it stays away "
                        "for %g s (VTSTREAM_KAFKA_UNAVAILABLE_EXIT_S)", self.settings.kafka.bootstrap, self.limit)
        if now - self.gone_since < self.limit:
            return False
        self.verdict = (f"Kafka at {self.settings.kafka.bootstrap} has not answered for {self.limit:g} s "
                        "(VTSTREAM_KAFKA_UNAVAILABLE_EXIT_S); check the brokers and VTSTREAM_KAFKA_BOOTSTRAP")
        return True

    async def run(self, stop: Callable[[], Awaitable[None]]) -> None:
        """Probe until Kafka has been away for the limit, then call ``stop``."""
        while not self.observe(await reachable(self.settings)):
            await asyncio.sleep(self.interval)
        log.error("%s; stopping", self.verdict)
        await stop()
