"""Plain HTTP GETs against a worker's web port, as a monitoring system would make them."""

from __future__ import annotations

import urllib.error
import urllib.request


def get(url: str) -> tuple[int, bytes]:
    """(status, body) of a GET; an HTTP error status is an answer, not an exception."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
