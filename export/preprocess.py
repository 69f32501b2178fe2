"""Keep the blocks of a runtime template that a set of flags selects.

A template is plain Python whose optional parts sit between comment lines

    #if rans_rc            (or `#if a|b`: kept when any of the flags is set)
    ...
    #else                  (optional)
    ...
    #endif

Since the markers are comments, the unprocessed template is valid Python with every block in it,
which is how the tests run the complete runtime. Blocks may nest.
"""
from __future__ import annotations

from golfpack.errors import GolfpackError


def flags_used(source: str) -> set[str]:
    """Every flag a template's `#if` lines name."""
    out = set()
    for line in source.splitlines():
        s = line.strip()
        if s.startswith("#if "):
            out.update(n.strip() for n in s[4:].split("|"))
    return out


def select(source: str, flags, where: str = "template") -> str:
    """The template with unselected blocks and every marker line removed."""
    flags = set(flags)
    out: list[str] = []
    stack: list[bool] = []
    for no, line in enumerate(source.splitlines(keepends=True), 1):
        s = line.strip()
        if s.startswith("#if "):
            stack.append(any(n.strip() in flags for n in s[4:].split("|")))
        elif s == "#else":
            if not stack:
                raise GolfpackError(f"{where}:{no}: #else without #if")
            stack[-1] = not stack[-1]
        elif s == "#endif":
            if not stack:
                raise GolfpackError(f"{where}:{no}: #endif without #if")
            stack.pop()
        elif all(stack):
            out.append(line)
    if stack:
        raise GolfpackError(f"{where}: {len(stack)} #if block(s) left open")
    return "".join(out)
