"""File events (submit_file): validate where the bytes are, and hash them.

A file event carries ``file: {name, content_b64}`` (small files, inline in the
record) or ``file: {name, uri}`` with a ``file://`` URI that must resolve,
symlinks followed, inside ``VTSTREAM_FILE_ROOT``. Anything else (``..``
tricks, symlinks out, devices, missing files) is refused with a reason. The
sha256 of the content becomes the indicator, so the file is looked up by hash
first and uploaded only when VirusTotal does not know it and policy allows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from pipeline.contracts.indicator import FileRef
from pipeline.errors import InputError

#: VirusTotal refuses larger files, even through an upload URL.
MAX_FILE_BYTES = 650 * 1024 * 1024
_NAME_LIMIT = 255


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
    if not path.is_file():
        raise InputError(f"{path} is not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path} is empty")
    if size > MAX_FILE_BYTES:
        raise InputError(f"{path} is {size / 2**20:.0f} MB; VirusTotal accepts files up to 650 MB")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return FileRef(digest.hexdigest(), size, name or path.name, path=str(path))


def content(ref: FileRef) -> bytes | None:
    """The inline bytes of a request's file reference, if it has them."""
    return base64.b64decode(ref.content_b64) if ref.content_b64 is not None else None
