"""Dead letters: what goes to vt.dead when a record cannot be processed.

Pure: builds the :class:`~pipeline.contracts.wire.DeadLetter` record; the
stages send it. A dead letter is bounded whatever the record was: at most the
first :data:`KEEP_BYTES` of the original, scrubbed, plus the original's length
and SHA-256, so an operator can tell which record it was and a hostile one
cannot make vt.dead itself outgrow Kafka. :func:`minimal_dead_letter` is the
last resort when even that cannot be built.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson

from pipeline.contracts.events import iso_utc
from pipeline.contracts.wire import DeadLetter, VtRequest
from pipeline.rules.privacy import UrlPrivacy, scrub, scrub_all, scrub_prefix

#: Most of an original a dead letter keeps, after scrubbing (bytes of its UTF-8 or raw form).
KEEP_BYTES = 64 * 1024
#: Most of a reason or an error message a dead letter keeps (characters).
NOTE_CHARS = 4096


def dead_letter(original: bytes | Any, *, stage: str, reason: str, privacy: UrlPrivacy,
                error: str | None = None, attempts: int = 1, ref: str | None = None,
                error_type: str | None = None) -> DeadLetter:
    """A vt.dead record: the start of the original record, where and why it failed.

    ``original`` is kept as text when it is UTF-8, else as base64, a record
    vtstream built as its wire form, so an operator can fix and replay it; only
    URL secrets (``privacy``: userinfo and secret parameters) are replaced by
    ``REDACTED``, in the original, the reason and the error alike. An original
    of more than :data:`KEEP_BYTES` keeps its start only (``truncated``). The
    API key never reaches this function.
    """
    whole = _wire_form(original)
    kept, truncated = _kept(original, whole, privacy)
    return DeadLetter(original=kept, stage=stage, reason=scrub(reason, privacy, NOTE_CHARS),
                      error=None if error is None else scrub(error, privacy, NOTE_CHARS), attempts=attempts,
                      failed_at=iso_utc(), original_length=None if whole is None else len(whole),
                      original_sha256=None if whole is None else hashlib.sha256(whole).hexdigest(),
                      truncated=truncated, ref=ref, error_type=error_type)


def minimal_dead_letter(original: bytes | None, *, stage: str, reason: str, error_type: str | None,
                        ref: str | None) -> DeadLetter:
    """The dead letter to send when building :func:`dead_letter` failed: nothing of the original
    but its length and SHA-256, so the record is named and nothing of it can fail again."""
    raw = original if isinstance(original, bytes) else None
    return DeadLetter(original={}, stage=stage, reason=reason, error=None, attempts=1, failed_at=iso_utc(),
                      original_length=None if raw is None else len(raw),
                      original_sha256=None if raw is None else hashlib.sha256(raw).hexdigest(),
                      truncated=raw is not None and len(raw) > 0, ref=ref, error_type=error_type)


def _wire_form(original: bytes | Any) -> bytes | None:
    """The bytes the original was (a record vtstream built: its JSON), or None if it has none."""
    if isinstance(original, (bytes, bytearray)):
        return bytes(original)
    if isinstance(original, VtRequest):
        return original.to_bytes()
    try:
        return orjson.dumps(original)
    except (TypeError, orjson.JSONEncodeError):  # not JSON, or nested past orjson's depth
        return None


def _kept(original: bytes | Any, whole: bytes | None, privacy: UrlPrivacy) -> tuple[dict[str, Any], bool]:
    """What the dead letter keeps of the original, and whether it was cut."""
    if not isinstance(original, (bytes, bytearray)):
        if whole is None:
            return ({"record": None}, False) if original is None else ({}, True)
        if len(whole) <= KEEP_BYTES:
            record = original.to_dict() if isinstance(original, VtRequest) else original
            return {"record": scrub_all(record, privacy)}, False
    assert whole is not None
    try:
        text, encoding, form = whole.decode("utf-8"), "utf-8", "text"
    except UnicodeDecodeError:  # latin-1 maps byte for byte, so only the secrets change
        text, encoding, form = whole.decode("latin-1"), "latin-1", "base64"
    scrubbed, cut = scrub_prefix(text, privacy, KEEP_BYTES)
    kept = scrubbed.encode(encoding, "replace")
    truncated = cut < len(text) or len(kept) > KEEP_BYTES
    kept = kept[:KEEP_BYTES]
    if form == "text":
        return {"text": kept.decode("utf-8", "ignore")}, truncated  # a character cut in two is dropped
    return {"base64": base64.b64encode(kept).decode("ascii")}, truncated
