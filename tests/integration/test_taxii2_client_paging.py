"""TAXII paging is exact, checked from outside with the OASIS taxii2-client and small pages.

Every object published on indicators.stix comes back once per bundle when
the client follows ``next`` to the end, at page sizes 1, 3 and 7, with and
without ``added_after`` and ``match[type]``, in the same order at every page
size. The bundles come from a real worker (whose producer puts several
bundles in one record batch) and from record batches laid out by hand: the
embedded broker answers ListOffsets with the last batch's base offset + 1,
which is what lost the objects behind it (docs/taxii.md).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import orjson
import pytest
from taxii2client.v21 import Server, as_pages
from tests.integration.test_stix_taxii import GOLDEN, GOLDEN_ANSWERS, PASSWORD, USER, Taxii, enrich

from pipeline.kafka.admin import ensure_topics, make_producer, topic_catalog
from pipeline.contracts.card import SummaryCard
from pipeline.outputs.stix import StixOptions, build_bundle
from pipeline.settings import Settings
from topics import STIX

pytestmark = pytest.mark.integration

EPOCH = "1970-01-01T00:00:00Z"
PAGE_SIZES = (1, 3, 7)


def page_all(collection: Any, per_page: int, **filters: Any) -> list[dict[str, Any]]:
    """Every object taxii2-client's paging returns, following ``next`` until ``more`` is false."""
    objects: list[dict[str, Any]] = []
    for envelope in as_pages(collection.get_objects, per_request=per_page, **filters):
        objects.extend(envelope.get("objects", []))
    return objects


def multiset(objects: list[dict[str, Any]]) -> Counter[bytes]:
    """Objects as a multiset of their exact content: the identity repeated in six bundles counts six times."""
    return Counter(orjson.dumps(o, option=orjson.OPT_SORT_KEYS) for o in objects)


def difference(published: list[dict[str, Any]], served: list[dict[str, Any]]) -> str:
    missing, extra = multiset(published) - multiset(served), multiset(served) - multiset(published)
    describe = lambda c: sorted(f"{json.loads(k)['type']} {json.loads(k)['id']} x{n}" for k, n in c.items())  # noqa: E731
    return f"missing {describe(missing)}; extra {describe(extra)}"


def check_every_page_size(collection: Any, published: list[dict[str, Any]], **filters: Any) -> None:
    """At every page size the client gets exactly ``published``, in one order."""
    orders = []
    for per_page in PAGE_SIZES:
        served = page_all(collection, per_page, **filters)
        assert multiset(served) == multiset(published), f"page size {per_page}: {difference(published, served)}"
        orders.append([(o["type"], o["id"]) for o in served])
    assert all(order == orders[0] for order in orders), "the order depends on the page size"


def collection_of(taxii: Taxii) -> Any:
    (root,) = Server(taxii.url + "/taxii2/", user=USER, password=PASSWORD).api_roots
    (collection,) = root.collections
    return collection


def test_a_workers_bundles_come_back_whole_at_every_page_size(kafka, emulator_factory, worker_factory):
    """The issue's run: six sightings through a real worker, then the collection paged 7 (and 1, 3) at a time."""
    before = time.time() - 1
    emulator = emulator_factory("--scan-seconds", "1")
    bundles = enrich(kafka, emulator, worker_factory, "v3", [], b"scan me " * 50)
    published = [o for b in bundles for o in b["objects"]]
    assert {"domain-name", "malware-analysis", "identity"} <= {o["type"] for o in published}

    taxii = Taxii(kafka)
    try:
        collection = collection_of(taxii)
        check_every_page_size(collection, published, added_after=EPOCH)
        check_every_page_size(collection, published)
        check_every_page_size(collection, published,
                              added_after=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before)))
        wanted = ("domain-name", "malware-analysis")
        check_every_page_size(collection, [o for o in published if o["type"] in wanted], type=list(wanted))
    finally:
        taxii.stop()


def golden_bundles(now: float) -> list[dict[str, Any]]:
    """Bundles of recorded answers, and last the bundle of a name VirusTotal does not know (3 objects)."""
    bundles = []
    for name in GOLDEN_ANSWERS:
        events = json.loads((GOLDEN / f"{name}.json").read_text())
        bundles.append(build_bundle(events[-1]["indicator"], events[:-1], SummaryCard.from_dict(events[-1]["summary"]),
                                    labels=[],
                                    options=StixOptions(indicator_at=1), now=now))
    bundles.append(build_bundle({"type": "domain", "value": "unknown-notfound.example.org"}, [],
                                SummaryCard(found=False), labels=[], options=StixOptions(), now=now))
    return bundles


async def publish_batches(kafka: str, layout: dict[int, list[list[tuple[dict[str, Any], int]]]]) -> None:
    """Publish each partition's record batches exactly as laid out: (bundle, timestamp in ms) per record."""
    producer = make_producer(Settings.from_env({"VTSTREAM_KAFKA_BOOTSTRAP": kafka}), max_batch_size=8 * 2**20)
    await producer.start()
    try:
        for partition, batches in layout.items():
            for records in batches:
                batch = producer.create_batch()
                for bundle, timestamp_ms in records:
                    assert batch.append(key=None, value=orjson.dumps(bundle), timestamp=timestamp_ms) is not None
                await (await producer.send_batch(batch, STIX, partition=partition))
    finally:
        await producer.stop()


def test_bundles_the_producer_batched_together_come_back_whole(kafka):
    """Several bundles per record batch, the not-found bundle last in the last batch, timestamps equal and
    out of order across and within partitions: every object comes back, at every page size."""
    settings = Settings.from_env({"VTSTREAM_KAFKA_BOOTSTRAP": kafka})
    asyncio.run(ensure_topics(settings, [s for s in topic_catalog(settings) if s.name == STIX]))
    now_ms = int(time.time() * 1000)
    b = golden_bundles(now_ms / 1000)
    layout = {0: [[(b[0], now_ms - 5000), (b[1], now_ms - 9000)], [(b[2], now_ms - 5000), (b[7], now_ms - 4000)]],
              1: [[(b[3], now_ms - 5000)], [(b[4], now_ms - 7000), (b[5], now_ms - 7000), (b[6], now_ms - 3000)]]}
    asyncio.run(publish_batches(kafka, layout))
    published = [o for batches in layout.values() for records in batches for bundle, _ in records
                 for o in bundle["objects"]]

    taxii = Taxii(kafka)
    try:
        collection = collection_of(taxii)
        check_every_page_size(collection, published, added_after=EPOCH)
        check_every_page_size(collection, published)
        # added_after between the timestamps: only the records stamped later, whatever their offsets
        after = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((now_ms - 6000) // 1000)) + ".%03dZ" % (
            (now_ms - 6000) % 1000)
        later = [o for batches in layout.values() for records in batches for bundle, ts in records
                 if ts > now_ms - 6000 for o in bundle["objects"]]
        check_every_page_size(collection, later, added_after=after)
        check_every_page_size(collection, [o for o in published if o["type"] == "relationship"], type="relationship")
        some = published[len(published) // 2]["id"]
        check_every_page_size(collection, [o for o in published if o["id"] == some], id=some)
    finally:
        taxii.stop()
