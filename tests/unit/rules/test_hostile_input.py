"""Hostile input: intake's parse, dead_letter, scrub and redact on random and adversarial text up to 1 MiB.

Every call must return a value (parse: an outcome, never an exception) within a fixed
bound. The bound is generous (a shared machine is slow), but the quadratic patterns
these tests were written against took minutes on 120 KB; a call over it fails.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Callable
from urllib.parse import quote

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from pipeline.contracts.wire import DeadLetter
from pipeline.rules.deadletter import KEEP_BYTES, dead_letter
from pipeline.rules.privacy import Redaction, redact, scrub
from pipeline.settings import Settings, UrlPrivacy
from pipeline.stages.intake import Accepted, Rejected, Skipped, parse

pytestmark = pytest.mark.unit

MIB = 1 << 20
#: Longest one call may take (seconds), on any input up to 1 MiB.
BOUND_S = 5.0
PRIVACY = UrlPrivacy()
SETTINGS = Settings()

# Pieces hostile records are made of: colon and bracket bombs, separators, encodings,
# userinfo marks, secret names, non-ASCII and invisible characters.
PIECES = ["a:", "a", ":", "@", "//", "/", "?", "&", "=", ";", "#", "%", "%25", "%3A%2F%2F", "%40", "+", "[", "]",
          "[.]", "(dot)", "hxxp", "http://", "https://", "token=", "sig=", "%74oken=", "\\", '"', "'", "<", " ",
          "\t", "\n", "{", "}", "[[", "\u200b", "\uff34", "\u017f", "é", "\U0001f4a9", "0", "1.2.3.4", "::"]


@st.composite
def hostile_text(draw: st.DrawFn) -> str:
    """A block of hostile pieces repeated up to 1 MiB, or random text, with a few pieces after it."""
    if draw(st.booleans()):
        block = "".join(draw(st.lists(st.sampled_from(PIECES), min_size=1, max_size=6)))
    else:
        block = draw(st.text(min_size=1, max_size=64))
    size = draw(st.sampled_from([1, 100, 4096, 65_536, 130_000, MIB]))
    tail = "".join(draw(st.lists(st.sampled_from(PIECES), max_size=4)))
    return (block * (size // len(block) + 1))[:size] + tail


@st.composite
def nested_url(draw: st.DrawFn) -> str:
    """A URL with a secret, wrapped percent-encoded in another URL's parameter, up to 600 times
    (after the first wrapping, encoding again only turns each "%" into "%25")."""
    url = "https://bob:hunter2@bank.example/reset?token=tok-123"
    for level in range(draw(st.integers(0, 600))):
        url = "https://wrap.example/?u=" + (quote(url, safe="") if level == 0 else url.replace("%", "%25"))
    return url


@st.composite
def hostile_record(draw: st.DrawFn) -> bytes:
    """Raw bytes for indicators.raw: hostile text, bytes that are not UTF-8, deep JSON, hostile JSON fields."""
    kind = draw(st.sampled_from(["text", "binary", "deep", "json", "nested"]))
    if kind == "text":
        return draw(hostile_text()).encode("utf-8", "surrogatepass")
    if kind == "binary":
        block = draw(st.binary(min_size=1, max_size=256))
        return (block * (draw(st.sampled_from([1, 1000, 65_536, MIB])) // len(block) + 1))[:MIB]
    if kind == "deep":
        depth = draw(st.integers(1, 200_000))
        opener = draw(st.sampled_from(['[', '{"a":', '{"value":[', '{"file":']))
        return (opener * depth).encode()[:MIB]
    if kind == "nested":
        return orjson.dumps({"value": draw(nested_url()), "labels": ["TLP:GREEN"]})
    field = draw(st.sampled_from(["value", "type", "labels", "tags", "source", "file", "\\u0066ile"]))
    return ('{"%s": "%s"}' % (field, draw(hostile_text()).replace("\\", "\\\\").replace('"', '\\"'))).encode(
        "utf-8", "surrogatepass")


def timed(call: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = call()
    elapsed = time.perf_counter() - started
    assert elapsed < BOUND_S, f"took {elapsed:.1f} s"
    return result


HOSTILE = settings(max_examples=15, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])


@HOSTILE
@given(hostile_text())
def test_scrub_returns_bounded_text_in_bounded_time(text):
    out = timed(lambda: scrub(text, PRIVACY))
    assert isinstance(out, str) and len(out) <= 2 * 72 * 1024 + 100


@HOSTILE
@given(nested_url(), st.sampled_from(["", "see ", "{\"value\": \""]))
def test_scrub_never_prints_a_nested_secret(url, before):
    out = timed(lambda: scrub(before + url + " and more", PRIVACY))
    assert "hunter2" not in out and "tok-123" not in out


@HOSTILE
@given(st.one_of(hostile_text(), nested_url()))
def test_redact_answers_every_string(text):
    got = timed(lambda: redact(text, PRIVACY))
    assert isinstance(got, Redaction)


@HOSTILE
@given(hostile_record())
def test_parse_answers_every_record_with_an_outcome(raw):
    outcome = timed(lambda: parse(raw, "indicators.raw/0/1", SETTINGS))
    assert isinstance(outcome, (Accepted, Skipped, Rejected))


@HOSTILE
@given(hostile_record())
@example(b"a:" * (MIB // 2))
@example(b"\xff" + b"https://bob:hunter2@h.example/ " * 40_000)
def test_a_dead_letter_is_bounded_and_names_its_original(raw):
    letter = timed(lambda: dead_letter(raw, stage="intake", reason="x" * 10_000, privacy=PRIVACY,
                                       ref="indicators.raw/0/1"))
    assert isinstance(letter, DeadLetter)
    encoded = letter.to_bytes()
    assert DeadLetter.from_bytes(encoded) == letter
    assert (letter.original_length, letter.original_sha256) == (len(raw), hashlib.sha256(raw).hexdigest())
    kept = letter.original.get("text", "").encode() or letter.original.get("base64", "").encode()
    assert len(kept) <= KEEP_BYTES * 4 // 3 + 4 and len(encoded) < 8 * KEEP_BYTES
    assert letter.truncated == (len(raw) > KEEP_BYTES) or len(raw) <= KEEP_BYTES
    assert b"hunter2" not in encoded and b"tok-123" not in encoded


def test_the_records_of_the_issue():
    """The 120 KB colon bomb and the URL nested 480 times."""
    bomb = ("a:" * 61_440).encode()
    letter = timed(lambda: dead_letter(bomb, stage="intake", reason="r", privacy=PRIVACY))
    assert letter.truncated and letter.original_length == len(bomb)
    assert letter.original["text"] == bomb[:KEEP_BYTES].decode()  # no '@' after the cut: kept as it is
    url = "https://bob:hunter2@bank.example/?token=tok-123"
    for _ in range(480):
        url = "https://w.example/?u=" + url.replace("%", "%25").replace("?", "%3F").replace("=", "%3D")
    record = orjson.dumps({"value": url})
    outcome = timed(lambda: parse(record, "indicators.raw/0/2", SETTINGS))
    assert isinstance(outcome, Rejected)
    letter = timed(lambda: dead_letter(record, stage="intake", reason=outcome.reason, privacy=PRIVACY))
    assert b"hunter2" not in letter.to_bytes() and b"tok-123" not in letter.to_bytes()
