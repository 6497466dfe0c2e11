"""File events: what intake accepts, and what the gateway agrees to upload (only what intake approved)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import threading
from pathlib import Path

import pytest

from pipeline.contracts.indicator import FileRef
from pipeline.errors import InputError
from pipeline.inputs.files import ApprovedFile, approved_upload, prepare

pytestmark = pytest.mark.unit

BODY = b"MZ" + b"\x90" * 4000 + b"sample"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "files"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "sample.bin").write_bytes(BODY)
    (tmp_path / "outside.bin").write_bytes(BODY)
    return folder


def ref_for(path: Path | str, data: bytes = BODY) -> FileRef:
    return FileRef(hashlib.sha256(data).hexdigest(), len(data), "sample.bin", path=str(path))


def read_all(approved: ApprovedFile) -> bytes:
    async def run() -> bytes:
        return b"".join([chunk async for chunk in approved.chunks()])
    try:
        return asyncio.run(run())
    finally:
        approved.close()


def test_a_file_intake_approved_is_uploaded_from_one_open_descriptor(root):
    ref = prepare({"name": "s", "uri": (root / "sub" / "sample.bin").as_uri()}, root)
    approved = approved_upload(ref, root)
    assert isinstance(approved, ApprovedFile) and read_all(approved) == BODY


@pytest.mark.parametrize("name, make, needle", [
    ("proc", lambda root, tmp: "/proc/self/environ", "not beneath VTSTREAM_FILE_ROOT"),
    ("outside", lambda root, tmp: tmp / "outside.bin", "not beneath VTSTREAM_FILE_ROOT"),
    ("dotdot", lambda root, tmp: f"{root}/sub/../../outside.bin", "not a file path beneath"),
    ("relative", lambda root, tmp: "sub/sample.bin", "not an absolute path"),
    ("symlink-out", lambda root, tmp: _link(root / "link.bin", tmp / "outside.bin"), "symbolic link"),
    ("symlink-in", lambda root, tmp: _link(root / "same.bin", root / "sub" / "sample.bin"), "symbolic link"),
    ("symlink-dir", lambda root, tmp: _link(root / "alias", root / "sub") / "sample.bin", "symbolic link"),
    ("fifo", lambda root, tmp: _fifo(root / "pipe.bin"), "a FIFO"),
    ("directory", lambda root, tmp: root / "sub", "a directory"),
    ("missing", lambda root, tmp: root / "gone.bin", "No such file"),
    ("root itself", lambda root, tmp: root, "not a file path beneath"),
])
def test_anything_but_the_approved_file_is_refused_with_a_reason(root, tmp_path, name, make, needle):
    target = make(root, tmp_path)
    done = threading.Event()
    errors: list[BaseException] = []

    def attempt() -> None:  # a FIFO must not hang the caller: run it in a thread and wait a bounded time
        try:
            approved_upload(ref_for(target), root)
        except BaseException as exc:
            errors.append(exc)
        done.set()

    threading.Thread(target=attempt, daemon=True).start()
    assert done.wait(10), f"{name}: approved_upload blocked"
    assert errors and isinstance(errors[0], InputError), errors
    assert needle in str(errors[0])


def _link(link: Path, target: Path) -> Path:
    link.symlink_to(target)
    return link


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def test_a_file_changed_since_intake_is_refused(root):
    path = root / "sub" / "sample.bin"
    ref = ref_for(path)
    path.write_bytes(BODY[:-1] + b"X")  # same size, other bytes
    with pytest.raises(InputError, match="no longer hashes"):
        approved_upload(ref, root)
    path.write_bytes(BODY + b"more")
    with pytest.raises(InputError, match="not the 4008 intake recorded"):
        approved_upload(ref, root)


def test_bytes_changed_after_the_check_never_complete_an_upload(root):
    big = os.urandom(3 * 1024 * 1024 + 17)
    path = root / "sub" / "big.bin"
    path.write_bytes(big)
    approved = approved_upload(ref_for(path, big), root)
    assert isinstance(approved, ApprovedFile)
    with path.open("r+b") as handle:  # changed in place: the open descriptor reads the new bytes
        handle.seek(2 * 1024 * 1024 + 5)
        handle.write(b"tampered")
    sent: list[bytes] = []

    async def run() -> None:
        async for chunk in approved.chunks():
            sent.append(chunk)

    with pytest.raises(InputError, match="changed after it was checked"):
        asyncio.run(run())
    approved.close()
    assert sum(map(len, sent)) < len(big)  # the last piece was held back: the upload never completes


def test_inline_content_must_hash_to_the_recorded_sha256(root):
    encoded = base64.b64encode(b"inline").decode()
    good = FileRef(hashlib.sha256(b"inline").hexdigest(), 6, "x", content_b64=encoded)
    assert approved_upload(good, None) == b"inline"
    with pytest.raises(InputError, match="does not hash"):
        approved_upload(FileRef("0" * 64, 6, "x", content_b64=encoded), None)


def test_paths_are_never_uploaded_without_a_root_or_without_a_path(root):
    with pytest.raises(InputError, match="no VTSTREAM_FILE_ROOT"):
        approved_upload(ref_for(root / "sub" / "sample.bin"), None)
    with pytest.raises(InputError, match="no file content and no path"):
        approved_upload(FileRef("a" * 64, 1, "x"), root)


def test_intake_refuses_a_fifo_without_blocking(root):
    _fifo(root / "queue")
    with pytest.raises(InputError, match="a FIFO"):
        prepare({"name": "q", "uri": (root / "queue").as_uri()}, root)
