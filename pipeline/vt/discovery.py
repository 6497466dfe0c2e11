"""The key's allowances read from VirusTotal, at start and every hour.

With API v3 the gateway asks ``GET /api/v3/users/{key}/overall_quotas`` and the
governor uses, per period, the smaller of what VirusTotal reports and what is
configured (:func:`pipeline.rules.allowances.effective`). When VirusTotal does
not say (v2, 404, 403, an error, an answer without allowances) the settings
alone count, and the log says so once, not every hour. The key sits in the
request's path; the client names it ``***`` in every error, and nothing here
logs the URL.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from pipeline.vt.client import VirusTotalClient
from pipeline.vt.errors import VirusTotalError
from pipeline.vt.governor import Governor

log = logging.getLogger("vtstream.vt.discovery")

#: How often VirusTotal is asked again.
REFRESH_S = 3600.0


class AllowanceWatch:
    """Reads the key's allowances into ``governor``; says once when VirusTotal does not tell them."""

    def __init__(self, governor: Governor, api_version: str) -> None:
        self.governor, self.api_version = governor, api_version
        self._said_unavailable = False
        self._started = False

    async def refresh(self, client: VirusTotalClient) -> None:
        """Ask once and apply the answer (or the settings alone)."""
        if self.api_version != "v3":
            self._unavailable("API v2 has no quota endpoint")
            return
        try:
            reported = await client.overall_quotas()
        except VirusTotalError as exc:
            self._unavailable(f"{type(exc).__name__}: {exc}")
            return
        if reported is None:
            self._unavailable("VirusTotal did not report the key's allowances (404 or no allowance in the answer)")
            return
        before = self.governor.rate_per_minute, self.governor.daily_quota, self.governor.monthly_quota
        self.governor.adopt(reported)
        self._said_unavailable = False
        after = self.governor.rate_per_minute, self.governor.daily_quota, self.governor.monthly_quota
        if after != before:
            log.info("VirusTotal reports the key's allowances (hourly %s, daily %s, monthly %s); the gateway "
                     "uses %d/min, %d/day, %s/month", reported.hourly, reported.daily, reported.monthly,
                     after[0], after[1], after[2] or "unlimited")

    def _unavailable(self, why: str) -> None:
        self.governor.adopt(None, note=why)
        if not self._said_unavailable:
            log.info("The key's allowances are not available from VirusTotal (%s); the settings alone "
                     "count (VTSTREAM_VT_RATE_PER_MINUTE, VTSTREAM_VT_DAILY_QUOTA, VTSTREAM_VT_MONTHLY_QUOTA)",
                     why)
            self._said_unavailable = True

    async def start(self, client: VirusTotalClient,
                    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> "asyncio.Task[None] | None":
        """The first reading (awaited, so the first call already obeys it), then one every hour in a
        task the caller cancels when its client closes; None if another caller started it already."""
        if self._started:
            return None
        self._started = True
        await self.refresh(client)

        async def every_hour() -> None:
            try:
                while True:
                    await sleep(REFRESH_S)
                    await self.refresh(client)
            finally:
                self._started = False  # the next agent to start takes over

        return asyncio.ensure_future(every_hour())
