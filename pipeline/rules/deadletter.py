"""Dead letters: what goes to vt.dead when a record cannot be processed.

Pure: builds the :class:`~pipeline.contracts.wire.DeadLetter` record; the
stages send it.
"""

from __future__ import annotations

import base64
from typing import Any

from pipeline.contracts.events import iso_utc
from pipeline.contracts.wire import DeadLetter, VtRequest
from pipeline.rules.privacy import UrlPrivacy, scrub, scrub_all


def dead_letter(original: bytes | Any, *, stage: str, reason: str, privacy: UrlPrivacy,
                error: str | None = None, attempts: int = 1) -> DeadLetter:
    """A vt.dead record: the original record, where and why it failed.

    ``original`` is kept whole: as text when it is UTF-8, else as base64, a
    record vtstream built as its wire form, so an operator can fix and replay
    it; only URL secrets (``privacy``: userinfo and secret parameters) are
    replaced by ``REDACTED``, in the original, the reason and the error alike.
    The API key never reaches this function.
    """
    if isinstance(original, (bytes, bytearray)):
        try:
            kept: dict[str, Any] = {"text": scrub(bytes(original).decode("utf-8"), privacy)}
        except UnicodeDecodeError:  # latin-1 maps byte for byte, so only the secrets change
            scrubbed = scrub(bytes(original).decode("latin-1"), privacy).encode("latin-1")
            kept = {"base64": base64.b64encode(scrubbed).decode("ascii")}
    elif isinstance(original, VtRequest):
        kept = {"record": scrub_all(original.to_dict(), privacy)}
    else:
        kept = {"record": scrub_all(original, privacy)}
    return DeadLetter(original=kept, stage=stage, reason=scrub(reason, privacy),
                      error=None if error is None else scrub(error, privacy), attempts=attempts,
                      failed_at=iso_utc())
