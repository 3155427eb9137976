"""Who approved a recorded change: a person's name as the ledger, git and the registry keep it.

A name the eye cannot read (a zero-width space, a soft hyphen, blanks) names nobody, so a change recorded under it
has no accountable approver. Every place that records an approver (`ratchet config set`, `promote`, `rollback`)
reads it through `approver`, which trims invisible characters at the ends and refuses a name with no visible one.
"""
from __future__ import annotations

import unicodedata

from optimizer.base.errors import RatchetError

MAX_CHARS = 200  # a name, not a document
# Letters, marks, numbers, punctuation, symbols: what shows on a page. Not: separators (Z*), controls (Cc),
# formats such as the zero-width space (Cf), unassigned, private-use or surrogate code points (Cn, Co, Cs).
_VISIBLE = ("L", "M", "N", "P", "S")
_INVISIBLE_EDGE = ("Z", "Cc", "Cf")
# Bidirectional overrides and isolates make a name display as something other than what is recorded.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _visible(char: str) -> bool:
    return unicodedata.category(char).startswith(_VISIBLE)


def _edge(char: str) -> bool:
    category = unicodedata.category(char)
    return char.isspace() or category.startswith(_INVISIBLE_EDGE)


def visible_text(text: str | None, option: str, what: str, example: str = "") -> str:
    """`text` trimmed of invisible characters at both ends; RatchetError naming `option` when nothing visible is
    left, when it holds a control character (a line break would forge a second line in a log or commit message) or a
    bidirectional override, or when it is longer than MAX_CHARS. `what`: what the text is, e.g. "the reason"."""
    raw = text or ""
    start, end = 0, len(raw)
    while start < end and _edge(raw[start]):
        start += 1
    while end > start and _edge(raw[end - 1]):
        end -= 1
    value = unicodedata.normalize("NFC", raw[start:end])
    if not any(_visible(c) for c in value):
        shown = f" (got {raw!r})" if raw else ""
        raise RatchetError(f"{option}: give {what} with at least one visible character{shown}"
                           f"{f', e.g. {option} {example}' if example else ''}.")
    if any(unicodedata.category(c) == "Cc" or c in _BIDI for c in value):
        raise RatchetError(f"{option}: {what} must be one line without control or direction-override characters "
                           f"(got {value!r}).")
    if len(value) > MAX_CHARS:
        raise RatchetError(f"{option}: {what} is {len(value)} characters; at most {MAX_CHARS}.")
    return value


def approver(name: str | None, what: str) -> str:
    """The approver's name as it is recorded (`--approved-by`), or RatchetError naming the option; `what`: the
    change approved, e.g. "promoting exp-0003"."""
    return visible_text(name, "--approved-by", f"the name of who approves {what}", "'A. Reviewer'")


def reason(text: str | None, *, required: bool) -> str:
    """The `--reason` as recorded: "" when optional and left out (blank), else `visible_text`'s checks."""
    if not required and not (text or "").strip():
        return ""
    return visible_text(text, "--reason", "why (the reason recorded with the change)", "'review team doubled'")
