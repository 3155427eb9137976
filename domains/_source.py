"""A policy's source, parsed once: every layer that reads a candidate's syntax tree shares this one.

One candidate's source is read by the static scan, the contract check, the look-back declaration, the
contamination scan, the tunables and the proposers; parsing it once per reader cost about six parses per
candidate (a 16 MB file: minutes and gigabytes). Here it is parsed once, under a size ceiling, and the tree is
shared: callers must treat it as read-only. Every layer may import domains, so this module lives here.
"""
from __future__ import annotations

import ast
import functools
import threading

DEFAULT_MAX_BYTES = 1_000_000  # the static guard's default limit (static.max_policy_bytes)
MAX_BYTES_CEILING = 8_000_000  # no configuration may raise the limit past this, and nothing larger is parsed


class SourceTooLarge(SyntaxError):
    """A source over the ceiling: refused before parsing (a SyntaxError, so every reader fails closed)."""


def size_of(source: str) -> int:
    """The source's size in UTF-8 bytes, as it is stored in policy.py."""
    return len(source.encode("utf-8", "surrogatepass"))


def size_problem(source: str, limit: int) -> str | None:
    """One line saying the source is over `limit` bytes, or None. Cheap: no parse, one encode at most."""
    if len(source) <= limit // 4:  # a character is at most 4 UTF-8 bytes: surely under, no encode needed
        return None
    size = size_of(source)
    if size <= limit:
        return None
    return (f"policy.py is {size:,} bytes, over the limit of {limit:,} (static.max_policy_bytes); a policy is "
            "code, not data: move tables into fit() or shrink the file")


_PARSING = threading.Lock()


@functools.lru_cache(maxsize=4)
def parse(source: str) -> ast.Module:
    """The syntax tree of `source`, parsed once per distinct source (the last few are kept) and shared: do not
    modify it. SourceTooLarge over MAX_BYTES_CEILING; SyntaxError as ast.parse raises it.

    One thread at a time: CPython 3.11 keeps the AST constructor's recursion depth in interpreter-wide state, so
    two threads parsing at once (the lanes of a parallel round) can fail with "SystemError: AST constructor
    recursion depth mismatch" (python/cpython#106905)."""
    problem = size_problem(source, MAX_BYTES_CEILING)
    if problem:
        raise SourceTooLarge(problem)
    with _PARSING:
        return ast.parse(source)
