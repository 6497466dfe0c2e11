"""File events (submit_file): validate where the bytes are, hash them, and hand over only those bytes.

A file event carries ``file: {name, content_b64}`` (small files, inline in the
record) or ``file: {name, uri}`` with a ``file://`` URI that must resolve,
symlinks followed, inside ``VTSTREAM_FILE_ROOT``. Anything else (``..``
tricks, symlinks out, devices, FIFOs, missing files) is refused with a reason. The
sha256 of the content becomes the indicator, so the file is looked up by hash
first and uploaded only when VirusTotal does not know it and policy allows.

The gateway does not trust the path a request names, even one intake recorded:
anyone who can produce to ``vt.requests`` can name ``/proc/self/environ``, and a
file can be swapped between intake and the upload. :func:`approved_upload` opens
the path again beneath the root one component at a time, each with ``O_NOFOLLOW``
(a symlink anywhere is refused, and nothing can be swapped in between), the last
with ``O_NONBLOCK`` too (a FIFO cannot hang the worker), checks with ``fstat`` that
it is a regular file of the recorded size, and hashes it: only a file whose SHA-256
is the one intake recorded is uploaded, and the upload streams from that same open
file, hashing again, so bytes changed in place after the check never complete an
upload (:meth:`ApprovedFile.chunks`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import unquote, urlparse

from pipeline.contracts.indicator import FileRef
from pipeline.errors import InputError

#: VirusTotal refuses larger files, even through an upload URL.
MAX_FILE_BYTES = 650 * 1024 * 1024
_NAME_LIMIT = 255
CHUNK_BYTES = 1024 * 1024
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def prepare(spec: Any, file_root: Path | None) -> FileRef:
    """Validate a record's ``file`` object and hash its content (reads the file for a URI).

    >>> prepare({"name": "a.txt", "content_b64": "aGk="}, None).sha256[:12]
    '8f434346648f'
    """
    if not isinstance(spec, dict):
        raise InputError("'file' must be an object with 'name' and 'content_b64' or 'uri'")
    name = spec.get("name", "")
    if not isinstance(name, str):
        raise InputError("'file.name' must be a string")
    name = name.strip()[:_NAME_LIMIT]
    has_content, has_uri = "content_b64" in spec, "uri" in spec
    if has_content == has_uri:
        raise InputError("'file' needs exactly one of 'content_b64' or 'uri'")
    if has_content:
        return _inline(name, spec["content_b64"])
    return _on_disk(name, spec["uri"], file_root)


def _inline(name: str, encoded: Any) -> FileRef:
    if not isinstance(encoded, str):
        raise InputError("'file.content_b64' must be a base64 string")
    try:
        content = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"'file.content_b64' is not valid base64 ({exc})") from None
    if not content:
        raise InputError("'file.content_b64' decodes to an empty file")
    return FileRef(hashlib.sha256(content).hexdigest(), len(content), name or "sample", content_b64=encoded)


def _on_disk(name: str, uri: Any, file_root: Path | None) -> FileRef:
    if not isinstance(uri, str):
        raise InputError("'file.uri' must be a file:// URI string")
    parsed = urlparse(uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        raise InputError(f"'file.uri' must be a local file:// URI, got {uri[:200]!r}")
    if file_root is None:
        raise InputError("file URIs are refused: this worker has no VTSTREAM_FILE_ROOT")
    root = file_root.resolve()
    try:
        path = Path(unquote(parsed.path)).resolve(strict=True)
    except (OSError, RuntimeError):
        raise InputError(f"file {unquote(parsed.path)[:200]!r} does not exist or cannot be read") from None
    if not path.is_relative_to(root):
        raise InputError(f"file {unquote(parsed.path)[:200]!r} resolves outside VTSTREAM_FILE_ROOT ({root}); refused")
    fd = open_beneath(root, path)
    try:
        size = _regular_size(fd, path)
        if size == 0:
            raise InputError(f"{path} is empty")
        digest = _sha256(fd)
    finally:
        os.close(fd)
    return FileRef(digest, size, name or path.name, path=str(path))


def open_beneath(root: Path, path: Path) -> int:
    """A read-only descriptor of ``path``, opened beneath ``root`` (both resolved) one component at a
    time without following any symlink, the file itself non-blocking. InputError says why not."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise InputError(f"{str(path)[:200]!r} is not beneath VTSTREAM_FILE_ROOT ({root}); refused") from None
    if not parts or any(part in ("", ".", "..") for part in parts):
        raise InputError(f"{str(path)[:200]!r} is not a file path beneath VTSTREAM_FILE_ROOT ({root}); refused")
    try:
        directory = os.open(root, _DIRECTORY)
    except OSError as exc:
        raise InputError(f"VTSTREAM_FILE_ROOT ({root}) cannot be opened: {exc.strerror}") from None
    try:
        for part in parts[:-1]:
            inner = os.open(part, _DIRECTORY, dir_fd=directory)
            os.close(directory)
            directory = inner
        return os.open(parts[-1], _FILE, dir_fd=directory)
    except OSError as exc:
        why = "a symbolic link is on the way" if exc.errno in (errno.ELOOP, errno.ENOTDIR) else exc.strerror
        raise InputError(f"{str(path)[:200]!r} cannot be opened beneath VTSTREAM_FILE_ROOT: {why}; refused") from None
    finally:
        os.close(directory)


def _regular_size(fd: int, path: Path) -> int:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path} is not a regular file (fstat says {_kind(info.st_mode)}); refused")
    if info.st_size > MAX_FILE_BYTES:
        raise InputError(f"{path} is {info.st_size / 2**20:.0f} MB; VirusTotal accepts files up to 650 MB")
    return info.st_size


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "not a regular file"


def _sha256(fd: int) -> str:
    digest = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, CHUNK_BYTES):
        digest.update(chunk)
    return digest.hexdigest()


def content(ref: FileRef) -> bytes | None:
    """The inline bytes of a request's file reference, if it has them."""
    return base64.b64decode(ref.content_b64) if ref.content_b64 is not None else None


@dataclass
class ApprovedFile:
    """A file the gateway may upload: an open descriptor whose bytes hashed to the recorded SHA-256."""

    fd: int
    size: int
    sha256: str

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file from its start, in 1 MB pieces read off the event loop, hashed again as they go;
        the last piece is held back until the hash is known, so bytes changed after the check end the
        upload short (the request fails) instead of completing it."""
        digest = hashlib.sha256()
        await asyncio.to_thread(os.lseek, self.fd, 0, os.SEEK_SET)
        held = b""
        while chunk := await asyncio.to_thread(os.read, self.fd, CHUNK_BYTES):
            digest.update(chunk)
            if held:
                yield held
            held = chunk
        if digest.hexdigest() != self.sha256:
            raise InputError("the file changed after it was checked; the upload is abandoned")
        if held:
            yield held

    def close(self) -> None:
        os.close(self.fd)


def approved_upload(ref: FileRef, file_root: Path | None) -> ApprovedFile | bytes:
    """The bytes the gateway may upload for ``ref``: inline content, or a file still beneath the root,
    regular, of the recorded size and SHA-256. InputError says why nothing may be uploaded.
    Hashes up to 650 MB: call it off the event loop."""
    if ref.content_b64 is not None:
        data = content(ref) or b""
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            raise InputError("the request's inline content does not hash to the SHA-256 intake recorded")
        return data
    if ref.path is None:
        raise InputError("the request names no file content and no path")
    if file_root is None:
        raise InputError("this worker has no VTSTREAM_FILE_ROOT; file paths are never uploaded")
    path = Path(ref.path)
    if not path.is_absolute():
        raise InputError(f"{ref.path[:200]!r} is not an absolute path; refused")
    fd = open_beneath(file_root.resolve(), path)
    try:
        size = _regular_size(fd, path)
        if size != ref.size:
            raise InputError(f"{path} is {size} bytes, not the {ref.size} intake recorded; refused")
        if _sha256(fd) != ref.sha256:
            raise InputError(f"{path} no longer hashes to the SHA-256 intake recorded; refused")
    except BaseException:
        os.close(fd)
        raise
    return ApprovedFile(fd, size, ref.sha256)
