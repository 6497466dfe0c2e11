"""Local table state heals itself: a RocksDB store the cluster no longer backs is rebuilt, not fatal."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.kafka import produce, wait_finals

from pipeline.devtools.broker import EmbeddedBroker, free_port
from topics import RAW

pytestmark = pytest.mark.integration

HEALED = "local table state disagrees with the changelog"
#: Enough indicators that every cache partition's stored offset is above 0 (faust skips its check at 0).
FIRST = [f"10.{i}.0.1" for i in range(1, 9)] + ["example.com", "example.org"]


def test_a_worker_whose_broker_was_replaced_rebuilds_its_store_and_enriches(tmp_path: Path, emulator,
                                                                               worker_factory) -> None:
    port, state = free_port(), tmp_path / "state"
    rocksdb = {"store": "rocksdb://", "data_dir": str(state)}
    with EmbeddedBroker(port=port) as first:
        worker = worker_factory(first.bootstrap, emulator.url, **rocksdb)
        produce(first.bootstrap, RAW, FIRST)
        wait_finals(first.bootstrap, len(FIRST))
        worker.stop()
    assert HEALED not in worker.output()
    stores = list(state.glob("*.vtstream"))
    assert len(stores) == 1, stores  # one folder: <cluster id>.<app id>

    with EmbeddedBroker(port=port) as second:  # same address, fresh and empty: the store is now ahead
        worker = worker_factory(second.bootstrap, emulator.url, **rocksdb)
        produce(second.bootstrap, RAW, ["10.1.0.1", "192.0.2.77"])
        events = wait_finals(second.bootstrap, 2)
        worker.stop()
    out = worker.output()
    assert out.count(HEALED) == 1, out[-3000:]
    assert "ConsistencyError" not in out
    # Rebuilt from the (empty) changelog: the repeat is looked up again, not served from the old store.
    repeat = [e for e in events if e["kind"] == "summary" and e["indicator"]["value"] == "10.1.0.1"]
    assert repeat and not any(e["summary"].get("cached") for e in repeat), repeat
