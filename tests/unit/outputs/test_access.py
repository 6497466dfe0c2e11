"""Access rules of the read-only feed servers (TAXII and MISP): credentials, HTTPS, where they listen."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import ConfigError, InputError
from pipeline.outputs import access

pytestmark = pytest.mark.unit


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_only_the_exact_basic_credentials_match_and_a_malformed_header_is_a_client_error():
    assert access.credentials_match(basic("misp", "pw:with:colons"), "misp", "pw:with:colons")
    for header in (basic("misp", "wrong"), basic("MISP", "pw"), basic("misp", ""), "Bearer " + basic("misp", "pw")[6:], ""):
        assert not access.credentials_match(header, "misp", "pw"), header
    for header in ("Basic bWlzcA==", "Basic", "Basic !!!", "Basic 8J+Ygg==", "Basic \u00e9t\u00e9", "Basic /w=="):
        with pytest.raises(InputError):  # no user:password; not base64; not ASCII; not UTF-8 once decoded
            access.credentials_match(header, "misp", "pw")
    assert not access.credentials_match(basic("", ""), "", "")  # no configured user: nothing matches


@given(st.sampled_from(["Basic ", "basic ", "Bearer ", ""]), st.text(max_size=60) | st.binary(max_size=40).map(
    lambda raw: __import__("base64").b64encode(raw).decode()))
def test_any_authorization_header_is_a_match_a_miss_or_a_typed_error(scheme, token):
    try:
        assert access.credentials_match(scheme + token, "misp", "pw") in (True, False)
    except InputError:
        pass


def test_credentials_are_required_unless_anonymous_reading_is_asked_for():
    with pytest.raises(ConfigError, match="VTSTREAM_MISP_FEED_USERNAME and VTSTREAM_MISP_FEED_PASSWORD"):
        access.require_credentials("misp", "", False, "VTSTREAM_MISP_FEED")
    access.require_credentials("", "", True, "VTSTREAM_MISP_FEED")
    access.require_credentials("misp", "pw", False, "VTSTREAM_MISP_FEED")


def test_the_password_comes_inline_or_from_a_file_not_both(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    assert access.read_secret("", secret, "P") == "from-file"
    assert access.read_secret("inline", None, "P") == "inline"
    with pytest.raises(ConfigError, match="P_PASSWORD or P_PASSWORD_FILE"):
        access.read_secret("inline", secret, "P")


def test_https_needs_both_halves_and_a_loadable_pair(tmp_path):
    assert access.tls_context(None, None, "P") is None
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError, match="both P_CERT and P_KEY"):
        access.tls_context(junk, None, "P")
    with pytest.raises(ConfigError, match="cannot load P_CERT or P_KEY"):
        access.tls_context(junk, junk, "P")


def test_plain_http_stays_on_loopback_unless_the_operator_accepts_it():
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.8.9.10"):
        access.check_listening(host, tls=False, insecure=False, prefix="P")
    for host in ("0.0.0.0", "", "::", "10.0.0.5", "feed.example", "127.0.0.1.nip.io"):
        with pytest.raises(ConfigError, match="P_INSECURE=true"):
            access.check_listening(host, tls=False, insecure=False, prefix="P")
        access.check_listening(host, tls=True, insecure=False, prefix="P")
        access.check_listening(host, tls=False, insecure=True, prefix="P")
