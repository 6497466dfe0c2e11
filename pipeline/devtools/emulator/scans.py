"""Submitted URL and file analyses: queued until ``scan_seconds`` after submission, then completed.

One :class:`ScanBook` per emulator. It remembers every analysis by its v3 id and
its v2 ``scan_id``, which targets (canonical URL or file sha256) were submitted,
and the real hashes, size and name of uploaded files, so that once an analysis
completes the item is known to object lookups even if the dataset's not-found
rule says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What an upload told us about a file."""

    md5: str
    sha1: str
    sha256: str
    size: int
    name: str | None = None


@dataclass(slots=True)
class Scan:
    analysis_id: str          # v3 analysis id
    scan_id: str              # v2 scan_id: "<sha256>-<epoch>"
    kind: str                 # "url" | "file"
    target: str               # canonical URL or file sha256
    submitted: int            # epoch seconds (wall clock)
    ready_at: float           # when the analysis completes (wall clock)
    file: FileInfo | None = None


@dataclass
class ScanBook:
    """Analyses by id; completion is computed lazily from the clock."""

    by_id: dict[str, Scan] = field(default_factory=dict)
    by_target: dict[tuple[str, str], list[Scan]] = field(default_factory=dict)
    files: dict[str, FileInfo] = field(default_factory=dict)   # md5 / sha1 / sha256 -> info

    def add(self, scan: Scan) -> Scan:
        self.by_id[scan.analysis_id] = scan
        self.by_id[scan.scan_id] = scan
        self.by_target.setdefault((scan.kind, scan.target), []).append(scan)
        if scan.file is not None:
            for h in (scan.file.md5, scan.file.sha1, scan.file.sha256):
                self.files[h] = scan.file
        return scan

    def get(self, any_id: str) -> Scan | None:
        return self.by_id.get(any_id)

    @staticmethod
    def done(scan: Scan, now: float, never_complete: bool) -> bool:
        return not never_complete and now >= scan.ready_at

    def completed_at(self, kind: str, target: str, now: float, never_complete: bool) -> int | None:
        """Submission date of the newest completed analysis of ``target``, if any."""
        best: int | None = None
        for scan in self.by_target.get((kind, target), ()):
            if self.done(scan, now, never_complete) and (best is None or scan.submitted > best):
                best = scan.submitted
        return best

    def pending(self, kind: str, target: str, now: float, never_complete: bool) -> Scan | None:
        """The newest analysis of ``target`` still queued, if any."""
        queued = [s for s in self.by_target.get((kind, target), ()) if not self.done(s, now, never_complete)]
        return max(queued, key=lambda s: s.submitted) if queued else None

    def file_info(self, any_hash: str) -> FileInfo | None:
        return self.files.get(any_hash)

    def clear(self) -> None:
        self.by_id.clear()
        self.by_target.clear()
        self.files.clear()
