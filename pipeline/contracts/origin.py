"""The origin of a piece of work: the sighting that caused it.

``origin`` (``id``, ``source``, ``ref``, ``labels``, ...) is passed through
unchanged into the events, so it stays a mapping; :func:`origin_ref`,
:func:`origin_labels`, :func:`origin_replay` and :func:`origin_source` read it.
"""

from __future__ import annotations

from typing import Any, Mapping

Origin = dict[str, Any]


def origin_ref(origin: Mapping[str, Any]) -> str | None:
    """topic/partition/offset of the sighting: its identity across replays."""
    ref = origin.get("ref")
    return ref if isinstance(ref, str) else None


def origin_labels(origin: Mapping[str, Any]) -> list[str]:
    """The security labels the sighting's event carried."""
    labels = origin.get("labels")
    return [str(label) for label in labels] if isinstance(labels, list) else []


def origin_replay(origin: Mapping[str, Any]) -> str | None:
    """The ``vtstream replay`` run that fed the sighting; None for a live one."""
    run = origin.get("replay")
    return run if isinstance(run, str) and run else None


def origin_source(origin: Mapping[str, Any]) -> str | None:
    """The system the sighting came from (per-source quotas count by it)."""
    source = origin.get("source")
    return source if isinstance(source, str) else None
