import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.contracts.origin import Origin
from pipeline.settings import Settings
from pipeline.stages.intake import Accepted, Rejected, Skipped, parse
from tests.support.stages import stage_context
from topics import LOOKUPS

pytestmark = pytest.mark.unit

S = Settings.of(policy_internal_domains=("corp.example",))


def accepted(raw: bytes, settings: Settings = S) -> Accepted:
    outcome = parse(raw, "indicators.raw/0/1", settings)
    assert isinstance(outcome, Accepted), outcome
    return outcome


def rejected(raw: bytes | None) -> str:
    outcome = parse(raw, "indicators.raw/0/1", S)
    assert isinstance(outcome, Rejected), outcome
    return outcome.reason


def test_bare_line_and_json_object_give_the_same_indicator():
    a = accepted(b"  8.8.8.8\n")
    b = accepted(b'{"value": "8.8.8.8", "source": "fw", "id": 17, "labels": ["TLP:GREEN"], "tags": "a, b"}')
    assert a.indicator == b.indicator
    assert a.origin == Origin(ref="indicators.raw/0/1")
    assert b.origin == Origin(id="17", source="fw", labels=("TLP:GREEN",), tags=("a", "b"), ref="indicators.raw/0/1")


def test_declared_type_is_honoured():
    assert accepted(b'{"value": "EXAMPLE.com.", "type": "domain"}').indicator.value == "example.com"


@pytest.mark.parametrize("raw, needle", [
    (None, "no value"),
    (b"", "empty"),
    (b"   \n\t ", "empty"),
    (b"\xff\xfe\x00garbage", "UTF-8"),
    (b"8.8.8.8\n1.1.1.1", "one indicator per record"),
    (b"[1, 2]", "not an array"),
    (b'{"value": 42}', "'value' as a string"),
    (b'{"nothing": "here"}', "missing"),
    (b'{"value": "8.8.8.8", "type": 4}', "'type' must be a string"),
    (b'{"value": "8.8.8.8", "labels": [1]}', "labels"),
    (b'{"value": "8.8.8.8", "source": {"a": 1}}', "'source' must be a string"),
    (b'{"value": "8.8.8.8"', "does not parse"),
    (b"[" * 5000 + b"]" * 5000, "does not parse"),
    (b'{"value": "' + b"a" * (1024 * 1024) + b'"}', ""),
    (b"x" * (3 * 1024 * 1024), "limit"),
    (b"not an indicator", ""),
])
def test_malformed_input_is_rejected_with_a_reason(raw, needle):
    reason = rejected(raw)
    assert reason and needle in reason


def test_deeply_nested_object_is_rejected_not_crashing():
    deep = b'{"value": "8.8.8.8", "x": ' + b'{"a": ' * 2000 + b"1" + b"}" * 2000 + b"}"
    assert rejected(deep)


@pytest.mark.parametrize("raw, rule", [
    (b"10.1.2.3", "private_address"),
    (b'{"value": "8.8.8.8", "labels": ["tlp:red"]}', "blocked_label"),
    (b"a.corp.example", "internal_domain"),
])
def test_policy_skips_with_rule(raw, rule):
    outcome = parse(raw, "r", S)
    assert isinstance(outcome, Skipped) and outcome.rule == rule and outcome.reason


def test_allow_list_only_sends_matching_labels():
    s = Settings.of(policy_allow_labels=("TLP:GREEN",))
    assert isinstance(parse(b"8.8.8.8", "r", s), Skipped)
    assert isinstance(parse(orjson.dumps({"value": "8.8.8.8", "labels": ["TLP:GREEN"]}), "r", s), Accepted)


def test_random_bytes_never_raise():
    import random

    rng = random.Random(7)
    for _ in range(3000):
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
        parse(raw, "r", S)
        parse(raw.decode("latin-1").encode("utf-8"), "r", S)


# --- the privacy gate on raw records ----------------------------------------------------------------

@pytest.mark.parametrize("record", [
    {"value": "8.8.8.8", "labels": ["TLP:GREEN,TLP:RED"]},
    {"value": "8.8.8.8", "tags": ["TLP:RED"]},
    {"value": "8.8.8.8", "labels": ["TLP-RED"]},
    {"value": "8.8.8.8", "labels": ["ＴＬＰ:ＲＥＤ"]},
    {"value": "8.8.8.8", "labels": ["PAP:RED"]},
    {"value": "8.8.8.8", "labels": ["TLP:\u200bRED"]},
    {"value": "8.8.8.8", "tlp": "red"},
    {"value": "8.8.8.8", "tags": "ops;TLP RED"},
], ids=["two-in-one", "tags", "hyphen", "fullwidth", "pap", "zero-width", "tlp-field", "tags-string"])
def test_every_spelling_of_a_blocked_label_is_skipped_with_a_summary_reason(record):
    outcome = parse(orjson.dumps(record), "indicators.raw/0/1", S)
    assert isinstance(outcome, Skipped) and outcome.rule == "blocked_label"
    assert "never sent to VirusTotal" in outcome.reason


def test_the_tlp_field_is_kept_on_the_origin():
    origin = accepted(b'{"value": "8.8.8.8", "tlp": "green"}').origin
    assert origin.tlp == ("green",) and origin.published()["tlp"] == ["green"]


def test_an_unknown_marking_is_skipped_and_named():
    outcome = parse(b'{"value": "8.8.8.8", "labels": ["TLP:ROT"]}', "indicators.raw/0/1", S)
    assert isinstance(outcome, Skipped) and outcome.rule == "unknown_label" and "TLP:ROT" in outcome.reason


def test_an_unwrapped_link_to_an_internal_host_is_skipped():
    raw = orjson.dumps({"value": "https://eur01.safelinks.protection.outlook.com/?url=https%3A%2F%2Fwiki.corp.example"
                                 "%2F&data=05%7C02%7Calice%40corp.example"})
    outcome = parse(raw, "indicators.raw/0/1", S)
    assert isinstance(outcome, Skipped) and outcome.rule == "internal_domain"


def test_a_file_event_is_recognised_after_decoding_not_by_its_bytes():
    from pipeline.stages.intake import decode, is_file_event

    escaped = b'{"\\u0066ile": {"name": "x", "content_b64": "aGk="}}'
    assert b'"file"' not in escaped and is_file_event(decode(escaped))
    assert not is_file_event(decode(b'{"value": "file.example.com", "note": "\\"file\\""}'))
    assert accepted(escaped).action == "submit_file"


def test_the_memo_caches_are_bounded_by_bytes():
    from pipeline.stages import intake

    memo = intake.checks(S).memo
    before = len(memo)
    for n in range(50):  # long values and labels are judged, never remembered
        outcome = parse(orjson.dumps({"value": f"https://h{n}.example.com/" + "a" * 8000, "labels": ["x" * 250] * 30}),
                        "indicators.raw/0/1", S)
        assert isinstance(outcome, Accepted)
    assert len(memo) == before and intake.checks(S).memo is memo
    parse(b"short.example.com", "indicators.raw/0/2", S)
    assert len(memo) == before + 1  # a short one is
    assert memo.max_bytes <= 64 * 1024 * 1024


@pytest.mark.parametrize("raw", [b'{"file": {"name": "a", "content_b64": "aGk="}}',
                                 b'{"\\u0066ile": {"name": "a", "content_b64": "aGk="}}',
                                 b'{"\\u0066\\u0069le": {"name": "a", "content_b64": "aGk="}, "value": "x"}'])
def test_a_file_event_is_known_after_decoding_and_hashed_off_the_loop(monkeypatch, raw):
    """However "file" is spelled in the JSON, the event is hashed in a thread, not on the event loop."""
    import asyncio

    from pipeline.kafka.runtime import Outbox, Received
    from pipeline.kafka.replica import CacheCopy
    from pipeline.stages import intake

    threaded: list[object] = []
    real = asyncio.to_thread

    async def to_thread(func, *args, **kwargs):
        threaded.append(func)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(intake.asyncio, "to_thread", to_thread)
    sent: list[str] = []

    async def send(topic, key, value):
        sent.append(topic)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    ctx = stage_context()
    asyncio.run(intake.handle(ctx, CacheCopy(10), Outbox(send), Received(b"", raw, "indicators.raw/0/1", 0.0)))
    assert threaded == [intake.judge_fields] and sent == [LOOKUPS]


@pytest.mark.parametrize("labels, needle", [(["x" * 300], "300 characters long"),
                                            (["y" * 200] * 50, "10,000 characters in all")])
def test_labels_that_would_fill_every_summary_are_refused(labels, needle):
    outcome = parse(orjson.dumps({"value": "8.8.8.8", "labels": labels}), "indicators.raw/0/1", Settings())
    assert isinstance(outcome, Rejected) and needle in outcome.reason


_FIELD = st.sampled_from(["value", "type", "id", "source", "observed_at", "labels", "tags", "tlp", "file", "x"])
_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False), st.text(max_size=8),
                   st.lists(st.one_of(st.text(max_size=4), st.integers(-9, 9)), max_size=3),
                   st.sampled_from(["8.8.8.8", "ip", "TLP:RED", "a,b", "hxxp://x[.]example.org/"]))


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # a loaded box draws slowly
@given(doc=st.dictionaries(_FIELD, _VALUE, max_size=6), tail=st.sampled_from([b"", b" ", b"\n", b"x", b"\xff", b"}"]))
def test_a_json_record_decodes_from_its_bytes_as_from_its_text(doc, tail):
    """Most records are parsed from their bytes; a record with a space in front takes the path that
    decodes the text first. Both give the same fields, or the same reason (its positions one apart),
    for any record."""
    import re

    from pipeline.stages.intake import decode

    raw = orjson.dumps(doc) + tail
    fast, slow = decode(raw), decode(b" " + raw)
    if isinstance(fast, Rejected) and isinstance(slow, Rejected):
        assert re.sub(r"\d+", "N", fast.reason) == re.sub(r"\d+", "N", slow.reason)
    else:
        assert fast == slow


def test_remembered_checks_belong_to_the_settings_they_were_made_under():
    """A repeat is answered from memory, but never with another settings object's decision."""
    raw = b"wiki.acme-intranet.com"
    internal, default = Settings.of(policy_internal_domains=("acme-intranet.com",)), Settings()
    for under, kind in ((internal, Skipped), (default, Accepted), (internal, Skipped), (default, Accepted)):
        assert isinstance(parse(raw, "indicators.raw/0/1", under), kind)
