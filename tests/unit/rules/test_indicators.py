"""classify / refang / vt_url_id on forms seen in SIEM exports and threat reports."""

import random

import ada_url
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contracts.indicator import INDICATOR_TYPES, Indicator, vt_url_id
from pipeline.errors import InputError
from pipeline.rules.indicators import classify, refang, url_host

pytestmark = pytest.mark.unit

MD5 = "d41d8cd98f00b204e9800998ecf8427e"
SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize("raw, expected", [
    # defanged, as printed in threat reports
    ("hxxps://evil[.]com/a", ("url", "https://evil.com/a")),
    ("hxxp://evil[.]com/a", ("url", "http://evil.com/a")),
    ("hXXps://evil[.]com/a", ("url", "https://evil.com/a")),
    ("HXXP://EVIL[.]COM/", ("url", "http://evil.com/")),
    ("h**p://evil.com/x", ("url", "http://evil.com/x")),
    ("h**ps://evil.com/x", ("url", "https://evil.com/x")),
    ("fxp://files.evil.org/drop.exe", ("url", "ftp://files.evil.org/drop.exe")),
    ("hxxp[:]//x[.]y", ("url", "http://x.y")),
    ("hxxps[://]evil[.]com/login.php", ("url", "https://evil.com/login.php")),
    ("http[:]//198.51.100[.]7/gate.php", ("url", "http://198.51.100.7/gate.php")),
    ("1.2.3[.]4", ("ip", "1.2.3.4")),
    ("1[.]2[.]3[.]4", ("ip", "1.2.3.4")),
    ("185.220.101(.)5", ("ip", "185.220.101.5")),
    ("evil(.)com", ("domain", "evil.com")),
    ("evil{.}com", ("domain", "evil.com")),
    ("evil[dot]com", ("domain", "evil.com")),
    ("evil(DOT)com", ("domain", "evil.com")),
    ("evil[ dot ]com", ("domain", "evil.com")),
    ("mail.evil[.]co[.]uk", ("domain", "mail.evil.co.uk")),
    # SIEM quoting and whitespace
    ('  "8.8.8.8"  ', ("ip", "8.8.8.8")),
    ("'example.com'", ("domain", "example.com")),
    ("\t8.8.4.4\r\n", ("ip", "8.8.4.4")),
    ("<http://example.com/a>", ("url", "http://example.com/a")),
    ("\ufeff8.8.8.8", ("ip", "8.8.8.8")),
    # IPv4 / IPv6
    ("8.8.8.8", ("ip", "8.8.8.8")),
    ("0.0.0.0", ("ip", "0.0.0.0")),
    ("2001:0db8:0000:0000:0000:0000:0000:0001", ("ip", "2001:db8::1")),
    ("2001:db8::1", ("ip", "2001:db8::1")),
    ("2001:DB8:0:0:0:0:0:1", ("ip", "2001:db8::1")),
    ("[2001:db8::1]", ("ip", "2001:db8::1")),
    ("2606:4700:4700::1111", ("ip", "2606:4700:4700::1111")),
    ("::ffff:1.2.3.4", ("ip", "1.2.3.4")),
    ("::FFFF:c000:0280", ("ip", "192.0.2.128")),
    ("fe80::1%eth0", ("ip", "fe80::1")),
    ("fe80::1ff:fe23:4567:890a%3", ("ip", "fe80::1ff:fe23:4567:890a")),
    ("::1", ("ip", "::1")),
    # domains
    ("EXAMPLE.COM.", ("domain", "example.com")),
    ("Example.Com", ("domain", "example.com")),
    ("bücher.de", ("domain", "xn--bcher-kva.de")),
    ("BÜCHER.DE", ("domain", "xn--bcher-kva.de")),
    ("xn--bcher-kva.de", ("domain", "xn--bcher-kva.de")),
    ("пример.рф", ("domain", "xn--e1afmkfd.xn--p1ai")),
    ("例え。テスト", ("domain", "xn--r8jz45g.xn--zckzah")),  # ideographic full stop
    ("💩.la", ("domain", "xn--ls8h.la")),  # IDNA 2003 emoji domain, still registered
    ("_dmarc.example.com", ("domain", "_dmarc.example.com")),
    ("_sip._tcp.example.com", ("domain", "_sip._tcp.example.com")),
    ("a-b.example.co.uk", ("domain", "a-b.example.co.uk")),
    ("3com.com", ("domain", "3com.com")),
    ("1.2.3.example", ("domain", "1.2.3.example")),
    ("x" * 63 + ".com", ("domain", "x" * 63 + ".com")),
    # URLs
    ("http://www.google.com", ("url", "http://www.google.com")),
    ("HTTP://WWW.Example.COM/Path/To?Q=AbC", ("url", "http://www.example.com/Path/To?Q=AbC")),
    ("http://example.com:80/", ("url", "http://example.com/")),
    ("https://example.com:443/a", ("url", "https://example.com/a")),
    ("https://example.com:80/a", ("url", "https://example.com:80/a")),
    ("http://example.com:8080/a", ("url", "http://example.com:8080/a")),
    ("http://example.com:/a", ("url", "http://example.com/a")),
    ("ftp://ftp.example.org:21/pub", ("url", "ftp://ftp.example.org/pub")),
    ("https://example.com/a#section-2", ("url", "https://example.com/a")),
    ("https://evil.example/login#alice@corp.example", ("url", "https://evil.example/login")),
    ("http://example.com/a%20b?x=%2F&y=1", ("url", "http://example.com/a%20b?x=%2F&y=1")),
    ("http://example.com/wiki/Foo_(bar)", ("url", "http://example.com/wiki/Foo_(bar)")),
    ("http://example.com/straße?q=ü", ("url", "http://example.com/straße?q=ü")),
    ("http://bücher.de/bücher", ("url", "http://xn--bcher-kva.de/bücher")),
    ("http://EXAMPLE.com./x", ("url", "http://example.com/x")),
    ("http://user:pass@Example.com:8080/x", ("url", "http://user:pass@example.com:8080/x")),
    ("http://www.paypal.com@203.0.113.9/", ("url", "http://www.paypal.com@203.0.113.9/")),
    ("http://[2001:DB8::1]:8080/x", ("url", "http://[2001:db8::1]:8080/x")),
    ("http://[2001:db8:0:0::1]/", ("url", "http://[2001:db8::1]/")),
    ("http://[::ffff:1.2.3.4]:80/x", ("url", "http://1.2.3.4/x")),
    ("http://203.0.113.9:8000/bins/x86", ("url", "http://203.0.113.9:8000/bins/x86")),
    ("example.com/path?x=1", ("url", "http://example.com/path?x=1")),
    ("evil.com/", ("url", "http://evil.com/")),
    ("evil[.]com/gate.php?id=1", ("url", "http://evil.com/gate.php?id=1")),
    ("203.0.113.9/bins/mips", ("url", "http://203.0.113.9/bins/mips")),
    ("example.com?x=1", ("url", "http://example.com?x=1")),
    ("https://evil.com/r?u=hxxp://x.org", ("url", "https://evil.com/r?u=http://x.org")),
    # hashes
    (MD5.upper(), ("md5", MD5)),
    (SHA1.upper(), ("sha1", SHA1)),
    (SHA256, ("sha256", SHA256)),
    (f'"{SHA256.upper()}"', ("sha256", SHA256)),
])
def test_classify_normalizes(raw, expected):
    indicator = classify(raw)
    assert (indicator.type, indicator.value) == expected


@pytest.mark.parametrize("raw, declared, expected", [
    ("8.8.8.8", "ip", ("ip", "8.8.8.8")),
    ("8.8.8.8", "IPv4", ("ip", "8.8.8.8")),
    ("2001:db8::1", "ipv6", ("ip", "2001:db8::1")),
    ("8.8.8.8", "ip-address", ("ip", "8.8.8.8")),
    ("8.8.8.8", "Address", ("ip", "8.8.8.8")),
    ("8.8.8.8", "ipv4-addr", ("ip", "8.8.8.8")),
    ("8.8.8.8", "ip-dst", ("ip", "8.8.8.8")),
    ("Example.com", "domain", ("domain", "example.com")),
    ("Example.com", "FQDN", ("domain", "example.com")),
    ("Example.com", "host", ("domain", "example.com")),
    ("Example.com", "hostname", ("domain", "example.com")),
    ("Example.com", "domain-name", ("domain", "example.com")),
    ("example.com", "url", ("url", "http://example.com")),
    ("http://example.com/", "URI", ("url", "http://example.com/")),
    ("8.8.8.8", "url", ("url", "http://8.8.8.8")),
    (MD5, "md5", ("md5", MD5)),
    (SHA1, "sha-1", ("sha1", SHA1)),
    (SHA1, "SHA1", ("sha1", SHA1)),
    (SHA256, "sha-256", ("sha256", SHA256)),
    (SHA256, "SHA_256", ("sha256", SHA256)),
    (MD5, "hash", ("md5", MD5)),
    (SHA256, "file-hash", ("sha256", SHA256)),
    ("8.8.8.8", "", ("ip", "8.8.8.8")),  # blank type: detect
    ("8.8.8.8", None, ("ip", "8.8.8.8")),
])
def test_declared_types_and_aliases(raw, declared, expected):
    indicator = classify(raw, declared)
    assert (indicator.type, indicator.value) == expected


@pytest.mark.parametrize("raw, declared, message", [
    ("1.2.3", "ip", "declared type 'ip' but '1.2.3' is not an IP address"),
    ("example.com", "ip", "declared type 'ip' but 'example.com' is not an IP address"),
    ("2001:db8::1", "ipv4", "it is an IPv6 address"),
    ("8.8.8.8", "ipv6", "it is an IPv4 address"),
    ("8.8.8.8", "domain", "is not a domain"),
    ("http://example.com/", "domain", "is not a domain"),
    ("localhost", "domain", "single names such as 'localhost'"),
    (SHA1, "md5", "is not an MD5 hash (it has 40 hex characters"),
    (MD5, "sha256", "is not a SHA-256 hash"),
    ("xyz", "hash", "hashes are hexadecimal"),
    ("a" * 33, "hash", "it has 33 hex characters; MD5 has 32"),
    ("mailto:a@b.com", "url", "it has no scheme"),
    ("file:///etc/passwd", "url", "scheme 'file' is not supported"),
    ("8.8.8.8", "email", "unknown type 'email'; expected one of ip"),
    ("x.exe", "file", "type 'file' needs a 'file' object"),
])
def test_declared_type_is_checked_never_overridden(raw, declared, message):
    with pytest.raises(InputError) as info:
        classify(raw, declared)
    assert message in str(info.value)


@pytest.mark.parametrize("raw, message", [
    ("", "value is empty"),
    ("   ", "value is empty"),
    ('""', "value is empty"),
    ("not an ioc", "'not an ioc' is not an IP address, domain, URL or hash"),
    ("foo bar", "'foo bar' is not an IP address, domain, URL or hash"),
    ("1.2.3", "Expected 4 octets"),
    ("999.1.1.1", "Octet 999 (> 255)"),
    ("256.256.256.256", "not an IP address, domain, URL or hash"),
    ("010.1.1.1", "leading zero"),
    ("192.168.01.1", "leading zero"),
    ("10.0.0.0/8", "network range (CIDR)"),
    ("2001:db8::/32", "network range (CIDR)"),
    ("1.2.3.4:443", "address:port"),
    ("\x00abc", "control or invisible character U+0000"),
    ("evil.com\x00.jpg", "U+0000"),
    ("evil\u202ecom.exe", "U+202E"),  # right-to-left override
    ("a\nb.com", "U+000A"),
    ("x" * (1024 * 1024), "1,048,576 characters long"),
    ("http://example.com/" + "a" * 8200, "characters long"),
    ("a" * 64 + ".com", "DNS labels have 1 to 63"),
    (".".join(["abcdefghi"] * 30), "DNS names have at most 253"),
    ("😀", "is not an IP address, domain, URL or hash"),
    ("😀😀😀", "is not an IP address, domain, URL or hash"),
    ("localhost", "single names such as 'localhost'"),
    ("evil..com", "label '' is 0 characters long"),
    ("-evil.com", "cannot start or end with a hyphen"),
    ("evil-.com", "cannot start or end with a hyphen"),
    ("evil.123", "cannot be a top-level domain"),
    ("example.com..", "label '' is 0 characters long"),
    ("a" * 31, "it has 31 hex characters"),
    ("g" * 32, "is not an IP address, domain, URL or hash"),
    ("sftp://example.com/x", "scheme 'sftp' is not supported"),
    ("javascript://alert(1)", "scheme 'javascript' is not supported"),
    ("http://", "it has no host"),
    ("http:///path", "host 'path'"),  # browsers skip every slash after "http:"
    ("http://localhost:8080/", "host 'localhost'"),
    ("http://example.com:99999/", "port '99999' is not a number from 1 to 65535"),
    ("http://example.com:0/", "port '0'"),
    ("http://example.com:abc/", "port 'abc'"),
    ("http://exa mple.com/", "contains whitespace"),
    ("http://example.com/a b", "percent-encode spaces"),
    ("http://[::1/", "host '[::1'"),
    ("http://ex@mple@/", "it has no host"),
    ("javascript:alert(1)", "is not an IP address, domain, URL or hash"),
    ("C:\\Windows\\System32\\evil.dll", "is not an IP address, domain, URL or hash"),
    ("/etc/passwd", "is not an IP address, domain, URL or hash"),
])
def test_refused_with_a_reason(raw, message):
    with pytest.raises(InputError) as info:
        classify(raw)
    assert message in str(info.value)


def test_long_values_are_shortened_in_messages():
    with pytest.raises(InputError) as info:
        classify("not a domain " * 100)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("value", [8, None, b"8.8.8.8", ["8.8.8.8"]])
def test_non_string_values_are_input_errors(value):
    with pytest.raises(InputError, match="value must be a string"):
        classify(value)


def test_non_string_declared_type_is_an_input_error():
    with pytest.raises(InputError, match="type must be a string"):
        classify("8.8.8.8", 4)


@pytest.mark.parametrize("a, b", [
    ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
    ("EXAMPLE.COM.", "example.com"),
    ("bücher.de", "xn--bcher-kva.de"),
    ("hxxps://evil[.]com/a", "https://EVIL.com:443/a#x"),
    (MD5.upper(), MD5),
    ("::ffff:8.8.8.8", "8.8.8.8"),
])
def test_spellings_of_one_indicator_share_one_key(a, b):
    assert classify(a) == classify(b)
    assert classify(a).key == classify(b).key


def test_vt_url_id_matches_virustotal():
    assert vt_url_id("http://www.google.com") == "aHR0cDovL3d3dy5nb29nbGUuY29t"
    assert vt_url_id("http://example.com/") == "aHR0cDovL2V4YW1wbGUuY29tLw"
    assert "=" not in vt_url_id("http://a.b/")  # padding stripped
    assert "+" not in vt_url_id("http://a.b/?>>>") and "/" not in vt_url_id("http://a.b/???")


@pytest.mark.parametrize("indicator, key, action", [
    (Indicator("ip", "8.8.8.8"), "ip:8.8.8.8", "submit_ip"),
    (Indicator("ip", "2001:db8::1"), "ip:2001:db8::1", "submit_ip"),
    (Indicator("domain", "example.com"), "domain:example.com", "submit_domain"),
    (Indicator("url", "http://www.google.com"), "url:aHR0cDovL3d3dy5nb29nbGUuY29t", "submit_url"),
    (Indicator("md5", MD5), f"file:{MD5}", "submit_hash"),
    (Indicator("sha1", SHA1), f"file:{SHA1}", "submit_hash"),
    (Indicator("sha256", SHA256), f"file:{SHA256}", "submit_hash"),
])
def test_key_and_action(indicator, key, action):
    assert indicator.key == key
    assert indicator.action == action
    assert indicator.as_dict() == {"type": indicator.type, "value": indicator.value}


def test_indicator_is_a_frozen_hashable_value():
    a, b = Indicator("ip", "8.8.8.8"), Indicator("ip", "8.8.8.8")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    with pytest.raises(AttributeError):
        a.value = "1.1.1.1"
    with pytest.raises(ValueError, match="not one of"):
        Indicator("email", "a@b.c")
    assert INDICATOR_TYPES == ("ip", "domain", "url", "md5", "sha1", "sha256")


@pytest.mark.parametrize("text, expected", [
    ("hxxps://evil[.]com/a", "https://evil.com/a"),
    ("hxxp[:]//x[.]y", "http://x.y"),
    ("visit hxxp://a[.]b and 10[.]0[.]0[.]1", "visit http://a.b and 10.0.0.1"),
    ("fXp://a[.]b", "ftp://a.b"),
])
def test_refang(text, expected):
    assert refang(text) == expected


@pytest.mark.parametrize("text", [
    "http://example.com/hxxp/path",           # hxxp not before a colon
    "https://example.com/a(b)c",              # parentheses that are not (.)
    "http://example.com/?q=[x]&r={y}",        # brackets that are not [.] or [:]
    "https://hxxp.example.com/",              # a host that starts with hxxp
    "https://example.com/dot/dotty",          # bare 'dot' is never replaced
    "http://[2001:db8::1]:8080/",             # IPv6 brackets are not [:] defanging
    "sftp://example.com/",                    # ftp inside sftp is not fxp
])
def test_refang_leaves_normal_urls_alone(text):
    assert refang(text) == text


@pytest.mark.parametrize("url, host", [
    ("http://example.com/a", "example.com"),
    ("https://user:pw@example.com:8443/a?b#c", "example.com"),
    ("http://[2001:db8::1]:8080/", "2001:db8::1"),
    ("http://10.0.0.1", "10.0.0.1"),
    ("http://example.com?x=1", "example.com"),
])
def test_url_host(url, host):
    assert url_host(url) == host


CORPUS = ["8.8.8.8", "2001:db8::1", "hxxps://evil[.]com/a?b=1#c", "bücher.de", MD5, SHA256,
          "http://[::1]:80/", "example.com/x", "_dmarc.x.com", "💩.la", "1.2.3[.]4"]


def _random_strings(rng: random.Random, n: int):
    alphabet = "abcxyz019.:/[](){}%@#?-_ \t\"'*hHtTpPxXfF\u00fc\u0430\u3002\U0001f600\x00\u202e"
    for _ in range(n):
        kind = rng.randrange(4)
        if kind == 0:  # arbitrary code points, including surrogates and controls
            yield "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randrange(12)))
        elif kind == 1:  # bytes as a decoder with errors=surrogateescape would hand them over
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(24)))
            yield raw.decode("utf-8", errors=rng.choice(["surrogateescape", "replace", "ignore"]))
        elif kind == 2:  # IOC-ish alphabet
            yield "".join(rng.choice(alphabet) for _ in range(rng.randrange(30)))
        else:  # mutations of real indicators
            chars = list(rng.choice(CORPUS))
            for _ in range(rng.randrange(1, 4)):
                i = rng.randrange(len(chars) + 1)
                if rng.random() < 0.5 and i < len(chars):
                    del chars[i]
                else:
                    chars.insert(i, rng.choice(alphabet))
            yield "".join(chars)


def test_random_input_raises_only_input_error_and_normalization_is_stable():
    rng = random.Random(20240611)
    accepted = 0
    for text in _random_strings(rng, 20000):
        try:
            indicator = classify(text)
        except InputError as exc:
            assert str(exc)
            continue
        accepted += 1
        assert indicator.type in INDICATOR_TYPES
        assert indicator.key and indicator.action.startswith("submit_")
        # normalized values classify to themselves, with or without their declared type
        assert classify(indicator.value, indicator.type) == indicator, text
        assert classify(indicator.value) == indicator, text
    assert accepted > 100  # the mutation corpus keeps some inputs valid


# --- URL authority: the host a browser visits (WHATWG), not the one urllib reads ---------------

@pytest.mark.parametrize("raw, expected", [
    # "\" is "/" before the query: Python's urlsplit says bank.xyz, browsers go to evil.xyz
    ("https://evil.xyz\\@bank.xyz/login", "https://evil.xyz/@bank.xyz/login"),
    ("http://evil.xyz\\bank.xyz", "http://evil.xyz/bank.xyz"),
    ("https:\\\\evil.xyz\\a\\b?q=\\x", "https://evil.xyz/a/b?q=\\x"),  # the query keeps its "\"
    ("https:/\\evil.xyz/", "https://evil.xyz/"),
    ("https:evil.xyz/x", "https://evil.xyz/x"),  # any run of slashes, even none, after a special scheme
    ("https:////evil.xyz/x", "https://evil.xyz/x"),
    ("hxxps://evil[.]xyz\\@bank[.]xyz/", "https://evil.xyz/@bank.xyz/"),
    ("wss://evil.xyz\\@bank.xyz/socket", "wss://evil.xyz/@bank.xyz/socket"),
    ("ftp://evil.xyz\\@bank.xyz/f", "ftp://evil.xyz/@bank.xyz/f"),
    # tabs and newlines vanish anywhere: "ev<TAB>il" is evil
    ("https://ev\til.xyz/lo\ngin", "https://evil.xyz/login"),
    ("https://bank.xyz\t@evil.xyz/", "https://bank.xyz@evil.xyz/"),
    ("https://bank.xyz\r\n.evil.xyz/", "https://bank.xyz.evil.xyz/"),
    # several "@": the last one ends the userinfo
    ("https://bank.xyz@login@evil.xyz/", "https://bank.xyz@login@evil.xyz/"),
    # "%2F" and "%40" in the userinfo stay there; a percent-encoded host is decoded as browsers do
    ("https://bank.xyz%2F@evil.xyz/", "https://bank.xyz%2F@evil.xyz/"),
    ("https://bank.xyz%40evil.xyz/", None),  # "@" decoded inside a host: no browser opens it
    ("https://evil%2Exyz/", "https://evil.xyz/"),
    # numbers a browser reads as IPv4 (the policy gate then sees the real address)
    ("http://0x7f.1/", "http://127.0.0.1/"),
    ("http://2130706433/x", "http://127.0.0.1/x"),
    ("http://010.0.0.1/", "http://8.0.0.1/"),
    ("http://3627734734/", "http://216.58.214.206/"),
    # fullwidth letters and ideographic dots are mapped as in the address bar
    ("https://ＥＶＩＬ。xyz/", "https://evil.xyz/"),
    ("wss://example.com:443/", "wss://example.com/"),
])
def test_url_host_is_the_one_browsers_visit(raw, expected):
    if expected is None:
        with pytest.raises(InputError, match="browsers cannot read it"):
            classify(raw)
        return
    assert classify(raw) == Indicator("url", expected)


def test_the_backslash_url_is_not_looked_up_as_the_other_host():
    url = classify("https://evil.xyz\\@bank.xyz/login").value
    assert url_host(url) == "evil.xyz" and "bank.xyz" != url_host(url)


_PIECES = ["evil.xyz", "bank.xyz", "@", "\\", "/", "//", "?", "#", "\t", "\n", "%2F", "%40", "%2e", ":",
           "8080", "a", ".", "user:pw", "0x7f", "1"]


@given(scheme=st.sampled_from(["http", "https", "HTTP", "ftp", "ws", "wss"]),
       separator=st.sampled_from([":", "://", ":\\\\", ":/\\", ":///", ":\\/"]),
       pieces=st.lists(st.sampled_from(_PIECES), min_size=1, max_size=12))
@settings(max_examples=600, deadline=None)
def test_whenever_a_url_is_accepted_its_host_is_the_browsers(scheme, separator, pieces):
    """A property over the parser differentials between Python and browsers: backslashes, tabs and
    newlines, slashes after the scheme, several "@", percent-encoding in the authority. Whatever we
    accept, a WHATWG parser reads the same host from the text as the SIEM sent it, and normalizing
    again changes nothing (the gateway's edge check relies on that)."""
    raw = scheme + separator + "".join(pieces)
    try:
        indicator = classify(raw)
    except InputError:
        return
    if indicator.type != "url":
        return
    browser = ada_url.parse_url(raw)
    assert url_host(indicator.value) == str(browser["hostname"]).strip("[]").rstrip(".")
    assert classify(indicator.value) == indicator
