"""Stage 3, gateway: vt.requests -> VirusTotal -> vt.responses.

vt.requests has one partition, so exactly one worker in the group runs the
gateway at a time and holds the key's pace and daily count. Requests are
handled one after another, each acknowledged only after its answer is on
vt.responses.

What happens on each VirusTotal error (see pipeline.errors):

- not found: a result (status ``not_found``), not an error;
- 401 wrong key: log once, stop calling, hold the record and retry every
  ``HOLD_SECONDS`` until the key works again: nothing is dead-lettered;
- 429 / v2 204: wait ``Retry-After`` (or a growing backoff) and call again;
- daily quota spent, 400, 403, and 5xx/timeouts/garbled bodies after
  ``MAX_ATTEMPTS``: an ``error`` response (every waiting sighting gets a
  "not checked" summary) plus a vt.dead record that can be replayed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from topics import DEAD, RESPONSES

from .errors import (DailyQuotaExhausted, QuotaExceeded, VirusTotalError, VtStreamError,
                     WrongCredentials)
from .events import dead_letter, iso_utc
from .governor import Governor
from .indicators import Indicator
from .runtime import Context, Outbox
from .vtclient import VirusTotalClient

log = logging.getLogger("vtstream.gateway")

MAX_ATTEMPTS = 3
HOLD_SECONDS = 60.0
BACKOFF_CAP = 300.0


class Gateway:
    """Calls VirusTotal for one request record at a time, under the governor."""

    def __init__(self, ctx: Context, client: VirusTotalClient, governor: Governor) -> None:
        self.ctx = ctx
        self.client = client
        self.governor = governor
        self._key_rejected = False

    async def handle(self, out: Outbox, key: bytes, value: bytes) -> None:
        try:
            record = orjson.loads(value)
            indicator = Indicator(record["indicator"]["type"], record["indicator"]["value"])
            api, action = record["api"], record["action"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            await out.send(DEAD, key, dead_letter(value, stage="gateway", reason="malformed vt.requests record",
                                                  error=repr(exc)))
            return
        response = {k: record.get(k) for k in ("key", "indicator", "action", "api", "origin")}
        error, attempts = await self._call(indicator, api, action, response)
        if error is not None:
            reason = ("not checked: daily quota exhausted" if isinstance(error, DailyQuotaExhausted)
                      else f"not checked: {type(error).__name__}")
            response.update(status="error", error={"type": type(error).__name__, "message": str(error),
                                                   "retryable": error.retryable}, reason=reason)
            await out.send(DEAD, key, dead_letter(record, stage="gateway", reason=reason, error=str(error),
                                                  attempts=attempts))
        response["fetched_at"] = iso_utc()
        await out.send(RESPONSES, key, response)

    async def _call(self, indicator: Indicator, api: str, action: str,
                    response: dict[str, Any]) -> tuple[VtStreamError | None, int]:
        """Call until an answer, a final error, or MAX_ATTEMPTS transient failures."""
        attempts = 0
        quota_backoff = 60.0 / self.ctx.settings.vt_rate_per_minute
        while True:
            attempts += 1
            try:
                result = await self.client.lookup(indicator, self.governor.acquire, api=api,
                                                  relationships=self.ctx.mappings.relationships(api, action))
            except WrongCredentials as exc:
                if not self._key_rejected:
                    log.error("VirusTotal rejected the API key (%s). Calls stop; records are held, not "
                              "dropped. Fix VTSTREAM_VT_API_KEY and restart, or wait: the gateway "
                              "retries every %.0f s.", exc.status, HOLD_SECONDS)
                    self._key_rejected = True
                await asyncio.sleep(HOLD_SECONDS)
                attempts = 0
                continue
            except QuotaExceeded as exc:
                delay = exc.retry_after if exc.retry_after is not None else quota_backoff
                quota_backoff = min(BACKOFF_CAP, quota_backoff * 2)
                log.warning("VirusTotal says the quota is exceeded; waiting %.1f s", delay)
                self.ctx.count("gateway.quota_exceeded")
                await asyncio.sleep(delay)
                continue
            except DailyQuotaExhausted as exc:
                return exc, attempts
            except VirusTotalError as exc:
                self.ctx.count("gateway.errors")
                if exc.retryable and attempts < MAX_ATTEMPTS:
                    log.warning("%s for %s (attempt %d/%d): %s", type(exc).__name__, indicator.key,
                                attempts, MAX_ATTEMPTS, exc)
                    await asyncio.sleep(min(BACKOFF_CAP, 2.0 ** attempts))
                    continue
                return exc, attempts
            if self._key_rejected:
                log.info("VirusTotal accepts the API key again; calls resume")
                self._key_rejected = False
            self.ctx.count("gateway.calls", result.requests)
            response.update(status=result.status, body=result.body, requests=result.requests,
                            relationship_requests=result.relationship_requests, notes=result.notes)
            return None, attempts


def install(ctx: Context) -> None:
    """Register the gateway agent on ctx.app."""
    settings = ctx.settings

    @ctx.app.agent(ctx.topics["requests"], name="gateway")
    async def gateway_agent(stream: Any) -> None:
        governor = Governor(settings.vt_rate_per_minute, settings.vt_daily_quota, clock=ctx.clock)
        async with VirusTotalClient(settings) as client:
            gateway = Gateway(ctx, client, governor)
            out = Outbox(ctx)
            async for event in stream.events():
                try:
                    await gateway.handle(out, event.key or b"", event.value)
                except Exception as exc:  # route, never crash the agent
                    log.exception("gateway: unexpected error")
                    await out.send(DEAD, event.key, dead_letter(event.value, stage="gateway",
                                                                reason="unexpected error", error=repr(exc)))
                await out.flush()
