"""The TAXII server's HTTP surface, in process (aiohttp's test server over an in-memory topic).

Hypothesis draws request parameters and headers, printable but hostile
(non-ASCII, junk tokens, timestamps before 1970, broken Basic credentials):
every answer is TAXII-shaped and none is a 500. Also here: the 503 of a
request that cannot be read before its deadline, where the server may listen,
and the TAXII server's own Kafka login.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.parse
from datetime import timezone
from typing import Any

import orjson
import pytest
from dataclasses import replace
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.taxii_memory import MemoryFeed, Topic

from pipeline.errors import ConfigError, InputError
from pipeline.kafka.security import client_options
from pipeline.outputs.access import basic_credentials, check_listening
from pipeline.outputs.taxii.feed import FeedBusy, Turns, feed_settings
from pipeline.outputs.taxii.paging import Page, Query, Record, encode_cursor
from pipeline.outputs.taxii.server import COLLECTION_ID, TAXII_MEDIA, build_app
from pipeline.settings import Settings

pytestmark = pytest.mark.unit

USER, PASSWORD = "feed", "s3cret-pass"
SETTINGS = Settings.of(taxii_username=USER, taxii_password=PASSWORD)
GOOD_AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
COLLECTION = f"/vtstream/collections/{COLLECTION_ID}/"


def bundle(*ids: str) -> bytes:
    return orjson.dumps({"type": "bundle", "objects": [{"type": i.split("--")[0], "id": i} for i in ids]})


TOPIC = Topic({0: [Record(0, 1000, bundle("domain-name--1", "identity--1")), Record(2, 500, bundle("url--1"))],
               1: [Record(0, 1000, bundle("identity--1", "malware-analysis--1"))]}, {0: 3, 1: 1})


async def ask(requests: list[tuple[str, dict[str, str], dict[str, str]]], feed: Any = None,
              app_settings: Settings = SETTINGS) -> list[tuple[int, dict[str, str], Any]]:
    """(status, headers, JSON body) of each GET (path under the collection, params, headers)."""
    client = TestClient(TestServer(build_app(app_settings, feed or MemoryFeed(TOPIC))))
    await client.start_server()
    try:
        answers = []
        for path, params, headers in requests:
            async with client.get(COLLECTION + path, params=params, headers=headers) as response:
                answers.append((response.status, dict(response.headers), orjson.loads(await response.read())))
        return answers
    finally:
        await client.close()


def check_taxii_shape(status: int, headers: dict[str, str], body: Any, limit: int | None = None) -> None:
    assert headers["Content-Type"] == TAXII_MEDIA
    if status == 200:
        assert set(body) <= {"more", "next", "objects"} and isinstance(body["more"], bool)
        assert limit is None or len(body.get("objects", [])) <= limit
    else:
        assert set(body) == {"title", "description", "http_status"} and body["http_status"] == str(status)


#: printable text a client can put in a URL or a header (no control characters, no lone surrogates)
TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)
TIMES = st.datetimes(timezones=st.just(timezone.utc)).map(
    lambda d: d.isoformat().replace("+00:00", "Z"))
TOKENS = st.dictionaries(st.integers(-2, 3), st.tuples(st.integers(-2, 2**64), st.integers(-2, 9)), max_size=3).map(
    lambda c: base64.urlsafe_b64encode(json.dumps({str(p): list(v) for p, v in c.items()}).encode()).decode())
PARAMS = st.fixed_dictionaries({}, optional={
    "limit": TEXT | st.integers(-3, 5000).map(str), "added_after": TEXT | TIMES, "next": TEXT | TOKENS,
    "match[type]": TEXT | st.sampled_from(["url", "identity,domain-name"]), "match[id]": TEXT | st.just("url--1"),
    "match[version]": TEXT})
AUTH = st.one_of(st.just(GOOD_AUTH), TEXT, TEXT.map(lambda t: "Basic " + t),
                 st.binary(max_size=30).map(lambda b: "Basic " + base64.b64encode(b).decode()))
PATHS = st.sampled_from(["objects/", "manifest/"]) | TEXT.filter(lambda t: t not in ("", ".", "..")).map(
    lambda t: "objects/" + urllib.parse.quote(t, safe="") + "/")
ACCEPT = st.sampled_from(["application/taxii+json;version=2.1", "*/*", "text/html", "application/taxii+json;version=2.0"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(PATHS, PARAMS, st.fixed_dictionaries({"Authorization": AUTH}, optional={"Accept": ACCEPT})),
                min_size=1, max_size=8))
def test_any_request_gets_a_taxii_answer_and_never_a_500(requests):
    for (path, params, headers), (status, answer_headers, body) in zip(requests, asyncio.run(ask(requests))):
        assert status in (200, 400, 401, 404, 406), (path, params, headers, status, body)
        limit = params.get("limit", "")
        check_taxii_shape(status, answer_headers, body, int(limit) if limit.isascii() and limit.isdigit() else None)


@pytest.mark.parametrize("params, headers, why", [
    ({"next": "bm90IGEgdG9rZW4"}, {}, "issued"),                        # base64 of "not a token"
    ({"next": encode_cursor({0: (0, 0)})[:-2] + "!!"}, {}, "issued"),
    ({"next": encode_cursor({7: (0, 0)})}, {}, "issued"),               # a partition the topic lacks
    ({"added_after": "1969-12-31T23:59:59.999Z"}, {}, "before 1970"),
    ({"added_after": "0001-01-01T00:00:00Z"}, {}, "before 1970"),
    ({"limit": "-1"}, {}, "limit"),
    ({}, {"Authorization": "Basic ZmVlZDpzM2NyZXQtcGFzcw==\u00e9"}, "ASCII"),
    ({}, {"Authorization": "Basic " + base64.b64encode("feed:s3cret-p\u00e4ss".encode("latin-1")).decode()}, "UTF-8"),
    ({}, {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}, "':'"),
])
def test_bad_parameters_and_malformed_credentials_are_400s_that_say_why(params, headers, why):
    (status, answer_headers, body), = asyncio.run(ask([("objects/", params, {"Authorization": GOOD_AUTH, **headers})]))
    assert status == 400 and why in body["description"], body
    check_taxii_shape(status, answer_headers, body)


def test_credentials_open_the_collection_and_wrong_ones_get_401():
    wrong = "Basic " + base64.b64encode(f"{USER}:nope".encode()).decode()
    answers = asyncio.run(ask([("objects/", {}, {"Authorization": GOOD_AUTH}), ("objects/", {}, {"Authorization": wrong}),
                               ("objects/", {}, {})]))
    assert [a[0] for a in answers] == [200, 401, 401]
    assert len(answers[0][2]["objects"]) == 5 and answers[1][1]["WWW-Authenticate"].startswith("Basic")


def test_an_object_is_looked_for_through_next_when_the_budget_runs_out_first():
    """objects/{id}/ on a budget of one record: pages say 'more' until the scan has seen the topic."""
    feed, auth = MemoryFeed(TOPIC, budget=1), {"Authorization": GOOD_AUTH}
    (status, _, body), = asyncio.run(ask([("objects/url--1/", {}, auth)], feed))
    pages = 1
    while not body.get("objects"):
        assert status == 200 and body["more"] and pages < 10
        (status, _, body), = asyncio.run(ask([("objects/url--1/", {"next": body["next"]}, auth)], feed))
        pages += 1
    assert body["objects"] == [{"type": "url", "id": "url--1"}]
    (status, _, _), = asyncio.run(ask([("objects/url--2/", {}, auth)], MemoryFeed(TOPIC)))
    assert status == 404


class Busy:
    async def page(self, query: Query, deadline: float) -> Page:
        raise FeedBusy("busy")


class Broken:
    async def page(self, query: Query, deadline: float) -> Page:
        raise RuntimeError("a bug")


def test_a_request_that_cannot_be_read_in_time_gets_503_with_retry_after_and_a_bug_a_taxii_500():
    (status, headers, body), = asyncio.run(ask([("objects/", {}, {"Authorization": GOOD_AUTH})], Busy()))
    assert status == 503 and headers["Retry-After"] == "1"
    check_taxii_shape(status, headers, body)
    (status, headers, body), = asyncio.run(ask([("manifest/", {}, {"Authorization": GOOD_AUTH})], Broken()))
    assert status == 500 and "a bug" not in body["description"]
    check_taxii_shape(status, headers, body)


def test_a_request_waits_for_its_turn_only_until_its_deadline_and_a_hung_read_is_cut_off():
    async def scenario() -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        turns, release = Turns(loop.time, grace=0.05), asyncio.Event()
        holder = asyncio.create_task(turns.take(loop.time() + 60, release.wait, lambda: None))
        await asyncio.sleep(0)  # the holder has the turn and waits for ``release``
        with pytest.raises(FeedBusy):
            await turns.take(loop.time() + 0.05, lambda: asyncio.sleep(0), lambda: None)
        release.set()
        await holder
        with pytest.raises(FeedBusy):  # a read that never returns: cut off at deadline + grace
            await turns.take(loop.time() + 0.05, asyncio.Event().wait, lambda: None)
        return await turns.take(loop.time() + 60, lambda: asyncio.sleep(0, "read"), lambda: None), "ok"

    assert asyncio.run(scenario()) == ("read", "ok")


@given(st.text(max_size=60) | st.binary(max_size=40).map(lambda b: "Basic " + base64.b64encode(b).decode()))
def test_any_authorization_header_is_credentials_none_or_a_bad_request(header):
    try:
        found = basic_credentials(header)
    except InputError:
        return
    assert found is None or (isinstance(found[0], str) and isinstance(found[1], str))


@pytest.mark.parametrize("host, tls, insecure, refused", [
    ("0.0.0.0", False, False, True), ("", False, False, True), ("taxii.example", False, False, True),
    ("0.0.0.0", True, False, False), ("0.0.0.0", False, True, False), ("127.0.0.1", False, False, False),
    ("::1", False, False, False), ("localhost", False, False, False)])
def test_plain_http_beyond_loopback_is_refused_unless_insecure(host, tls, insecure, refused):
    if refused:
        with pytest.raises(ConfigError, match="VTSTREAM_TAXII_INSECURE"):
            check_listening(host, tls, insecure, "VTSTREAM_TAXII")
    else:
        check_listening(host, tls, insecure, "VTSTREAM_TAXII")


def test_the_taxii_server_logs_in_to_kafka_as_itself_or_as_the_worker(tmp_path):
    secret = tmp_path / "taxii-password"
    secret.write_text("reader-secret\n")
    worker = Settings.from_env({"VTSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "VTSTREAM_KAFKA_SASL_USERNAME": "worker",
                                "VTSTREAM_KAFKA_SASL_PASSWORD": "worker-secret",
                                "VTSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"})
    assert client_options(feed_settings(worker))["sasl_plain_username"] == "worker"
    def taxii(**login: object) -> Settings:
        return replace(worker, taxii=replace(worker.taxii, **login))

    own = client_options(feed_settings(taxii(kafka_sasl_username="taxii-reader", kafka_sasl_password_file=secret)))
    assert (own["sasl_plain_username"], own["sasl_plain_password"], own["sasl_mechanism"]) == (
        "taxii-reader", "reader-secret", "SCRAM-SHA-512")
    for broken in ({"kafka_sasl_username": "taxii-reader"}, {"kafka_sasl_password": "x"},
                   {"kafka_sasl_username": "r", "kafka_sasl_password": "x", "kafka_sasl_password_file": secret}):
        with pytest.raises(ConfigError, match="VTSTREAM_TAXII_KAFKA_SASL"):
            feed_settings(taxii(**broken))
    with pytest.raises(ConfigError, match="does not use SASL"):
        feed_settings(Settings.of(taxii_kafka_sasl_username="r", taxii_kafka_sasl_password="x"))
