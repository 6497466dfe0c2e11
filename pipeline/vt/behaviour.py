"""The v3 sandbox behaviour summary, and where it goes in the file body the mappings read.

``GET /api/v3/files/{id}/behaviour_summary`` answers ``{"data": {...}}``: the merged
reports of every sandbox that ran the file. It is not part of the file object, so
the client (and ``vtstream map --behaviour``) puts its ``data`` into the file body
at ``data.behaviour_summary``, the way fetched relationships go to
``data.relationships``; ``mappings/v3/submit_file.yaml`` reads it from there.

A file no sandbox ran has no summary: VirusTotal answers 404 or an empty ``data``.
That is a note on the summary card (``NO_SANDBOX_REPORT``), not an error.

>>> body = {"data": {"type": "file", "id": "abc"}}
>>> merge_behaviour_summary(body, {"data": {"mutexes_opened": ["ShimCacheMutex"]}})
True
>>> body["data"]["behaviour_summary"]
{'mutexes_opened': ['ShimCacheMutex']}
>>> merge_behaviour_summary(body, {"data": {"tags": [], "processes_tree": []}})
False
"""

from __future__ import annotations

from typing import Any

#: The key under the file body's ``data`` that holds the summary's ``data``.
BEHAVIOUR_KEY = "behaviour_summary"
#: The note on the summary card when the file has no sandbox report.
NO_SANDBOX_REPORT = "behaviour_summary: no sandbox report"


def sandbox_report(summary_body: Any) -> dict[str, Any] | None:
    """The summary's ``data`` when it says anything (a non-empty value), else None."""
    data = summary_body.get("data") if isinstance(summary_body, dict) else None
    if not isinstance(data, dict) or not any(value not in (None, "", [], {}) for value in data.values()):
        return None
    return data


def merge_behaviour_summary(file_body: Any, summary_body: Any) -> bool:
    """Put the summary into ``file_body`` (in place); False when there is no sandbox report to put."""
    report = sandbox_report(summary_body)
    target = file_body.get("data") if isinstance(file_body, dict) else None
    if report is None or not isinstance(target, dict):
        return False
    target[BEHAVIOUR_KEY] = report
    return True


__all__ = ["BEHAVIOUR_KEY", "NO_SANDBOX_REPORT", "merge_behaviour_summary", "sandbox_report"]
