"""Security labels: one reading of them, wherever they come from.

A sighting's sharing restrictions arrive in many spellings: ``labels``,
``tags`` or a ``tlp`` field; ``TLP:RED``, ``TLP-RED``, ``tlp_red``, ``TLP RED``;
several in one string (``"TLP:GREEN,TLP:RED"``); fullwidth letters pasted from
a report (``ＴＬＰ:ＲＥＤ``); a zero-width space a rich-text editor slipped in. The
policy gate, the upload check and the STIX marking all read them through
:func:`read_labels`, so a spelling that one of them understands, all do:

1. each string is NFKC-normalized (fullwidth and compatibility forms become
   their plain letters) and stripped of format characters (Unicode category
   Cf: zero-width spaces and joiners, bidirectional controls, soft hyphens);
2. it is split on ``,`` and ``;`` into labels;
3. a label is compared case-folded, without whitespace or enclosing quotes
   and brackets;
4. a TLP or PAP marking is recognised whatever separates the scheme from the
   level (``:``, ``-``, ``_``, ``.``, ``=``, ``/``, spaces or nothing) and becomes
   ``tlp:<level>``: TLP 2.0's CLEAR, GREEN, AMBER, AMBER+STRICT and RED (TLP 1.0's
   WHITE is CLEAR), PAP's CLEAR (WHITE), GREEN, AMBER and RED;
5. a label that names TLP or PAP but is none of those (``TLP:ROT``, ``TLP``,
   ``PAP:BLACK``, ``classified TLP:RED``) is *unknown*: the gate cannot tell what
   it allows, so it fails closed.

Values of a ``tlp`` field name a level (``"red"``, ``"amber+strict"``) and are
read as ``TLP:<value>``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable

from pipeline.contracts.origin import Origin

#: The levels of each marking scheme, least restrictive first.
MARKING_LEVELS: dict[str, tuple[str, ...]] = {
    "tlp": ("clear", "green", "amber", "amber+strict", "red"),
    "pap": ("clear", "green", "amber", "red"),
}
_LEVEL_ALIASES = {"white": "clear", "amberstrict": "amber+strict"}
_SPLIT = re.compile(r"[,;]")
_SEPARATORS = r"\s:_\-./=+"
_MARKING = re.compile(rf"(tlp|pap)([{_SEPARATORS}]*)(.*)", re.S)
_NOT_LEVEL = re.compile(rf"[{_SEPARATORS}]")
#: "tlp" or "pap" as a word of its own anywhere in a label.
_MENTION = re.compile(r"(?<![a-z0-9])(?:tlp|pap)(?![a-z])")
_ENCLOSING = "\"'`[](){}<>"


@dataclass(frozen=True, slots=True)
class Label:
    """One label: as the event wrote it (``shown``), as it is compared (``key``), and,
    for a TLP or PAP marking, its scheme and rank (``scheme``, ``rank``; rank -1: unknown)."""

    shown: str
    key: str
    scheme: str | None = None
    rank: int = 0

    @property
    def unknown(self) -> bool:
        """A label that names TLP or PAP but is no marking vtstream knows."""
        return self.scheme is not None and self.rank < 0

    def at_least(self, other: "Label") -> bool:
        """Whether this marking is ``other``'s level or stricter (same scheme, both known)."""
        return (self.scheme is not None and self.scheme == other.scheme and not self.unknown
                and not other.unknown and self.rank >= other.rank)


def read_labels(labels: Iterable[object] | str | None, tags: Iterable[object] | str | None = (),
                tlp: Iterable[object] | str | None = ()) -> tuple[Label, ...]:
    """Every label of a sighting, from its ``labels``, ``tags`` and ``tlp`` fields.

    Non-string entries are skipped; a bare string is one field value, not its characters.

    >>> [label.key for label in read_labels(["TLP:GREEN,TLP-RED"], ["ＰＡＰ:ＲＥＤ"], "amber")]
    ['tlp:green', 'tlp:red', 'pap:red', 'tlp:amber']
    """
    found = [label for text in strings(labels) + strings(tags) for label in _read(text, tlp_field=False)]
    found += [label for text in strings(tlp) for label in _read(text, tlp_field=True)]
    return tuple(found)


def origin_labels(origin: Origin) -> tuple[Label, ...]:
    """Every label a sighting carries, wherever the SIEM put it (its ``labels``, ``tags`` and ``tlp``)."""
    return read_labels(origin.labels, origin.tags, origin.tlp)


#: Labels as a caller may hold them: :class:`Label` values already read, strings, or one string.
Labels = Iterable[object] | str | None


def as_labels(items: Labels) -> tuple[Label, ...]:
    """Labels already read pass through; strings are read (:func:`read_labels`).

    >>> [label.key for label in as_labels(["TLP:RED", *read_labels("pap:red"), 7])]
    ['tlp:red', 'pap:red']
    """
    if items is None or isinstance(items, str):
        return read_labels(items)
    out: list[Label] = []
    for item in items:
        if isinstance(item, Label):
            out.append(item)
        elif isinstance(item, str):
            out.extend(read_labels(item))
    return tuple(out)


def visible(text: str, limit: int = 80) -> str:
    """``text`` for a person: invisible and control characters as ``\\uXXXX``, cut at ``limit``.

    >>> visible("TLP:\\u200bRED")
    'TLP:\\\\u200bRED'
    """
    shown = "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Cf", "Cc", "Zl", "Zp") else c
                     for c in text[:limit])
    return shown + ("..." if len(text) > limit else "")


def strings(items: Iterable[object] | str | None) -> list[str]:
    """Defensive: a bare string is one entry (not its characters); non-strings are skipped."""
    if items is None:
        return []
    if isinstance(items, str):
        return [items]
    return [item for item in items if isinstance(item, str)]


def _read(text: str, *, tlp_field: bool) -> list[Label]:
    plain = "".join(c for c in unicodedata.normalize("NFKC", text) if unicodedata.category(c) != "Cf")
    altered = plain != text
    out = []
    for part in _SPLIT.split(plain):
        shown = part.strip()
        spaced = " ".join(unicodedata.normalize("NFKC", shown.casefold()).split()).strip(_ENCLOSING).strip()
        if not spaced:
            continue
        if tlp_field and not spaced.startswith(("tlp", "pap")):
            spaced, shown = f"tlp:{spaced}", f"TLP:{shown}"
        if altered:
            shown = f"{shown} (written {visible(text)!r})"
        out.append(_label(shown, spaced))
    return out


def _label(shown: str, spaced: str) -> Label:
    """The label of one folded part: a marking, known or not, read with its spaces (``pa p`` is no
    PAP) or without them (``T L P:RED`` is TLP:RED); else an ordinary label compared without spaces."""
    key = spaced.replace(" ", "")
    marking = _marking(spaced)
    if marking is None:
        squeezed = _marking(key)
        marking = squeezed if squeezed is not None and squeezed[1] >= 0 else None
    if marking is not None:
        scheme, rank = marking
        return Label(shown, f"{scheme}:{MARKING_LEVELS[scheme][rank]}" if rank >= 0 else key, scheme, rank)
    if _MENTION.search(spaced):
        return Label(shown, key, "tlp" if "tlp" in key else "pap", -1)
    return Label(shown, key)


def _marking(text: str) -> tuple[str, int] | None:
    """(scheme, rank) of a TLP or PAP marking (rank -1: one vtstream does not know), or None."""
    match = _MARKING.fullmatch(text)
    if match is None:
        return None
    scheme, separator, rest = match[1], match[2], match[3]
    levels = MARKING_LEVELS[scheme]
    level = _NOT_LEVEL.sub("", rest)
    level = _LEVEL_ALIASES.get(level, level)
    if level in levels and not rest.rstrip().endswith("+"):  # "amber+" may be AMBER+STRICT cut short
        return scheme, levels.index(level)
    return (scheme, -1) if separator or not rest or level in levels else None
