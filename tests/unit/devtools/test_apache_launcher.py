"""The KRaft cluster id the rig formats storage with."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator

from pipeline.devtools.apache.launcher import new_cluster_id


def _bytes_from(draws: Iterator[bytes]) -> Callable[[int], bytes]:
    """A stand-in for ``secrets.token_bytes`` that hands out the given draws in turn."""
    return lambda n: next(draws)


def test_a_cluster_id_never_starts_with_a_dash_which_kafka_storage_would_read_as_an_option() -> None:
    leading_dash = b"\xf8" + bytes(15)  # base64url of 0xf8... starts with "-"
    assert base64.urlsafe_b64encode(leading_dash).decode().startswith("-")
    cluster_id = new_cluster_id(_bytes_from(iter([leading_dash, leading_dash, bytes(16)])))
    assert cluster_id == "AAAAAAAAAAAAAAAAAAAAAA"


def test_a_cluster_id_is_22_url_safe_characters() -> None:
    for _ in range(500):
        cluster_id = new_cluster_id()
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert set(cluster_id) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
