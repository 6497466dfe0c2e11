"""The privacy gate, taken the same way at intake and at the gateway's edge."""

from __future__ import annotations

import pytest

from pipeline.contracts.card import SummaryCard
from pipeline.contracts.events import SummaryEvent
from pipeline.contracts.indicator import Indicator
from pipeline.contracts.origin import Origin
from pipeline.contracts.wire import VtRequest
from pipeline.rules.gate import at_edge, judge
from pipeline.rules.labels import origin_labels, read_labels
from pipeline.settings import Settings

pytestmark = pytest.mark.unit

S = Settings.of(policy_internal_domains=("corp.example",))


def edge(indicator: Indicator, origin: Origin = Origin(ref="r"), settings: Settings = S):
    request = VtRequest(indicator, indicator.action, "v3", origin)
    return at_edge(request, settings.policy, settings.privacy)


def test_the_gateway_redacts_or_refuses_a_request_that_came_round_intake():
    sent, refused = edge(Indicator("url", "https://u:p@host.com/?token=a"))
    assert refused is None and sent.indicator.value == "https://host.com/"
    assert sent.origin.as_seen is not None and sent.origin.as_seen.redacted == ("userinfo", "token")
    held, refused = edge(Indicator("url", "https://u:p@host.com/?token=a"), settings=Settings.of(privacy_mode="skip"))
    assert refused and held.indicator.value == "https://u:p@host.com/?token=a"
    summary = SummaryEvent.of(SummaryCard(found=True), indicator=held.indicator, action="submit_url", api="v3",
                              origin=held.origin).to_dict()["summary"]
    assert "sent_as" not in summary  # not sent: no sent_as
    clean = VtRequest(Indicator("url", "https://host.com/"), "submit_url", "v3", Origin(ref="r"))
    assert at_edge(clean, S.policy, S.privacy) == (clean, None)


@pytest.mark.parametrize("indicator, origin, rule", [
    (Indicator("ip", "8.8.8.8"), Origin(labels=("TLP-RED",)), "blocked_label"),
    (Indicator("ip", "8.8.8.8"), Origin(tags=("TLP:RED",)), "blocked_label"),
    (Indicator("ip", "8.8.8.8"), Origin(tlp=("red",)), "blocked_label"),
    (Indicator("ip", "8.8.8.8"), Origin(labels=("PAP:RED",)), "blocked_label"),
    (Indicator("ip", "8.8.8.8"), Origin(labels=("TLP:ROT",)), "unknown_label"),
    (Indicator("ip", "10.0.0.1"), Origin(), "private_address"),
    (Indicator("domain", "dc01.corp.example"), Origin(), "internal_domain"),
    (Indicator("url", "https://printer.local/"), Origin(), "special_use_domain"),
    (Indicator("sha256", "a" * 64), Origin(labels=("TLP:AMBER+STRICT",)), "blocked_label"),
])
def test_a_crafted_request_is_judged_by_the_whole_policy_not_only_url_privacy(indicator, origin, rule):
    """What intake would have skipped, the edge refuses: labels, addresses, domains."""
    request, refused = edge(indicator, origin)
    assert refused is not None and request.indicator == indicator
    assert judge(indicator, origin_labels(origin), S.policy, S.privacy).rule == rule


@pytest.mark.parametrize("value, sent", [
    ("https://evil.xyz\\@bank.xyz/login", "https://evil.xyz/@bank.xyz/login"),  # not bank.xyz's clean verdict
    ("HTTPS://EVIL.xyz:443/a", "https://evil.xyz/a"),
    ("https://ev\til.xyz/", "https://evil.xyz/"),
])
def test_a_request_that_is_not_normalized_is_normalized_as_intake_would(value, sent):
    request, refused = edge(Indicator("url", value))
    assert refused is None and request.indicator.value == sent
    assert request.origin.as_seen is not None and request.origin.as_seen.value == value


@pytest.mark.parametrize("indicator, needle", [
    (Indicator("url", "http://0x7f.1/admin"), "loopback"),  # the browser's 127.0.0.1
    (Indicator("url", "https://bank.xyz%40evil.xyz/"), "not one"),
    (Indicator("ip", "not-an-ip"), "not one"),
    (Indicator("domain", "a..b"), "not one"),
])
def test_a_request_whose_indicator_is_not_one_or_hides_a_private_host_is_refused(indicator, needle):
    _, refused = edge(indicator)
    assert refused is not None and needle in refused


def test_an_unwrapped_link_is_judged_by_its_own_host():
    wrapped = Indicator("url", "https://eur01.safelinks.protection.outlook.com/?url=https%3A%2F%2Fwiki.corp.example"
                               "%2Fpage&data=05%7C02%7Calice%40corp.example&reserved=0")
    verdict = judge(wrapped, (), S.policy, S.privacy)
    assert verdict.rule == "internal_domain" and "the link it wraps" in (verdict.reason or "")
    assert verdict.indicator == wrapped


def test_labels_of_the_origin_are_read_from_every_field():
    origin = Origin(labels=("ops",), tags=("TLP-GREEN",), tlp=("amber",))
    assert [label.key for label in origin_labels(origin)] == ["ops", "tlp:green", "tlp:amber"]
    assert read_labels(origin.labels, origin.tags, origin.tlp) == origin_labels(origin)


def test_redaction_mode_and_values_reach_the_edge():
    settings = Settings.of(privacy_redact_values=())
    request, refused = edge(Indicator("url", "https://h.example.com/?u=alice%40corp.example"), settings=settings)
    assert refused is None and request.indicator.value == "https://h.example.com/?u=alice%40corp.example"
    request, _ = edge(Indicator("url", "https://h.example.com/?u=alice%40corp.example"))
    assert request.indicator.value == "https://h.example.com/"
