"""Name templates: ``'text with {expression} or {expression !converter} placeholders'``.

Split apart here, compiled by the loader, so the brace and quote rules live in one place.
"""

from __future__ import annotations

import re

from pipeline.errors import ConfigError
from pipeline.mapping.functions import CONVERTERS

_TEMPLATE_CONV = re.compile(r"^(.*?)\s*!\s*([a-z]+)\s*$", re.S)


class TemplateError(ConfigError):
    """A template that cannot be split; the message says why (the loader names the file and rule)."""


def split_template(text: str) -> list[str | tuple[str, str | None]]:
    """Literal pieces and ``(expression, converter name or None)`` placeholders, in order.

    >>> split_template("Resolved {hostname} on {date !date}")
    ['Resolved ', ('hostname', None), ' on ', ('date', 'date')]
    >>> split_template("{{literal}}")
    ['{literal}']
    """
    parts: list[str | tuple[str, str | None]] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "{}" and i + 1 < n and text[i + 1] == ch:
            literal.append(ch)
            i += 2
            continue
        if ch == "}":
            raise TemplateError(f"template {text!r}: unmatched '}}' (write '}}}}' for a brace)")
        if ch != "{":
            literal.append(ch)
            i += 1
            continue
        end = closing_brace(text, i)
        if end < 0:
            raise TemplateError(f"template {text!r}: unclosed '{{'")
        inner = text[i + 1:end].strip()
        if not inner:
            raise TemplateError(f"template {text!r}: empty placeholder")
        conv_name = None
        m = _TEMPLATE_CONV.match(inner)
        if m and m.group(2) in CONVERTERS:
            inner, conv_name = m.group(1), m.group(2)
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append((inner, conv_name))
        i = end + 1
    if literal:
        parts.append("".join(literal))
    return parts


def closing_brace(text: str, start: int) -> int:
    """Index of the brace closing ``text[start]``, skipping JMESPath quotes (and the characters
    escaped inside them) and nested braces.

    >>> closing_brace(r"{join(', ', ['it\\'s}', x])} and more", 0)
    26
    """
    depth, quote, i = 0, "", start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2  # the escaped character cannot close the quote
                continue
            if ch == quote:
                quote = ""
        elif ch in "'`\"":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1
