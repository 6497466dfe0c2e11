"""What the VirusTotal emulator received, for tests that prove what left vtstream and what did not."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import unquote_plus


def received(emulator: Any) -> str:
    """Every request path, query and body the emulator got, percent-decoded, with each path
    segment that is base64url (v3 URL ids) decoded too: a secret cannot hide in an encoding."""
    seen = []
    for entry in emulator.control("/_emulator/requests"):
        seen += [unquote_plus(entry["target"]), unquote_plus(entry["body"])]
        for segment in entry["target"].split("?")[0].split("/"):
            try:
                seen.append(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode("utf-8", "replace"))
            except (binascii.Error, ValueError):
                continue
    return "\n".join(seen)
