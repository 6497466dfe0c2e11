"""The settings tests run vtstream processes with, in one place.

Every worker and replay a test starts gets the same VirusTotal budget, one no test
reaches (:data:`UNTHROTTLED`), so the emulator, not the governor, decides what is
slow; workers get a short Kafka session so a stopped one's partitions move within
seconds. Tests whose parked scans or failures must come back while they wait take
:func:`fast_retries`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

from pipeline.devtools.rig import worker_env

#: A rate and a daily quota far above what any test sends.
UNTHROTTLED = {"VTSTREAM_VT_RATE_PER_MINUTE": "6000", "VTSTREAM_VT_DAILY_QUOTA": "1000000"}
#: A stopped worker's partitions go to another one within seconds.
SHORT_SESSION = {"VTSTREAM_KAFKA_SESSION_TIMEOUT": "3"}


class RetryOverrides(TypedDict):
    """Retry settings in the ``worker_factory`` / ``replay`` spelling (``VTSTREAM_`` left off)."""

    retry_tiers: str
    retry_slice: str


def fast_retries(tiers: str = "1s,2s,4s", slice_s: str = "0.5s") -> RetryOverrides:
    """Retry tiers of seconds, checked every ``slice_s``: a parked scan or a retried failure is back
    within a test's wait. Pass as ``worker_factory(kafka, url, **fast_retries())``."""
    return {"retry_tiers": tiers, "retry_slice": slice_s}


def worker_env_for_tests(bootstrap: str, vt_url: str, data_dir: Path, **variables: str) -> dict[str, str]:
    """A worker's environment for a test (the rig's, :data:`UNTHROTTLED`, :data:`SHORT_SESSION`);
    ``variables`` (full ``VTSTREAM_...`` names) win."""
    return worker_env(bootstrap, vt_url, data_dir, **{**UNTHROTTLED, **SHORT_SESSION, **variables})
