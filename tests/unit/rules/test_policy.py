"""The policy gate: each rule, their order, and the forms labels and hosts arrive in."""

import pytest

from pipeline.contracts.indicator import Indicator
from pipeline.rules.indicators import classify
from pipeline.rules.policy import ALLOWED, SPECIAL_USE_DOMAINS, Decision, carries_any_label, check
from pipeline.settings import Settings

pytestmark = pytest.mark.unit

DEFAULTS = Settings()
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def gate(value, labels=(), *, block=DEFAULTS.policy.block_labels, allow=(), internal=("corp.acme.com",),
         declared=None):
    return check(classify(value, declared), list(labels), block_labels=block, allow_labels=allow,
                 internal_domains=internal)


def test_allowed_is_a_plain_yes():
    assert ALLOWED == Decision(True) and ALLOWED.reason is None and ALLOWED.rule is None
    assert gate("8.8.8.8") is ALLOWED


@pytest.mark.parametrize("value", [
    "8.8.8.8", "1.1.1.1", "185.220.101.5", "2606:4700:4700::1111", "evil.com",
    "xn--bcher-kva.de", "https://evil.com/login.php", "http://203.0.113.0.evil.com/",
    "http://8.8.8.8:8080/x", "http://[2606:4700:4700::1111]/", "example.com",
    "notcorp.acme.com", "corp.acme.com.evil.com", "localhost.evil.com", "local.evil.com",
    SHA256, "d41d8cd98f00b204e9800998ecf8427e", "64:ff9b::808:808",
])
def test_public_indicators_pass(value):
    assert gate(value) == ALLOWED


# --- rule 1: block labels ---------------------------------------------------------------------

@pytest.mark.parametrize("labels", [
    ["TLP:RED"], ["tlp:red"], ["  TLP:RED  "], ["TLP: RED"], ["TLP:AMBER+STRICT"],
    ["tlp:amber+strict"], ["TLP:GREEN", "TLP:RED"], ("TLP:RED",),
])
def test_default_block_labels_are_never_sent(labels):
    decision = gate("8.8.8.8", labels)
    assert decision.allowed is False
    assert decision.rule == "blocked_label"
    assert "never sent to VirusTotal" in (decision.reason or "")


@pytest.mark.parametrize("labels", [["TLP:AMBER"], ["TLP:GREEN"], ["TLP:CLEAR"], ["RED"], []])
def test_other_labels_are_not_blocked(labels):
    assert gate("8.8.8.8", labels).allowed


def test_block_reason_names_the_label_as_the_event_spelled_it():
    assert gate("8.8.8.8", [" tlp:red "]).reason == (
        "the event is labelled tlp:red; events with that label are never sent to VirusTotal")


def test_custom_block_labels():
    assert gate("8.8.8.8", ["Customer-Confidential"], block=["customer-confidential"]).rule == \
        "blocked_label"
    assert gate("8.8.8.8", ["TLP:RED"], block=[]).allowed


def test_block_label_given_as_a_bare_string_is_one_label_not_its_characters():
    decision = check(Indicator("ip", "8.8.8.8"), "TLP:RED", block_labels="TLP:RED",
                     allow_labels=(), internal_domains=())
    assert decision.rule == "blocked_label"
    # and a single-letter label does not match a block string character by character
    assert check(Indicator("ip", "8.8.8.8"), ["R"], block_labels="TLP:RED",
                 allow_labels=(), internal_domains=()).allowed


@pytest.mark.parametrize("labels", [
    [None, 7, {"x": 1}, "TLP:RED"],  # junk around a real label: still blocked
    [b"TLP:RED", "TLP:RED"],
])
def test_non_string_labels_are_ignored_not_fatal(labels):
    assert gate("8.8.8.8", labels).rule == "blocked_label"


def test_non_string_labels_alone_mean_no_labels():
    assert gate("8.8.8.8", [None, 3, b"TLP:RED"]).allowed
    assert check(Indicator("ip", "8.8.8.8"), None, block_labels=["TLP:RED"],
                 allow_labels=(), internal_domains=()).allowed


def test_empty_block_label_blocks_nothing():
    assert gate("8.8.8.8", ["", " "], block=["", "TLP:RED"]).allowed


# --- rule 2: allow list -----------------------------------------------------------------------

ALLOW = ("TLP:CLEAR", "TLP:GREEN")


@pytest.mark.parametrize("labels", [["TLP:GREEN"], ["tlp:clear"], ["x", " TLP:GREEN "]])
def test_allow_list_lets_labelled_events_through(labels):
    assert gate("8.8.8.8", labels, allow=ALLOW).allowed


@pytest.mark.parametrize("labels, carried", [
    ([], "no label"), (["TLP:AMBER"], "TLP:AMBER"), (["TLP:AMBER", "ops"], "TLP:AMBER, ops"),
])
def test_allow_list_holds_back_everything_else(labels, carried):
    decision = gate("8.8.8.8", labels, allow=ALLOW)
    assert (decision.allowed, decision.rule) == (False, "not_in_allow_list")
    assert decision.reason == (f"the event carries {carried}; only events labelled "
                               "TLP:CLEAR or TLP:GREEN are sent to VirusTotal")


def test_empty_allow_list_allows_all_and_blank_entries_do_not_count():
    assert gate("8.8.8.8", [], allow=()).allowed
    assert gate("8.8.8.8", [], allow=("", "  ")).allowed


@pytest.mark.parametrize("labels, listed", [(["TLP: CLEAR"], True), ([" tlp:Clear\t"], True), (["TLP:CLEARX"], False),
                                            (["TLP:AMBER"], False), ([], False)])
def test_one_label_rule_for_the_allow_list_and_the_upload_check(labels, listed):
    """'TLP: CLEAR' passed the gate's allow list and failed the gateway's upload check (a rule each)."""
    assert gate("8.8.8.8", labels, allow=("TLP:CLEAR",)).allowed is listed
    assert carries_any_label(labels, ("TLP:CLEAR",)) is listed


# --- rule 3: addresses that are not globally routable ------------------------------------------

@pytest.mark.parametrize("value, category", [
    ("10.0.0.1", "a private address (RFC 1918)"),
    ("172.16.5.4", "a private address (RFC 1918)"),
    ("172.31.255.255", "a private address (RFC 1918)"),
    ("192.168.1.1", "a private address (RFC 1918)"),
    ("127.0.0.1", "a loopback address"),
    ("127.8.8.8", "a loopback address"),
    ("169.254.169.254", "a link-local address"),  # cloud metadata endpoint
    ("100.64.0.1", "a carrier-grade NAT address (RFC 6598)"),
    ("100.127.255.254", "a carrier-grade NAT address (RFC 6598)"),
    ("192.0.2.10", "a documentation address (RFC 5737)"),
    ("198.51.100.7", "a documentation address (RFC 5737)"),
    ("203.0.113.9", "a documentation address (RFC 5737)"),
    ("198.18.0.1", "a benchmarking address (RFC 2544)"),
    ("224.0.0.251", "a multicast address"),  # mDNS; ipaddress calls it "global"
    ("239.255.255.250", "a multicast address"),  # SSDP
    ("240.0.0.1", "a reserved address (240.0.0.0/4)"),
    ("255.255.255.255", "the broadcast address"),
    ("0.0.0.0", "the unspecified address"),
    ("0.1.2.3", "a 'this network' address (RFC 791)"),
    ("192.0.0.1", "not a globally routable address"),
    ("::", "the unspecified address"),
    ("::1", "a loopback address"),
    ("fd12:3456:789a::1", "a unique local address (IPv6 ULA, RFC 4193)"),
    ("fc00::1", "a unique local address (IPv6 ULA, RFC 4193)"),
    ("fe80::1%eth0", "a link-local address"),
    ("fec0::1", "a site-local address (deprecated, RFC 3879)"),
    ("ff02::1", "a multicast address"),
    ("2001:db8::1", "a documentation address (RFC 3849)"),
    ("3fff::1", "a documentation address (RFC 9637)"),
    ("100::1", "a discard-only address (RFC 6666)"),
    ("64:ff9b:1::1", "a local-use NAT64 address (RFC 8215)"),
    ("::ffff:10.1.2.3", "a private address (RFC 1918)"),  # normalized to 10.1.2.3
])
def test_non_global_addresses_are_never_sent(value, category):
    decision = gate(value)
    address = classify(value).value
    assert decision == Decision(False, f"{address} is {category}; never sent to VirusTotal",
                                "private_address")


@pytest.mark.parametrize("value, inner", [
    ("2002:a00:1::1", "10.0.0.1"),          # 6to4
    ("64:ff9b::192.168.1.1", "192.168.1.1"),  # NAT64 well-known prefix
    ("::10.0.0.1", "10.0.0.1"),              # IPv4-compatible (deprecated)
])
def test_ipv6_wrappers_of_private_ipv4_are_never_sent(value, inner):
    decision = gate(value)
    assert decision.rule == "private_address"
    assert f"embedding {inner}, a private address (RFC 1918)" in (decision.reason or "")


def test_the_brief_example_reason():
    assert gate("10.0.0.1").reason == (
        "10.0.0.1 is a private address (RFC 1918); never sent to VirusTotal")


def test_hand_built_ipv4_mapped_indicator_is_still_checked():
    decision = check(Indicator("ip", "::ffff:192.168.0.1"), [], block_labels=(), allow_labels=(),
                     internal_domains=())
    assert decision.rule == "private_address" and "192.168.0.1" in (decision.reason or "")


# --- rule 4: internal and special-use domains ---------------------------------------------------

@pytest.mark.parametrize("value, internal", [
    ("corp.acme.com", "corp.acme.com"),
    ("dc01.corp.acme.com", "corp.acme.com"),
    ("a.b.c.corp.acme.com", "corp.acme.com"),
    ("DC01.CORP.ACME.COM.", "corp.acme.com"),
    ("vpn.acme-internal.net", "acme-internal.net"),
])
def test_internal_domains_and_their_subdomains_are_never_sent(value, internal):
    decision = gate(value, internal=("corp.acme.com", "acme-internal.net"))
    name = classify(value).value
    assert decision == Decision(
        False, f"{name} is under the internal domain {internal}; never sent to VirusTotal",
        "internal_domain")


@pytest.mark.parametrize("value", [
    "notcorp.acme.com", "acme.com", "corp.acme.com.evil.net", "xcorp.acme.com",
])
def test_internal_domain_match_is_on_label_boundaries(value):
    assert gate(value).allowed


@pytest.mark.parametrize("configured", [
    "Corp.Acme.Com", " corp.acme.com ", ".corp.acme.com", "*.corp.acme.com", "corp.acme.com.",
])
def test_internal_domain_configuration_is_forgiving(configured):
    assert gate("dc01.corp.acme.com", internal=(configured,)).rule == "internal_domain"


def test_internal_domain_setting_example_from_settings_doc():
    internal = Settings.from_env({"VTSTREAM_INTERNAL_DOMAINS": "corp.acme.com,internal"})
    decision = check(classify("dc01.corp.acme.com"), [], block_labels=(), allow_labels=(),
                     internal_domains=internal.policy.internal_domains)
    assert decision.rule == "internal_domain"


def test_blank_internal_domain_blocks_nothing():
    assert gate("evil.com", internal=("", " ", ".")).allowed


@pytest.mark.parametrize("value, suffix", [
    ("printer.local", "local"),
    ("my-macbook.local", "local"),
    ("app.localhost", "localhost"),
    ("db.localdomain", "localdomain"),
    ("nas.home.arpa", "home.arpa"),
    ("jira.internal", "internal"),
    ("wiki.intranet", "intranet"),
    ("dc01.corp", "corp"),
    ("router.home", "home"),
    ("fileserver.lan", "lan"),
    ("a.private", "private"),
    ("foo.test", "test"),
    ("www.example", "example"),
    ("nothing.invalid", "invalid"),
    ("http://jira.internal:8443/browse/SEC-1", "internal"),
])
def test_special_use_names_are_never_sent(value, suffix):
    decision = gate(value)
    assert (decision.allowed, decision.rule) == (False, "special_use_domain")
    assert f"(.{suffix}: {SPECIAL_USE_DOMAINS[suffix]})" in (decision.reason or "")


def test_hand_built_single_label_special_name_is_blocked():
    decision = check(Indicator("domain", "localhost"), [], block_labels=(), allow_labels=(),
                     internal_domains=())
    assert decision.rule == "special_use_domain"


def test_every_special_use_entry_says_why():
    assert all(why.strip() for why in SPECIAL_USE_DOMAINS.values())
    assert "example.com" not in SPECIAL_USE_DOMAINS  # real domain, used by demos


# --- rule 5: URLs are judged by their host; hashes have no network rule --------------------------

@pytest.mark.parametrize("value, rule, host", [
    ("http://10.0.0.5/admin", "private_address", "10.0.0.5"),
    ("http://192.168.1.1:8080/login.cgi", "private_address", "192.168.1.1"),
    ("http://[fd00::1]/x", "private_address", "fd00::1"),
    ("http://[::ffff:127.0.0.1]/x", "private_address", "127.0.0.1"),
    ("https://user@169.254.169.254/latest/meta-data/", "private_address", "169.254.169.254"),
    ("https://sharepoint.corp.acme.com/sites/x", "internal_domain", "sharepoint.corp.acme.com"),
    ("hxxp://intranet[.]corp/x", "special_use_domain", "intranet.corp"),
    ("http://printer.local/", "special_use_domain", "printer.local"),
])
def test_urls_are_judged_by_their_host(value, rule, host):
    decision = gate(value)
    assert (decision.allowed, decision.rule) == (False, rule)
    assert (decision.reason or "").startswith(f"URL host {host} ")


@pytest.mark.parametrize("value", [
    "http://evil.com/10.0.0.1", "http://evil.com/?next=http://printer.local/",
    "http://10.0.0.1.evil.com/", "https://corp.acme.com.phish.example.net/",
])
def test_private_looking_text_outside_the_host_does_not_block(value):
    assert gate(value).allowed


@pytest.mark.parametrize("value", [SHA256, "d41d8cd98f00b204e9800998ecf8427e",
                                   "da39a3ee5e6b4b0d3255bfef95601890afd80709"])
def test_hashes_have_no_network_rule_but_labels_still_apply(value):
    assert gate(value, internal=("anything.example",)).allowed
    assert gate(value, ["TLP:RED"]).rule == "blocked_label"
    assert gate(value, [], allow=ALLOW).rule == "not_in_allow_list"


# --- ordering ----------------------------------------------------------------------------------

def test_block_label_wins_over_everything():
    assert gate("10.0.0.1", ["TLP:RED", "TLP:GREEN"], allow=ALLOW).rule == "blocked_label"
    assert gate("dc01.corp.acme.com", ["TLP:AMBER+STRICT"]).rule == "blocked_label"


def test_allow_list_is_checked_before_the_network_rules():
    assert gate("10.0.0.1", ["TLP:AMBER"], allow=ALLOW).rule == "not_in_allow_list"
    assert gate("printer.local", [], allow=ALLOW).rule == "not_in_allow_list"


def test_an_allowed_label_does_not_override_the_network_rules():
    assert gate("10.0.0.1", ["TLP:CLEAR"], allow=ALLOW).rule == "private_address"
    assert gate("dc01.corp.acme.com", ["TLP:CLEAR"], allow=ALLOW).rule == "internal_domain"


def test_internal_domain_is_reported_before_special_use():
    assert gate("dc01.corp", internal=("corp",)).rule == "internal_domain"


def test_check_is_pure():
    indicator = classify("10.0.0.1")
    labels = ["TLP:GREEN"]
    first = check(indicator, labels, block_labels=DEFAULTS.policy.block_labels, allow_labels=(),
                  internal_domains=())
    assert labels == ["TLP:GREEN"]
    assert check(indicator, labels, block_labels=DEFAULTS.policy.block_labels, allow_labels=(),
                 internal_domains=()) == first
