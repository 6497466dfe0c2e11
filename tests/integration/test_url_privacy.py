"""URL privacy over a real broker and the emulator: what VirusTotal receives, what the outputs say."""

from __future__ import annotations

import pytest
from tests.support.emulator import received
from tests.support.kafka import collect, finals, produce, wait_finals
from tests.support.settings import fast_retries

from topics import DEAD, RAW

pytestmark = pytest.mark.integration

SECRETS = ("Hunter2pw", "TOKa1", "TOKb2", "SIGc3", "AKIAEXAMPLE", "TOKd4", "TOKe5")
SAFE_LINK = ("https://eur01.safelinks.protection.outlook.com/"
             "?url=https%3A%2F%2Fbank.example.com%2Freset%3Ftoken%3DTOKe5&data=05")


@pytest.mark.parametrize("api", ["v3", "v2"])
def test_virustotal_never_receives_userinfo_or_tokens(kafka, emulator_factory, worker_factory, api):
    # Every URL is unknown, so each is looked up, submitted and polled: all three paths out.
    emulator = emulator_factory("--scan-seconds", "1", "--not-found-ratio", "1.0")
    worker = worker_factory(kafka, emulator.url, vt_api_version=api, **fast_retries())
    produce(kafka, RAW, [
        "hxxps://alice:Hunter2pw@portal[.]example[.]com/login?token=TOKa1&lang=en",
        {"value": "https://portal.example.com/login?token=TOKb2&lang=en", "id": "second"},
        "https://bucket.s3.amazonaws.com/r.pdf?X-Amz-Credential=AKIAEXAMPLE%2F20261130"
        "&X-Amz-Signature=SIGc3&X-Amz-Expires=60",
        SAFE_LINK,  # a reset link wrapped by a mail gateway
        '{"value": "https://bob:Hunter2pw@x.example.com/?sid=TOKd4", "type": "domain"}',  # dead-lettered
    ])
    events = wait_finals(kafka, 4)
    dead = collect(kafka, DEAD, lambda recs: len(recs) >= 1, timeout=30)
    sent = received(emulator)
    assert not [secret for secret in SECRETS if secret in sent]
    assert "vtstream-demo-key" not in sent  # the log masks v2's apikey parameter
    assert "https://portal.example.com/login?lang=en" in sent  # the log shows what was sent
    assert "https://bucket.s3.amazonaws.com/r.pdf?X-Amz-Expires=60" in sent
    stats = emulator.stats()
    assert stats["submission_requests"] == 3 and stats["analysis_requests"] >= 3  # one per sent form

    by_value = {e["indicator"]["value"]: e["summary"] for e in finals(events)}
    first = by_value["https://alice:Hunter2pw@portal.example.com/login?token=TOKa1&lang=en"]
    assert first["checked"] is True and first["redacted"] == ["userinfo", "token"]
    assert first["sent_as"] == "https://portal.example.com/login?lang=en"
    second = by_value["https://portal.example.com/login?token=TOKb2&lang=en"]
    assert second["checked"] is True and second["redacted"] == ["token"]
    assert second["sent_as"] == "https://portal.example.com/login?lang=en"
    signed = by_value["https://bucket.s3.amazonaws.com/r.pdf?X-Amz-Credential=AKIAEXAMPLE%2F20261130"
                      "&X-Amz-Signature=SIGc3&X-Amz-Expires=60"]
    assert signed["redacted"] == ["X-Amz-Credential", "X-Amz-Signature"]
    assert by_value[SAFE_LINK]["redacted"] == ["safelinks", "token"]  # the wrapper is taken off too
    assert by_value[SAFE_LINK]["sent_as"] == "https://bank.example.com/reset"

    (letter,) = dead
    assert letter["stage"] == "intake" and "REDACTED" in letter["original"]["text"]
    worker.stop()
    leaks = repr(dead) + worker.output()
    assert not [secret for secret in SECRETS if secret in leaks]
