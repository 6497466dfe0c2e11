"""STIX 2.1 bundles on indicators.stix and the TAXII 2.1 server, over a real broker and the emulator.

Checked with the off-the-shelf OASIS tools: stix2-validator for every bundle,
stix2 to parse them, taxii2-client to discover, list and page the collection.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import stix2
from tests.support.kafka import collect, produce
from tests.support.settings import fast_retries
from stix2validator import ValidationOptions, validate_instance
from taxii2client.v21 import Server, as_pages

from pipeline.devtools.broker import free_port
from pipeline.devtools.rig import child_env
from pipeline.kafka.admin import ensure_topics, topic_catalog
from pipeline.contracts.card import SummaryCard
from pipeline.outputs.stix import StixOptions, build_bundle
from pipeline.settings import Settings
from topics import RAW, STIX

pytestmark = pytest.mark.integration

GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
SHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
INPUTS = ["8.8.8.8", "example.com", SHA256, "http://www.google.com/", "unknown-notfound.example.org"]
USER, PASSWORD = "feed-reader", "s3cret-taxii-pass"
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "mapping"
GOLDEN_ANSWERS = ["v3__domain_resolutions_jppost-ge.top", "v3__file_report_pe_01ba4719", "v3__url_7d83e9f6_malicious",
                  "v3__ip_address_8.8.8.8_with_relationships", "v2__url_report_phishing", "v2__file_report_detected",
                  "v3__domain_github.com"]


def sightings(labels, upload):
    """Every indicator type, a name the emulator does not know, and an unknown file to upload and scan."""
    out = [{"value": value, "labels": labels} for value in INPUTS]
    return out + [{"file": {"name": "sample.bin", "content_b64": base64.b64encode(upload).decode()},
                   "labels": ["TLP:CLEAR", *labels]}]  # the lower label first: the bundle takes the highest


def stix_worker(kafka, emulator, worker_factory, api, **overrides):
    return worker_factory(kafka, emulator.url, vt_api_version=api, outputs="events,stix", url_max_age="3650d",
                          upload_labels="TLP:CLEAR", stix_indicator_at="1", **fast_retries(), **overrides)


def enrich(kafka, emulator, worker_factory, api, labels, upload):
    """Run a worker with the stix output on; the bundles once every input has one."""
    worker = stix_worker(kafka, emulator, worker_factory, api)
    produce(kafka, RAW, sightings(labels, upload))
    wanted = len(INPUTS) + 1
    bundles = collect(kafka, STIX, lambda got: len(got) >= wanted, timeout=120)
    worker.stop()
    assert len(bundles) == wanted, f"{len(bundles)} bundles, expected {wanted}"
    return bundles


def enrich_again(kafka, emulator, worker_factory, api, first):
    """A second pipeline (its own app id: its own cache and consumer groups) enriches indicators.raw again;
    its bundles once they name every object id of the ``first`` run (replays may repeat some)."""
    worker = stix_worker(kafka, emulator, worker_factory, api, app_id="second-run")
    bundles = collect(kafka, STIX, lambda got: set(ids(got[len(first):])) >= set(ids(first)), timeout=120)
    worker.stop()
    return bundles[len(first):]


def ids(bundles, types=("ipv4-addr", "domain-name", "url", "file", "indicator", "identity")):
    return sorted(o["id"] for b in bundles for o in b["objects"] if o["type"] in types)


@pytest.mark.parametrize("api", ["v3", "v2"])
def test_bundles_for_every_type_validate_parse_carry_green_and_keep_their_ids(
        kafka, emulator_factory, worker_factory, api):
    emulator = emulator_factory("--scan-seconds", "1")
    bundles = enrich(kafka, emulator, worker_factory, api, ["TLP:GREEN"], b"scan me " * 50)
    types = set()
    for bundle in bundles:
        results = validate_instance(bundle, ValidationOptions(version="2.1"))
        assert results.is_valid, [str(e) for e in results.errors]
        parsed = stix2.parse(bundle, allow_custom=False)
        types |= {o.type for o in parsed.objects}
        for obj in bundle["objects"]:
            if obj["type"] != "marking-definition":
                assert obj["object_marking_refs"] == [GREEN], obj["id"]
        assert [o["id"] for o in bundle["objects"] if o["type"] == "marking-definition"] == [GREEN]
    assert {"ipv4-addr", "domain-name", "url", "file", "malware-analysis", "identity", "indicator"} <= types
    verdicts = {a["result"] for b in bundles for a in b["objects"]
                if a["type"] == "malware-analysis" and a["product"] == "VirusTotal"}
    assert "unknown" in verdicts and "malicious" in verdicts  # the name the emulator does not know; a detection

    if api == "v2":
        return  # ids do not depend on the API version's path through the pipeline; one second run is enough
    # a second run (another pipeline, nothing cached): the same indicators get the same ids, and no others
    again = enrich_again(kafka, emulator, worker_factory, api, bundles)
    assert set(ids(again)) == set(ids(bundles))


def taxii_env(bootstrap: str, **env: str) -> dict[str, str]:
    """`vtstream taxii`'s environment: the test's broker and the login the TAXII tests use; ``env`` wins."""
    return child_env(**{"VTSTREAM_KAFKA_BOOTSTRAP": bootstrap, "VTSTREAM_TAXII_USERNAME": USER,
                        "VTSTREAM_TAXII_PASSWORD": PASSWORD, **env})


class Taxii:
    """`vtstream taxii` in a child process."""

    def __init__(self, kafka, verify=True, **env):
        self.port = free_port()
        self.url = f"{'https' if 'VTSTREAM_TAXII_CERT' in env else 'http'}://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline", "taxii", "--port", str(self.port),
                                      "--host", "127.0.0.1"], env=taxii_env(kafka, **env),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(self.url + "/taxii2/", timeout=2, verify=verify)
                return
            except requests.ConnectionError:
                assert self.proc.poll() is None, self.proc.stderr.read().decode() if self.proc.stderr else ""
                time.sleep(0.2)
        raise AssertionError("vtstream taxii did not start listening")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        if self.proc.stderr:
            self.proc.stderr.close()


def all_objects(collection, per_page):
    """Every object of the collection, through taxii2-client's paging, with added_after at the epoch."""
    objects = []
    for envelope in as_pages(collection.get_objects, per_request=per_page, added_after="1970-01-01T00:00:00Z"):
        objects.extend(envelope.get("objects", []))
    return objects


def publish_golden_bundles(kafka):
    """Bundles of recorded answers (the expected mapping outputs), published as the results stage does:
    keyed by indicator, on indicators.stix with its catalog partition count."""
    settings = Settings.from_env({"VTSTREAM_KAFKA_BOOTSTRAP": kafka})
    asyncio.run(ensure_topics(settings, [s for s in topic_catalog(settings) if s.name == STIX]))
    bundles = []
    for name in GOLDEN_ANSWERS:
        events = json.loads((GOLDEN / f"{name}.json").read_text())
        summary = events[-1]
        bundles.append(build_bundle(summary["indicator"], events[:-1], SummaryCard.from_dict(summary["summary"]), labels=["TLP:GREEN"],
                                    options=StixOptions(indicator_at=1), now=time.time()))
    for bundle in bundles:  # one by one, so the records carry increasing timestamps across partitions
        key = next(o for o in bundle["objects"] if o["type"] in ("ipv4-addr", "domain-name", "url", "file"))["id"]
        produce(kafka, STIX, [bundle], key=key.encode())
    return bundles


@pytest.mark.both_brokers
def test_taxii2_client_discovers_lists_and_pages_the_published_objects(kafka, tmp_path, monkeypatch):
    bundles = publish_golden_bundles(kafka)
    published = sorted((o["id"], o.get("modified", "")) for b in bundles for o in b["objects"])

    taxii = Taxii(kafka)
    try:
        server = Server(taxii.url + "/taxii2/", user=USER, password=PASSWORD)
        (root,) = server.api_roots
        (collection,) = root.collections
        assert collection.can_read and not collection.can_write
        served = all_objects(collection, per_page=7)
        assert sorted((o["id"], o.get("modified", "")) for o in served) == published
        some = served[len(served) // 2]
        assert collection.get_object(some["id"])["objects"][0]["id"] == some["id"]
        manifest = collection.get_manifest(limit=5)
        assert manifest["more"] is True and len(manifest["objects"]) == 5

        # added_after takes only what came later: nothing after the last object served
        last = requests.get(f"{collection.url}objects/", auth=(USER, PASSWORD), params={"limit": 1000},
                            headers={"Accept": "application/taxii+json;version=2.1"})
        assert last.headers["Content-Type"] == "application/taxii+json;version=2.1"
        after = requests.get(f"{collection.url}objects/", auth=(USER, PASSWORD),
                             params={"added_after": last.headers["X-TAXII-Date-Added-Last"]})
        assert after.json() == {"more": False}

        wrong = Server(taxii.url + "/taxii2/", user=USER, password="not-the-password")
        with pytest.raises(requests.HTTPError, match="401"):
            wrong.refresh()
        refused = requests.get(taxii.url + "/taxii2/", auth=(USER, "nope"))
        assert refused.status_code == 401 and refused.json()["http_status"] == "401"
        write = requests.post(f"{collection.url}objects/", auth=(USER, PASSWORD), json={"objects": []},
                              headers={"Content-Type": "application/taxii+json;version=2.1"})
        assert write.status_code == 403 and write.json()["http_status"] == "403"
    finally:
        taxii.stop()

    # stopped and started again, now over HTTPS: the same objects, read from Kafka
    cert, key = self_signed(tmp_path)
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # requests lets these override a session's CA file
        monkeypatch.delenv(variable, raising=False)
    taxii = Taxii(kafka, verify=str(cert), VTSTREAM_TAXII_CERT=str(cert), VTSTREAM_TAXII_KEY=str(key))
    try:
        server = Server(taxii.url + "/taxii2/", user=USER, password=PASSWORD, verify=str(cert))
        again = all_objects(server.api_roots[0].collections[0], per_page=50)
        assert sorted((o["id"], o.get("modified", "")) for o in again) == published
    finally:
        taxii.stop()


def self_signed(folder):
    """A certificate for 127.0.0.1 and its key, made with the openssl command line."""
    cert, key = folder / "taxii.crt", folder / "taxii.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key
