"""`vtstream misp-feed` over a real pipeline: a worker enriches through the emulator, the feed serves it.

The feed is fetched over HTTPS with Basic credentials, as MISP fetches it,
and checked with PyMISP (tests/misp_helpers.py): every event loads, every
object holds against MISP's own template, the manifest and hashes.csv are
what PyMISP's feed tools make of the events. A verdict change published on
indicators.enriched then gives the day's event a later timestamp.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest
import requests
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.kafka import produce, wait_finals
from tests.support.misp import attribute, check_feed, objects_of, report_of, value_of
from pipeline.devtools.certs import Authority

from pipeline.devtools.broker import free_port
from pipeline.devtools.rig import child_env, wait_until
from pipeline.kafka.admin import ensure_topics, topic_catalog
from pipeline.outputs.misp.feed import FeedState
from pipeline.outputs.misp.server import Tail, build_app
from pipeline.outputs.topic_reader import TopicReader
from pipeline.settings import Settings
from topics import ENRICHED, RAW

pytestmark = pytest.mark.integration

USER, PASSWORD = "misp-puller", "s3cret-misp-feed-pass"
SHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
INPUTS = {"ip": "8.8.8.8", "domain": "example.com", "sha256": SHA256, "url": "http://www.google.com/",
          "unknown": "unknown-notfound.example.org"}
OBSERVABLE = {"ip": ("ip-port", "ip"), "domain": ("domain-ip", "domain"), "unknown": ("domain-ip", "domain"),
              "url": ("url", "url"), "sha256": ("file", "sha256")}


class MispFeed:
    """`vtstream misp-feed` in a child process, and an HTTP session that reads it as MISP does."""

    def __init__(self, kafka: str, tmp_path: Any, tls: Any = None, ca: str | bool = True, **env: str) -> None:
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        password_file = tmp_path / "misp-feed-password"
        password_file.write_text(PASSWORD + "\n")
        environ = child_env(**{"VTSTREAM_KAFKA_BOOTSTRAP": kafka, "VTSTREAM_MISP_FEED_USERNAME": USER,
                               "VTSTREAM_MISP_FEED_PASSWORD_FILE": str(password_file), **env})
        if tls:
            environ.update({"VTSTREAM_MISP_FEED_CERT": str(tls.cert), "VTSTREAM_MISP_FEED_KEY": str(tls.key)})
        self.log = tmp_path / f"misp-feed-{self.port}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "pipeline", "misp-feed", "--port", str(self.port),
                                          "--host", "127.0.0.1"], env=environ, stdout=log, stderr=log)
        self.session = requests.Session()
        self.session.auth, self.session.verify = (USER, PASSWORD), ca
        try:
            wait_until(self._listening, timeout=60, interval=0.2, what="vtstream misp-feed listening")
        except BaseException:
            self.stop()
            raise

    def _listening(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            requests.get(self.url + "/manifest.json", timeout=2, verify=self.session.verify)
            return True
        except requests.ConnectionError:
            return False

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.session.get(self.url + path, timeout=30, **kw)

    def feed(self) -> tuple[dict[str, Any], str, dict[str, bytes]]:
        """What MISP fetches: the manifest, hashes.csv, and every event the manifest lists."""
        manifest = self.get("/manifest.json").json()
        hashes = self.get("/hashes.csv")
        assert hashes.headers["Content-Type"].startswith("text/csv")
        events = {}
        for uuid in manifest:
            answer = self.get(f"/{uuid}.json")
            assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("application/json")
            events[uuid] = answer.content
        return manifest, hashes.text, events

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def sightings() -> list[dict[str, Any]]:
    out = [{"value": value, "labels": ["TLP:GREEN"]} for value in INPUTS.values()]
    return out + [{"value": INPUTS["domain"], "labels": ["TLP:AMBER"], "id": "second-sighting"}]


async def publish_at(kafka: str, topic: str, record: dict[str, Any], timestamp_ms: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka)
    await producer.start()
    try:
        await producer.send_and_wait(topic, orjson.dumps(record), key=b"verdict-change", timestamp_ms=timestamp_ms)
    finally:
        await producer.stop()


def observable(event: Any, kind: str) -> Any:
    name, relation = OBSERVABLE[kind]
    return next(o for o in objects_of(event, name) if value_of(o, relation) == INPUTS[kind])


def test_misp_pulls_a_valid_feed_and_a_verdict_change_gives_the_day_a_new_version(
        kafka, emulator, worker_factory, tmp_path, monkeypatch):
    worker = worker_factory(kafka, emulator.url, url_max_age="3650d")
    produce(kafka, RAW, sightings())
    wait_finals(kafka, len(sightings()))
    worker.stop()

    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # requests lets these override a session's CA file
        monkeypatch.delenv(variable, raising=False)
    authority = Authority(tmp_path)
    server = MispFeed(kafka, tmp_path, tls=authority.issue("feed", "127.0.0.1", server=True),
                      ca=str(authority.pem.cert))
    try:
        anonymous = requests.get(server.url + "/manifest.json", verify=server.session.verify, timeout=30)
        assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")
        wrong = requests.get(server.url + "/manifest.json", auth=(USER, "nope"), verify=server.session.verify)
        assert wrong.status_code == 401
        # MISP sends the credentials as a header it was given ("Authorization: Basic ...")
        header = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        wait_until(lambda: requests.get(server.url + "/manifest.json", headers={"Authorization": header},
                                        verify=server.session.verify).status_code == 200,
                   timeout=60, what="the feed read indicators.enriched to its end")

        manifest, hashes, events = server.feed()
        (event,) = check_feed(manifest, hashes, events).values()
        assert server.get("//manifest.json").json() == manifest  # a feed URL entered with a trailing slash
        today = datetime.now(timezone.utc).date().isoformat()
        assert event.info == f"vtstream: VirusTotal enrichment {event.date.isoformat()}"
        assert event.date.isoformat() in (today, (datetime.fromtimestamp(time.time() - 3600, timezone.utc)
                                                  .date().isoformat()))
        for kind in INPUTS:
            obj = observable(event, kind)
            report = report_of(event, obj)
            assert value_of(report, "permalink").startswith("https://www.virustotal.com/gui/")
            marking = "tlp:amber" if kind == "domain" else "tlp:green"  # the highest of the day's sightings
            assert {t.name for a in obj.attributes + report.attributes for t in a.tags} == {marking}
            ratio = value_of(report, "detection-ratio")
            positives = int(ratio.split("/")[0]) if ratio else 0
            main = attribute(obj, OBSERVABLE[kind][1])
            assert main.to_ids is (positives >= 5), (kind, ratio)  # VTSTREAM_STIX_INDICATOR_AT's default
        assert "does not know it" in value_of(report_of(event, observable(event, "unknown")), "comment")

        # a later lookup flags the domain: the day's event gets a new version that MISP pulls again
        before = manifest[event.uuid]["timestamp"]
        domain = observable(event, "domain")
        now_ms = int(time.time() * 1000)
        end_of_day_ms = int(datetime.combine(event.date, datetime.max.time(), timezone.utc).timestamp() * 1000)
        change = {"kind": "verdict_change", "indicator": {"type": "domain", "value": INPUTS["domain"]},
                  "previous": {"verdict": "benign", "positives": 0, "total": 70, "checked_at": "2026-01-01T00:00:00Z"},
                  "current": {"verdict": "malicious", "positives": 60, "total": 70,
                              "checked_at": datetime.now(timezone.utc).isoformat()},
                  "first_seen": "2026-01-01T00:00:00Z", "sightings": 2, "origin": {"labels": ["TLP:GREEN"]}}
        asyncio.run(publish_at(kafka, ENRICHED, change, min(now_ms, end_of_day_ms)))
        wait_until(lambda: server.get("/manifest.json").json()[event.uuid]["timestamp"] > before, timeout=60,
                   what="the day's event to get a new version")
        (changed,) = check_feed(*server.feed()).values()
        flagged = observable(changed, "domain")
        assert flagged.uuid == domain.uuid and attribute(flagged, "domain").to_ids is True
        report = report_of(changed, flagged)
        assert value_of(report, "detection-ratio") == "60/70" and value_of(report, "comment").endswith("(was benign)")

        # what any client may send is answered with 4xx, never 500
        assert server.session.post(server.url + "/manifest.json", data=b"{}").status_code == 405
        for path in ("/nope.json", "/../../etc/passwd", f"/{event.uuid.upper()}.json", "/%00.json", "/" + "a" * 5000):
            assert server.get(path).status_code == 404, path
        assert server.session.head(server.url + f"/{event.uuid}.json").status_code == 200
        for junk, status in (("Basic \u00e9\u00e9", 400), ("Basic", 400), ("Digest x", 401), ("Basic " + "A" * 4000, 400)):
            assert requests.get(server.url + "/hashes.csv", headers={"Authorization": junk},
                                verify=server.session.verify).status_code == status, junk
        fuzz_paths(server)
    finally:
        server.stop()

    # started again, over plain HTTP on loopback: the same events, objects and attributes, read from Kafka
    again = MispFeed(kafka, tmp_path)
    try:
        wait_until(lambda: again.get("/manifest.json").status_code == 200, timeout=60, what="the restarted feed")
        (restarted,) = check_feed(*again.feed()).values()
        assert restarted.uuid == changed.uuid
        assert sorted(a.uuid for o in restarted.objects for a in o.attributes) == sorted(
            a.uuid for o in changed.objects for a in o.attributes)
    finally:
        again.stop()


def fuzz_paths(server: MispFeed) -> None:
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(path=st.text(st.characters(codec="utf-8", exclude_characters="\r\n#?"), max_size=80),
           query=st.text(max_size=30))
    def any_path_is_answered_below_500(path: str, query: str) -> None:
        answer = server.session.get(server.url + "/" + path.lstrip("/"), params={"q": query}, timeout=30)
        assert answer.status_code < 500, (path, answer.status_code)

    any_path_is_answered_below_500()


def test_the_feed_is_ready_only_once_it_has_read_the_topic_and_answers_503_before(kafka):
    """Readiness means everything published before it was folded: 300 records, read 50 at a time,
    after a first fetch that came back empty."""
    settings = Settings.from_env({"VTSTREAM_KAFKA_BOOTSTRAP": kafka, "VTSTREAM_MISP_FEED_USERNAME": USER,
                                  "VTSTREAM_MISP_FEED_PASSWORD": PASSWORD})
    asyncio.run(ensure_topics(settings, [t for t in topic_catalog(settings) if t.name == ENRICHED]))
    produce(kafka, ENRICHED, [{"kind": "summary", "indicator": {"type": "domain", "value": f"host{i}.example"},
                               "summary": {"checked": True, "found": True, "positives": 0, "total": 70}}
                              for i in range(300)])

    async def run() -> None:
        state = FeedState(app_id="vtstream", days=2, max_indicators=1000, indicator_at=5)
        reader = SlowFirstFetch(settings, ENRICHED, batch=50)
        await reader.start()
        tail = Tail(reader, state)
        server = web_server(build_app(settings, state, tail, PASSWORD))
        await server.start_server()
        try:
            status, headers = await asyncio.to_thread(http_get, server.port, "/manifest.json")
            assert status == 503 and headers["Retry-After"]  # nothing read yet: no partial feed
            assert (await asyncio.to_thread(http_get, server.port, "/manifest.json", "nope"))[0] == 401
            following = asyncio.create_task(tail.run())
            await asyncio.wait_for(tail.ready.wait(), 60)
            assert tail.records == 300 and len(state.served()[0].entries) == 300
            assert (await asyncio.to_thread(http_get, server.port, "/manifest.json"))[0] == 200
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
        finally:
            await server.close()
            await reader.stop()

    asyncio.run(run())


class SlowFirstFetch(TopicReader):
    """The first fetch comes back empty, as a slow broker's can: an empty poll alone is not the end."""

    slow = True

    async def poll(self, timeout_ms: int = 1000) -> list[Any]:
        if self.slow:
            self.slow = False
            return []
        return await super().poll(timeout_ms)


def web_server(app: Any) -> Any:
    from aiohttp.test_utils import TestServer

    return TestServer(app, host="127.0.0.1")


def http_get(port: int, path: str, password: str = PASSWORD) -> tuple[int, dict[str, str]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    token = base64.b64encode(f"{USER}:{password}".encode()).decode()
    connection.request("GET", path, headers={"Authorization": f"Basic {token}"})
    answer = connection.getresponse()
    answer.read()
    connection.close()
    return answer.status, dict(answer.getheaders())
