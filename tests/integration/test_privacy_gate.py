"""The privacy gate over a real broker and the emulator: every spelling of a blocked label is
answered and never sent, the backslash URL is looked up as the host a browser visits, and records
produced straight to the gateway's topics (vt.requests, vt.replay) cannot get round the gate."""

from __future__ import annotations

from dataclasses import replace

import pytest
from tests.support.emulator import received
from tests.support.kafka import finals, produce, wait_finals

from pipeline.contracts.indicator import Indicator
from pipeline.contracts.origin import Origin
from pipeline.contracts.wire import VtRequest
from topics import RAW, REPLAY, REQUESTS

pytestmark = pytest.mark.integration

SIX = [  # the six sightings the issue saw sent to VirusTotal on main
    {"value": "8.8.4.6", "id": "two-in-one", "labels": ["TLP:GREEN,TLP:RED"]},
    {"value": "8.8.4.1", "id": "tags", "tags": ["TLP:RED"]},
    {"value": "8.8.4.2", "id": "hyphen", "labels": ["TLP-RED"]},
    {"value": "8.8.4.3", "id": "fullwidth", "labels": ["ＴＬＰ:ＲＥＤ"]},
    {"value": "8.8.4.4", "id": "pap", "labels": ["PAP:RED"]},
    {"value": "8.8.4.5", "id": "zero-width", "labels": ["TLP:\u200bRED"]},
]
SAFE_LINK = ("https://eur03.safelinks.protection.outlook.com/?url=https%3A%2F%2Fphish.example.net%2Flogin&data=05%7C02"
             "%7Calice.recipient%40corp.example%7Cabc%7C0%7C0&sdata=c2Vj&reserved=0")
PROOFPOINT = ("https://urldefense.proofpoint.com/v2/url?u=https-3A__phish.example.net_login&d=DwMFaQ&c=x"
              "&r=bob-recipient-hash&m=y&s=z&e=")


def test_every_label_spelling_blocks_and_is_answered_and_urls_go_as_browsers_read_them(
        kafka, emulator, worker_factory):
    worker = worker_factory(kafka, emulator.url)
    produce(kafka, RAW, [*SIX, {"value": "https://evil.xyz\\@bank.xyz/login", "id": "backslash"},
                         {"value": SAFE_LINK, "id": "safelinks"}, {"value": PROOFPOINT, "id": "urldefense"}])
    events = wait_finals(kafka, len(SIX) + 3)
    by_id = {e["origin"]["id"]: e["summary"] for e in finals(events)}
    for sighting in SIX:
        summary = by_id[sighting["id"]]
        assert summary["checked"] is False and summary["rule"] == "blocked_label", summary
        assert "never sent to VirusTotal" in summary["reason"]
    assert by_id["backslash"]["sent_as"] == "https://evil.xyz/@bank.xyz/login"
    assert by_id["safelinks"]["sent_as"] == by_id["urldefense"]["sent_as"] == "https://phish.example.net/login"
    sent = received(emulator)
    assert not [s["value"] for s in SIX if s["value"] in sent]
    assert "https://evil.xyz/@bank.xyz/login" in sent and "https://bank.xyz/login" not in sent
    assert "recipient" not in sent and "safelinks" not in sent and "urldefense" not in sent
    assert worker.alive()


def request(indicator: Indicator, origin: Origin = Origin(ref="crafted"), action: str | None = None) -> bytes:
    return VtRequest(indicator, action or indicator.action, "v3", origin).to_bytes()


def test_records_produced_straight_to_the_gateway_cannot_get_round_the_gate(kafka, emulator, worker_factory):
    worker = worker_factory(kafka, emulator.url, internal_domains="corp.example")
    crafted = [
        (Indicator("ip", "10.1.2.3"), Origin(ref="private")),
        (Indicator("ip", "8.8.8.8"), Origin(ref="tlp-red", labels=("TLP-RED",))),
        (Indicator("ip", "9.9.9.9"), Origin(ref="tags", tags=("ＴＬＰ:ＲＥＤ",))),
        (Indicator("domain", "dc01.corp.example"), Origin(ref="internal")),
        (Indicator("url", "http://0x7f.1/admin"), Origin(ref="loopback")),
        (Indicator("url", "https://evil.xyz\\@bank.xyz/login"), Origin(ref="backslash")),
        (Indicator("url", SAFE_LINK), Origin(ref="safelinks")),
    ]
    for topic in (REQUESTS, REPLAY):  # a crafted live request, and a crafted replay
        for indicator, origin in crafted:
            produce(kafka, topic, [request(indicator, replace(origin, ref=f"{topic}:{origin.ref}"))],
                    key=indicator.key.encode())
    events = wait_finals(kafka, 2 * len(crafted))
    by_ref = {e["origin"]["ref"]: e["summary"] for e in finals(events)}
    for topic in (REQUESTS, REPLAY):
        for ref in ("private", "tlp-red", "tags", "internal", "loopback"):
            summary = by_ref[f"{topic}:{ref}"]
            assert summary["checked"] is False and "not checked" in summary["reason"], summary
        assert by_ref[f"{topic}:backslash"]["sent_as"] == "https://evil.xyz/@bank.xyz/login"
        assert by_ref[f"{topic}:safelinks"]["sent_as"] == "https://phish.example.net/login"
    sent = received(emulator)
    for leaked in ("10.1.2.3", "8.8.8.8", "9.9.9.9", "dc01.corp.example", "127.0.0.1", "0x7f", "https://bank.xyz/login",
                   "alice.recipient"):
        assert leaked not in sent, leaked
    assert worker.alive()
