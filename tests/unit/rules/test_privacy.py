"""URL privacy: what of a URL may go to VirusTotal, and what dead letters may print."""

from __future__ import annotations

import pytest
from hypothesis import given, settings as hsettings, strategies as st
from urllib.parse import quote

from pipeline.contracts.card import SummaryCard
from pipeline.contracts.events import SummaryEvent
from pipeline.contracts.indicator import Indicator
from pipeline.contracts.origin import Origin, SeenAs
from pipeline.rules.deadletter import dead_letter
from pipeline.rules.privacy import redact, scrub
from pipeline.settings import DEFAULT_SECRET_PARAMS, UrlPrivacy
from pipeline.settings import Settings
from pipeline.stages.intake import Accepted, Rejected, Skipped, parse

DEFAULTS = UrlPrivacy()
REQUIRED = ("token", "access_token", "id_token", "refresh_token", "code", "session", "sessionid", "sid",
            "password", "passwd", "pwd", "key", "apikey", "api_key", "secret", "sig", "signature", "auth", "jwt",
            "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "X-Goog-Signature", "X-Goog-Credential")

pytestmark = pytest.mark.unit


def test_the_default_list_holds_every_name_the_issue_requires():
    assert {name.casefold() for name in REQUIRED} <= {name.casefold() for name in DEFAULT_SECRET_PARAMS}
    assert Settings().privacy == DEFAULTS


@pytest.mark.parametrize("name", DEFAULT_SECRET_PARAMS)
def test_every_default_parameter_is_dropped_and_named(name):
    got = redact(f"https://files.example.com/get?id=7&{name}=S3CRET-VALUE&lang=en", DEFAULTS)
    assert got.url == "https://files.example.com/get?id=7&lang=en"
    assert got.redacted == (name,)


@pytest.mark.parametrize("name", DEFAULT_SECRET_PARAMS)
def test_every_default_parameter_is_matched_in_any_case(name):
    got = redact(f"https://files.example.com/?{name.upper()}=x&{name.lower()}=y", DEFAULTS)
    assert got.url == "https://files.example.com/"


@pytest.mark.parametrize("url, sent, redacted", [
    ("https://user:pass@evil.example.com/", "https://evil.example.com/", ("userinfo",)),
    ("https://user@evil.example.com/x", "https://evil.example.com/x", ("userinfo",)),
    ("http://bank.example.com@evil.example.com/", "http://evil.example.com/", ("userinfo",)),
    ("https://u:p%40ss@evil.example.com:8443/?a=1", "https://evil.example.com:8443/?a=1", ("userinfo",)),
    ("https://evil.example.com/p@th?q=a@b", "https://evil.example.com/p@th?q=a@b", ()),
])
def test_userinfo_is_stripped_by_default(url, sent, redacted):
    got = redact(url, DEFAULTS)
    assert (got.url, got.redacted) == (sent, redacted)


def test_userinfo_skip_and_send():
    skipped = redact("https://user:hunter2@evil.example.com/", UrlPrivacy(userinfo="skip"))
    assert skipped.url is None and skipped.rule == "url_userinfo" and "hunter2" not in (skipped.reason or "")
    assert redact("https://user:pass@evil.example.com/", UrlPrivacy(userinfo="send")).url == \
        "https://user:pass@evil.example.com/"


@pytest.mark.parametrize("query, kept, redacted", [
    ("%74oken=a&x=1", "x=1", ("token",)),             # percent-encoded letter
    ("%54%4F%4B%45%4E=a&x=1", "x=1", ("TOKEN",)),    # every letter encoded, upper case
    ("x-amz-signature=a&x=1", "x=1", ("x-amz-signature",)),
    ("X%2DAmz%2DSignature=a", "", ("X-Amz-Signature",)),
    ("api%5Fkey=a&x=1", "x=1", ("api_key",)),
    ("token%5B%5D=a&x=1", "x=1", ("token[]",)),       # PHP array syntax
    ("token[]=a&token[]=b&x=1", "x=1", ("token[]",)),
    ("to+ken=a&x=1", "to+ken=a&x=1", ()),             # a different name
    ("tokens=a&mytoken=b&x=1", "tokens=a&mytoken=b&x=1", ()),  # whole names only
    ("token&x=1", "token&x=1", ()),                   # no value, nothing to hide
])
def test_percent_encoded_and_near_miss_names(query, kept, redacted):
    got = redact(f"https://h.example.com/a?{query}", DEFAULTS)
    assert got.url == "https://h.example.com/a" + (f"?{kept}" if kept else "")
    assert got.redacted == redacted


def test_repeated_parameters_all_go_and_are_named_once():
    got = redact("https://h.example.com/?token=a&x=1&token=b;token=c&Token=d&sig=e", DEFAULTS)
    assert got.url == "https://h.example.com/?x=1"
    assert got.redacted == ("token", "Token", "sig")


def test_separators_and_order_of_what_stays_are_kept():
    got = redact("https://h.example.com/?a=1;sid=2;b=3&&c=%20", DEFAULTS)
    assert got.url == "https://h.example.com/?a=1;b=3&&c=%20"
    assert redact("https://h.example.com/?", DEFAULTS).url == "https://h.example.com/?"


@pytest.mark.parametrize("url, sent, redacted", [
    ("https://app.example.com/cb#access_token=abc&state=xyz", "https://app.example.com/cb#state=xyz",
     ("access_token",)),
    ("https://app.example.com/cb#id_token=abc", "https://app.example.com/cb", ("id_token",)),
    ("https://app.example.com/#/reset?token=abc&step=2", "https://app.example.com/#/reset?step=2", ("token",)),
    ("https://app.example.com/#/reset?token=abc", "https://app.example.com/#/reset", ("token",)),
    ("https://app.example.com/doc#section-2", "https://app.example.com/doc#section-2", ()),
])
def test_parameters_in_the_fragment(url, sent, redacted):
    got = redact(url, DEFAULTS)
    assert (got.url, got.redacted) == (sent, redacted)


@pytest.mark.parametrize("url, sent, redacted", [
    ("https://nam02.safelinks.protection.outlook.com/?url=https%3A%2F%2Fbank.example%2Freset%3Ftoken%3Dabc"
     "%26lang%3Den&data=05%7C01&reserved=0",
     "https://bank.example/reset?lang=en", ("safelinks", "token")),
    ("https://t.example.com/r?u=https%3A%2F%2Fx.example%2F%3Fsig%3Dabc&x=1",
     "https://t.example.com/r?u=https%3A%2F%2Fx.example%2F&x=1", ("sig",)),
    ("https://t.example.com/c?next=%2Freset%3Fcode%3D123&x=1", "https://t.example.com/c?next=%2Freset&x=1",
     ("code",)),
    ("https://t.example.com/r?u=https%3A%2F%2Fbob%3Apw%40x.example%2F",
     "https://t.example.com/r?u=https%3A%2F%2Fx.example%2F", ("userinfo",)),
    ("https://t.example.com/c?lang=en&q=a%26token%3Db",  # not URLs: left alone
     "https://t.example.com/c?lang=en&q=a%26token%3Db", ()),
])
def test_urls_nested_in_a_parameter_value(url, sent, redacted):
    got = redact(url, DEFAULTS)
    assert (got.url, got.redacted) == (sent, redacted)
    assert "abc" not in scrub(url, DEFAULTS) and "123" not in scrub(url, DEFAULTS)


def test_path_parameters():
    got = redact("https://shop.example.com/cart;jsessionid=0AF3;v=2/item?x=1", DEFAULTS)
    assert got.url == "https://shop.example.com/cart;v=2/item?x=1"
    assert got.redacted == ("jsessionid",)


def test_drop_mode_skip_refuses_and_names_only_the_parameter():
    got = redact("https://h.example.com/?token=S3CRET&x=1", UrlPrivacy(mode="skip"))
    assert got.url is None and got.rule == "url_secret_param"
    assert "token" in (got.reason or "") and "S3CRET" not in (got.reason or "")
    assert redact("https://u:p@h.example.com/?x=1", UrlPrivacy(mode="skip")).url == "https://h.example.com/?x=1"


def test_configured_names_replace_the_default_list():
    rules = Settings.from_env({"VTSTREAM_URL_REDACT_PARAMS": " Ticket ,otp"}).privacy
    got = redact("https://h.example.com/?token=a&ticket=b&OTP=c", rules)
    assert got.url == "https://h.example.com/?token=a" and got.redacted == ("ticket", "OTP")
    assert redact("https://h.example.com/?token=a", Settings.from_env(
        {"VTSTREAM_URL_REDACT_PARAMS": ""}).privacy).url == "https://h.example.com/?token=a"


def test_redaction_is_idempotent_and_leaves_clean_urls_byte_for_byte():
    clean = "https://h.example.com/a%2Fb;v=1?q=%41+b&empty=&x#frag"
    assert redact(clean, DEFAULTS).url == clean and redact(clean, DEFAULTS).redacted == ()
    once = redact("https://u:p@h.example.com/?token=a&x=1#sig=2", DEFAULTS).url
    assert once is not None and redact(once, DEFAULTS).url == once


@pytest.mark.parametrize("setting, value, needle", [
    ("VTSTREAM_URL_USERINFO", "remove", "strip, skip or send"),
    ("VTSTREAM_URL_REDACT_MODE", "mask", "drop or skip"),
])
def test_bad_settings_name_the_choices(setting, value, needle):
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match=needle):
        Settings.from_env({setting: value})


# ------------------------------------------------------------------ intake: defanged input, the cache key

def _parse(value: str, settings: Settings = Settings()) -> Accepted | Skipped | Rejected:
    return parse(value.encode(), "indicators.raw/0/1", settings)


def _accepted(value: str) -> Accepted:
    outcome = _parse(value)
    assert isinstance(outcome, Accepted), outcome
    return outcome


def test_defanged_input_is_refanged_then_redacted():
    outcome = _parse("hxxps://user:pw@host[.]com/?token=abc123&page=2")
    assert isinstance(outcome, Accepted)
    assert outcome.indicator == Indicator("url", "https://host.com/?page=2")
    assert outcome.origin.as_seen == SeenAs("https://user:pw@host.com/?token=abc123&page=2", ("userinfo", "token"))


def test_sightings_differing_only_in_a_redacted_part_share_one_key():
    keys = {_accepted(value).indicator.key for value in (
        "https://host.com/r?token=a", "https://host.com/r?token=b", "hxxps://x:y@host[.]com/r?TOKEN=c",
        "https://host.com/r")}
    assert keys == {Indicator("url", "https://host.com/r").key}


def test_skip_modes_skip_with_the_rule_and_keep_the_indicator_as_sent():
    outcome = _parse("https://user:pw@host.com/", Settings.of(privacy_userinfo="skip"))
    assert isinstance(outcome, Skipped) and outcome.rule == "url_userinfo"
    assert outcome.indicator.value == "https://user:pw@host.com/"
    outcome = _parse("https://host.com/?sig=a", Settings.of(privacy_mode="skip"))
    assert isinstance(outcome, Skipped) and outcome.rule == "url_secret_param"


def _summary(indicator: Indicator, origin: Origin) -> dict:
    return SummaryEvent.of(SummaryCard(found=True), indicator=indicator, action="submit_url", api="v3",
                           origin=origin).to_dict()


def test_a_summary_shows_the_sighting_and_what_was_sent():
    origin = _accepted("https://user:pw@host.com/?code=1").origin
    event = _summary(Indicator("url", "https://host.com/"), origin)
    assert event["indicator"]["value"] == "https://user:pw@host.com/?code=1"
    assert event["origin"] == {"ref": "indicators.raw/0/1"}
    assert (event["summary"]["sent_as"], event["summary"]["redacted"]) == ("https://host.com/", ["userinfo", "code"])
    plain = _summary(Indicator("url", "https://host.com/"), Origin(ref="r"))["summary"]
    assert (plain["sent_as"], plain["redacted"]) == ("https://host.com/", [])
    assert "sent_as" not in SummaryEvent.of(SummaryCard(found=True), indicator=Indicator("ip", "8.8.8.8"),
                                            action="submit_ip", api="v3", origin=Origin(ref="r")).to_dict()["summary"]


# ------------------------------------------------------------------ dead letters and free text

SECRETS = ("hunter2", "S3CRET", "tok-123", "AKIAEXAMPLE", "c2lnbmF0dXJl")


@pytest.mark.parametrize("text", [
    '{"value": "https://bob:hunter2@evil.example/?token=tok-123", "type": "domain"}',
    "hxxps://bob:hunter2@evil[.]example/?X-Amz-Credential=AKIAEXAMPLE&X%2DAmz%2DSignature=c2lnbmF0dXJl",
    "bob:hunter2@evil.example/reset?token=tok-123",  # no scheme: not a URL, still scrubbed
    "ftp://bob:hunter2@evil.example/#/cb?access_token=S3CRET",
    "https://evil.example/a;jsessionid=S3CRET?sid=tok-123 and more",
])
def test_scrub_removes_every_secret_from_free_text(text):
    out = scrub(text, DEFAULTS)
    assert not any(secret in out for secret in SECRETS), out
    assert "REDACTED" in out and "evil" in out


def test_scrub_leaves_ordinary_text_alone():
    text = '{"value": "https://evil.example/a?b=1&lang=en", "note": "mail alice@corp.example at 10:30"}'
    assert scrub(text, DEFAULTS) == text


def test_dead_letters_never_print_a_redacted_secret():
    raw = b'{"value": "hxxps://bob:hunter2@evil[.]example/?token=tok-123", "type": "ip"}'
    outcome = _parse(raw.decode())
    assert isinstance(outcome, Rejected) and "hunter2" in outcome.reason  # the reason quotes the value
    letter = dead_letter(raw, stage="intake", reason=outcome.reason, privacy=DEFAULTS)
    record = dead_letter({"origin": {"as_seen": {"value": "https://u:hunter2@h.example/?sig=S3CRET"}}},
                         stage="gateway", reason="r", error="GET https://h.example/?sig=S3CRET", privacy=DEFAULTS)
    binary = dead_letter(b"\xff https://bob:hunter2@h.example/", stage="intake", reason="r", privacy=DEFAULTS)
    file_event = b'{"file": {"name": "a.pdf", "uri": "https://bob:hunter2@evil.example/a.pdf?sig=S3CRET"}}'
    refused = parse(file_event, "indicators.raw/0/2", Settings())  # a file URI must be local: refused
    assert isinstance(refused, Rejected) and "hunter2" in refused.reason
    file_letter = dead_letter(file_event, stage="intake", reason=refused.reason, privacy=DEFAULTS)
    for blob in (repr(letter), repr(record), repr(file_letter)):
        assert not any(secret in blob for secret in SECRETS), blob
    assert binary.original["base64"] != dead_letter(b"\xff https://bob:hunter2@h.example/", stage="intake",
                                                    reason="r", privacy=UrlPrivacy(userinfo="send")).original["base64"]


def test_a_handler_error_that_quotes_a_secret_is_scrubbed_in_the_log_and_the_dead_letter(caplog):
    import asyncio

    import orjson

    from pipeline.kafka.runtime import Outbox, route_failure

    produced: list[bytes] = []

    async def send(topic: str, key: bytes | None, value: bytes) -> asyncio.Future[None]:
        produced.append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def fail() -> None:
        out = Outbox(send)
        try:
            raise ValueError("cannot map https://bob:hunter2@h.example/?token=tok-123")
        except ValueError as exc:
            await route_failure(out, "results", b"k", b"https://h.example/?sig=S3CRET", "t/0/1", exc, DEFAULTS)
        await out.flush()

    with caplog.at_level("ERROR", logger="vtstream"):
        asyncio.run(fail())
    (letter,) = [orjson.loads(value) for value in produced]
    blob = caplog.text + repr(letter)
    assert "cannot map" in caplog.text and "Traceback" in caplog.text
    assert not any(secret in blob for secret in SECRETS), blob


# ------------------------------------------------------------------ names the issue asked for, and values

@pytest.mark.parametrize("name", ["accessToken", "auth_token", "client_secret", "oauth_token", "private_token",
                                  "api-key", "ticket", "SAMLResponse", "otp", "Access-Token", "X_AMZ_SIGNATURE",
                                  "csrfmiddlewaretoken", "authenticity_token", "code_verifier", "client.secret"])
def test_the_issues_names_and_their_spellings_are_secret(name):
    got = redact(f"https://sso.example.com/cb?{name}=S3CRET&lang=en", DEFAULTS)
    assert got.url == "https://sso.example.com/cb?lang=en" and got.redacted == (name,)


JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


@pytest.mark.parametrize("url, sent, redacted", [
    (f"https://app.example.com/?t={JWT}&lang=en", "https://app.example.com/?lang=en", ("t",)),
    (f"https://app.example.com/cb#state=1&x={JWT}", "https://app.example.com/cb#state=1", ("x",)),
    (f"https://app.example.com/;s={JWT}/a", "https://app.example.com//a", ("s",)),
    ("https://app.example.com/?u=alice%40corp.example&lang=en", "https://app.example.com/?lang=en", ("u",)),
    ("https://app.example.com/?u=alice%2540corp.example", "https://app.example.com/", ("u",)),  # encoded twice
    ("https://app.example.com/?r=Hi+bob@corp.example.org+!&lang=en", "https://app.example.com/?lang=en", ("r",)),
    ("https://app.example.com/?alice@corp.example&lang=en", "https://app.example.com/?lang=en", ("email",)),
    ("https://app.example.com/?lang=en&v=1.2.3&at=@home", "https://app.example.com/?lang=en&v=1.2.3&at=@home", ()),
])
def test_values_shaped_like_a_jwt_or_an_address_go_whatever_their_name(url, sent, redacted):
    got = redact(url, DEFAULTS)
    assert (got.url, got.redacted) == (sent, redacted)


def test_redact_values_is_a_setting():
    url = f"https://app.example.com/?u=alice%40corp.example&t={JWT}"
    assert redact(url, UrlPrivacy(redact_values=())).url == url
    assert redact(url, UrlPrivacy(redact_values=("jwt",))).url == "https://app.example.com/?u=alice%40corp.example"
    assert Settings.from_env({"VTSTREAM_URL_REDACT_VALUES": "EMAIL"}).privacy.redact_values == ("email",)
    assert Settings.from_env({"VTSTREAM_URL_REDACT_VALUES": ""}).privacy.redact_values == ()
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="name any of jwt, email"):
        Settings.from_env({"VTSTREAM_URL_REDACT_VALUES": "ssn"})
    skipped = redact("https://app.example.com/?u=alice%40corp.example", UrlPrivacy(mode="skip"))
    assert skipped.url is None and "alice" not in (skipped.reason or "")


# ------------------------------------------------------------------ link wrappers carrying the recipient

SAFE_LINK = ("https://eur03.safelinks.protection.outlook.com/?url=https%3A%2F%2Fevil.example.net%2Flogin%3Fsession"
             "%3DS3CRET%26lang%3Den&data=05%7C02%7Calice%40corp.example%7C1b2c3d4e5f%7C72f988bf86f141af%7C0%7C0%7C63"
             "8700000000000000%7CUnknown%7CTWFpbGZsb3d8&sdata=abcDEF%2Fghi%3D&reserved=0")
PROOFPOINT_V2 = ("https://urldefense.proofpoint.com/v2/url?u=https-3A__evil.example.net_login-3Fsession-3DS3CRET"
                 "-26lang-3Den&d=DwMFaQ&c=euGZstcaTDllvimEN8b7jXrwqOf-v5A_CdpgnVfiiMM&r=alice-recipient-hash"
                 "&m=mmm&s=sss&e=")
PROOFPOINT_V3 = ("https://urldefense.com/v3/__https://evil.example.net/login?session=S3CRET&lang=en*frag__;Iw!!"
                 "ORG1!alice-recipient-trail$")


@pytest.mark.parametrize("url, sent, redacted", [
    (SAFE_LINK, "https://evil.example.net/login?lang=en", ("safelinks", "session")),
    (PROOFPOINT_V2, "https://evil.example.net/login?lang=en", ("urldefense", "session")),
    (PROOFPOINT_V3, "https://evil.example.net/login?lang=en", ("urldefense", "session")),
    ("https://linkprotect.cudasvc.com/url?a=https%3a%2f%2fevil.example.net%2f&c=E,1,alice&typo=1",
     "https://evil.example.net/", ("linkprotect",)),
    ("https://imsva91-ctp.trendmicro.com/wis/clicktime/v1/query?url=https%3a%2f%2fevil.example.net%2f&umid=x"
     "&auth=y", "https://evil.example.net/", ("clicktime",)),
])
def test_a_wrapper_is_replaced_by_the_link_it_wraps_and_the_recipient_never_leaves(url, sent, redacted):
    got = redact(url, DEFAULTS)
    assert (got.url, got.redacted) == (sent, redacted)
    for trail in ("alice", "recipient", "S3CRET", "sdata", "ORG1"):
        assert trail not in (got.url or "")


@pytest.mark.parametrize("url", [
    "https://urldefense.com/v3/__https://evil.example.net/a*b__;!!ORG1!alice$",  # fewer characters than stars
    "https://nam12.safelinks.protection.outlook.com/?data=05%7C02%7Calice%40corp.example",  # no target
    "https://urldefense.proofpoint.com/v2/url?u=not-20a-20url&r=alice",
])
def test_a_wrapper_whose_target_cannot_be_read_is_not_sent(url):
    got = redact(url, DEFAULTS)
    assert got.url is None and got.rule == "url_wrapper" and "alice" not in (got.reason or "")


def test_wrappers_of_wrappers_and_ordinary_pages_of_the_same_vendors():
    inner = "https%3A%2F%2Furldefense.com%2Fv3%2F__https%3A%2F%2Fevil.example.net%2F__%3B!!O!alice%24"
    got = redact(f"https://nam12.safelinks.protection.outlook.com/?url={inner}&data=x", DEFAULTS)
    assert (got.url, got.redacted) == ("https://evil.example.net/", ("safelinks", "urldefense"))
    assert redact("https://www.trendmicro.com/en_us/research.html", DEFAULTS).redacted == ()


# ------------------------------------------------------------------ properties over untrusted URLs


_PARTS = st.sampled_from(["token=a", "x=1", "u=alice%40corp.example", f"t={JWT}", "url=https%3A%2F%2Fa.example.com",
                          "%74oken=b", "accessToken=c", "", "=", "&", ";", "a=%", "q=%25%32%35", "@", "k[]=1"])


@given(path=st.sampled_from(["/", "/a;sid=1/b", "/p@th", ""]), query=st.lists(_PARTS, max_size=8),
       fragment=st.lists(_PARTS, max_size=4), userinfo=st.sampled_from(["", "bob:pw@", "bob@"]))
@hsettings(max_examples=400, deadline=None)
def test_redaction_is_idempotent_and_leaves_no_secret(path, query, fragment, userinfo):
    url = f"https://{userinfo}h.example.com{path}" + ("?" + "&".join(query) if query else "") + \
        ("#" + "&".join(fragment) if fragment else "")
    got = redact(url, DEFAULTS)
    assert got.url is not None
    assert redact(got.url, DEFAULTS).url == got.url
    for secret in ("alice", JWT, "bob", "token=a", "oken=b", "accessToken"):
        assert secret not in got.url


def test_scrub_masks_a_url_nested_deeper_than_it_looks():
    """Four wrappings are decoded; a fifth level is masked whole, unread (it might hold a secret)."""
    url = "https://in.example/?x=1"
    for _ in range(5):
        url = "https://wrap.example/?u=" + quote(url, safe="")
    out = scrub(url, DEFAULTS)
    assert "REDACTED" in out and "in.example" not in out.replace("%2F", "/").replace("%3A", ":")
    shallow = "https://wrap.example/?u=" + quote("https://in.example/?x=1", safe="")
    assert scrub(shallow, DEFAULTS) == shallow


@pytest.mark.parametrize("text", [
    "GET https://sso.example.com/cb?X-Amz-Signature=S3CRET&Access-Token=S3CRET&client.secret=S3CRET&lang=en",
    f"https://app.example.com/?t={JWT}&u=alice%40corp.example&r=bob@corp.example.org",
])
def test_scrub_masks_what_redact_takes_out_by_spelling_and_by_value(text):
    out = scrub(text, DEFAULTS)
    assert "S3CRET" not in out and JWT not in out and "alice" not in out and "bob@" not in out, out
    assert "lang=en" in out or "t=REDACTED" in out
