"""Uploads send only what intake approved: crafted vt.requests records naming /proc/self/environ, a file
outside VTSTREAM_FILE_ROOT, a symlink or a FIFO upload nothing (the emulator counts every submission)."""

from __future__ import annotations

import hashlib
import os

import pytest
from tests.support.kafka import finals, produce, wait_finals
from tests.support.settings import fast_retries

from pipeline.contracts.indicator import FileRef, Indicator
from pipeline.contracts.origin import Origin
from pipeline.contracts.wire import VtRequest
from topics import RAW, REQUESTS

pytestmark = pytest.mark.integration

BODY = b"MZ" + b"\x90" * 3000 + b"approved sample"


def crafted(ref: str, path: str, data: bytes = BODY, labels: tuple[str, ...] = ("TLP:CLEAR",)) -> bytes:
    sha = hashlib.sha256(data).hexdigest()
    request = VtRequest(Indicator("sha256", sha), "submit_file", "v3", Origin(ref=ref, labels=labels),
                        file=FileRef(sha, len(data), "sample.bin", path=path))
    return request.to_bytes()


def test_crafted_upload_requests_upload_nothing_and_say_why(kafka, emulator_factory, worker_factory, tmp_path):
    emulator = emulator_factory("--scan-seconds", "1", "--not-found-ratio", "1.0")
    root = tmp_path / "files"
    root.mkdir()
    (root / "approved.bin").write_bytes(BODY)
    (tmp_path / "outside.bin").write_bytes(BODY)
    (root / "link.bin").symlink_to(tmp_path / "outside.bin")
    os.mkfifo(root / "pipe.bin")
    (root / "changed.bin").write_bytes(BODY)
    worker = worker_factory(kafka, emulator.url, upload_labels="TLP:CLEAR", file_root=str(root), **fast_retries())
    records = [
        crafted("proc", "/proc/self/environ"),
        crafted("outside", str(tmp_path / "outside.bin")),
        crafted("symlink", str(root / "link.bin")),
        crafted("fifo", str(root / "pipe.bin")),
        crafted("changed", str(root / "changed.bin"), data=BODY + b"as intake saw it"),
        crafted("unlabelled", str(root / "approved.bin"), labels=()),
    ]
    for record in records:
        produce(kafka, REQUESTS, [record])
    events = wait_finals(kafka, len(records))
    by_ref = {e["origin"]["ref"]: e["summary"] for e in finals(events)}
    assert set(by_ref) == {"proc", "outside", "symlink", "fifo", "changed", "unlabelled"}
    for ref, needle in [("proc", "not beneath VTSTREAM_FILE_ROOT"), ("outside", "not beneath VTSTREAM_FILE_ROOT"),
                        ("symlink", "symbolic link"), ("fifo", "a FIFO"), ("changed", "intake recorded"),
                        ("unlabelled", "no label in VTSTREAM_UPLOAD_LABELS")]:
        notes = " ".join(by_ref[ref]["notes"])
        assert by_ref[ref]["found"] is False and "not uploaded" in notes and needle in notes, (ref, notes)
    assert emulator.stats()["submission_requests"] == 0  # not one upload
    assert worker.alive()

    # the approved file, with its label, is uploaded: the refusals above were not a broken upload path
    produce(kafka, RAW, [{"file": {"name": "approved.bin", "uri": (root / "approved.bin").as_uri()},
                                       "labels": ["TLP:CLEAR"], "id": "approved"}])
    wait_finals(kafka, len(records) + 1)
    assert emulator.stats()["submission_requests"] == 1
