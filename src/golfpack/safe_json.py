"""Bounded JSON: the one way golfpack reads JSON that a user (or an attacker) wrote.

An artifact's checksums prove only that the bytes are the ones the writer
meant; a hostile writer computes valid CRCs. So every JSON golfpack reads (the
artifact manifest, safetensors headers, sharded indexes, config.json files,
GPTConfig JSON) goes through `loads_bounded`, which turns every problem into a
FormatError naming the input and, where it can, the JSON path of the value
(`manifest: tensors[3].meta.x: ...`). The limits, also stated in FORMAT.md §2:

- nesting: at most MAX_DEPTH (64) arrays/objects open at once, counted from
  the document's root. Python's json scanner recurses once per level, so a deep
  document is refused by a linear scan *before* json.loads sees it;
- integers: at most MAX_INT_DIGITS (20) digits in the literal, checked before
  the literal is converted (CPython refuses to convert more than 4300 digits
  with a ValueError, and a long literal costs quadratic time), and the value
  must fit a signed 64-bit integer [-2^63, 2^63 - 1];
- floats: finite. NaN, Infinity and -Infinity (which Python's json accepts)
  and literals that overflow to infinity (1e400) are refused;
- strings and keys: valid Unicode, i.e. no lone surrogates (`"\\ud800"` is
  legal JSON text but cannot be written back as UTF-8);
- duplicate keys are refused in every object;
- anything else the json layer raises becomes a FormatError too.

`check_value` applies the same rules to an object built in Python, so a writer
can refuse exactly what a reader would.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

from golfpack.errors import FormatError, GolfpackError

MAX_DEPTH = 64
MAX_INT_DIGITS = 20
INT_MIN, INT_MAX = -(1 << 63), (1 << 63) - 1

# One JSON string literal (the "unrolled loop" form: linear, no backtracking blow-up).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}:")))  # bytes.translate deletes these
_BRACKET_STEP = bytes.maketrans(b"[{]}:", b"\x01\x01\xff\xff\x00")  # as int8: +1 opens, -1 closes
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]', re.S)
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PATH_SHOWN = 6  # path elements shown in a message; deeper paths end in "..."


class _Bad:
    """Placeholder the parse hooks return for a refused number; the walk reports it with its path."""

    __slots__ = ("problem",)

    def __init__(self, problem: str):
        self.problem = problem


class _DupDict(dict):
    """An object that had a duplicate key (the last value wins in the dict; the walk reports it)."""

    __slots__ = ("dup",)


def _path_str(path) -> str:
    """`path` is a linked list (parent, key) built during the walk; render it as `a.b[3]["odd key"]`."""
    parts = []
    while path is not None:
        path, key = path
        parts.append(key)
    parts.reverse()
    out = []
    for i, key in enumerate(parts[:_PATH_SHOWN]):
        if isinstance(key, int):
            out.append(f"[{key}]")
        elif _IDENT.match(key):
            out.append(key if i == 0 else "." + key)
        else:
            out.append("[" + json.dumps(key if len(key) <= 40 else key[:40] + "...")[:60] + "]")
    if len(parts) > _PATH_SHOWN:
        out.append("...")
    return "".join(out)


def _where(what: str, path) -> str:
    p = _path_str(path)
    return f"{what}: {p}" if p else what


def _int_problem(v: int) -> str | None:
    if INT_MIN <= v <= INT_MAX:
        return None
    return f"integer of {v.bit_length()} bits is outside the signed 64-bit range [-2^63, 2^63-1]"


def check_value(obj: Any, what: str, *, max_depth: int = MAX_DEPTH, error: type[Exception] = GolfpackError) -> None:
    """Refuse (with `error`, naming `what` and the path) anything `loads_bounded` would refuse.

    Iterative, so a deep or cyclic object cannot overflow the stack: a cycle
    simply exceeds the depth limit. Accepts dict (str keys), list, tuple, str,
    int, float, bool and None, the types json.dumps writes as themselves.
    """
    stack = [(obj, None, 1)]
    while stack:
        v, path, depth = stack.pop()
        if isinstance(v, str):
            if _SURROGATE.search(v):
                raise error(f"{_where(what, path)}: string holds a lone surrogate (not valid Unicode)")
        elif isinstance(v, bool) or v is None:
            pass
        elif isinstance(v, int):
            p = _int_problem(v)
            if p:
                raise error(f"{_where(what, path)}: {p}")
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise error(f"{_where(what, path)}: non-finite number {v!r} (JSON has no NaN or Infinity)")
        elif isinstance(v, _Bad):
            raise error(f"{_where(what, path)}: {v.problem}")
        elif isinstance(v, (dict, list, tuple)):
            if depth > max_depth:
                raise error(f"{_where(what, path)}: nested deeper than {max_depth} levels")
            if isinstance(v, _DupDict):
                raise error(f"{_where(what, path)}: duplicate key {v.dup!r}")
            if isinstance(v, dict):
                for k, x in v.items():
                    if not isinstance(k, str):
                        raise error(f"{_where(what, path)}: key {k!r} is not a string")
                    if _SURROGATE.search(k):
                        raise error(f"{_where(what, path)}: key holds a lone surrogate (not valid Unicode)")
                    stack.append((x, (path, k), depth + 1))
            else:
                stack.extend((x, (path, i), depth + 1) for i, x in enumerate(v))
        else:
            raise error(f"{_where(what, path)}: a {type(v).__name__} is not a JSON value")


def _bracket_scan(text: str, stop: int) -> tuple[int, int, int]:
    """(deepest bracket nesting, objects opened, object members) of JSON text, linear, no recursion.

    The depth is exact for valid JSON (for invalid JSON, up to the first error, which is as far as
    json.loads would recurse); the scan stops once it passes `stop`. Strings are cut out first, so
    brackets inside them do not count, every '{' left opens an object and every ':' is one member
    (a key and its value) of one. Memory stays at a
    fraction of the text: bytes.translate keeps only the brackets (numpy's byte-indexed lookup
    would first widen the whole text to 8-byte indices), and the running sum goes in chunks.
    """
    depth = best = objects = members = 0
    for chunk in _outside_strings(text):
        brackets = chunk.encode("utf-8", "surrogatepass").translate(None, _NOT_BRACKETS)
        if not brackets:
            continue
        objects += brackets.count(b"{")
        members += brackets.count(b":")
        run = np.cumsum(np.frombuffer(brackets.translate(_BRACKET_STEP), dtype=np.int8), dtype=np.int64) + depth
        best = max(best, int(run.max()))
        depth = int(run[-1])
        if best > stop:
            break
    return best, objects, members


# A literal of at most 18 digits always fits a signed 64-bit integer and the digit limit, so text
# without a longer run of digits needs no parse_int hook (a Python call per integer).
_SAFE_DIGIT_RUN = 18
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789" + bytes(c for c in range(256) if not 48 <= c <= 57),
                                  b"0" * 10 + b" " * 246)


def _has_digit_run(data: bytes, n: int) -> bool:
    """Whether `data` holds n or more consecutive ASCII digits (in strings or not)."""
    return b"0" * n in data.translate(_DIGITS_AS_ZERO)


_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'[]{}:"')))  # translate deletes these


def _plain_scan(data: bytes, stop: int, size: int = 1 << 16) -> tuple[int, int, int] | None:
    """_bracket_scan's (depth, objects, members) for UTF-8 JSON text without a backslash and with an
    even number of quotes; None for any other text (then _bracket_scan runs).

    Without escapes a string literal is a quote, anything but a quote, a quote: quotes pair up in
    order, exactly the matches of _STRING, so a bracket lies inside a string iff an odd number of
    quotes precede it. Only the quotes and the bytes []{}: are kept (bytes.translate), and the
    parity and running depth are taken on them, `size` bytes of text at a time so that the
    temporaries stay small next to the text (the regex walk of _outside_strings cost ~2 ms on a
    70 kB manifest, this ~0.1 ms)."""
    if b"\\" in data or data.count(b'"') % 2:
        return None
    depth = best = objects = members = quotes = 0
    for start in range(0, len(data), size):
        a = np.frombuffer(data[start:start + size].translate(None, _NOT_STRUCTURE), np.uint8)
        if not a.size:
            continue
        is_quote = a == 34
        c = a[((np.cumsum(is_quote, dtype=np.int64) + quotes) & 1 == 0) & ~is_quote]  # outside strings
        quotes += int(np.count_nonzero(is_quote))
        objects += int(np.count_nonzero(c == 123))
        members += int(np.count_nonzero(c == 58))
        step = (c == 91).view(np.int8) + (c == 123).view(np.int8) - (c == 93).view(np.int8) - (c == 125).view(np.int8)
        if step.size:
            level = np.cumsum(step, dtype=np.int64) + depth
            best = max(best, int(level.max()))
            depth = int(level[-1])
        if best > stop:
            break
    return best, objects, members


def _outside_strings(text: str, size: int = 1 << 20):
    """The text with its string literals cut out, in pieces of about `size` characters.

    Pieces, not one `_STRING.sub` result: sub builds a list of every gap between strings first, and
    a header of 10^6 tensors has 4 x 10^6 of them (250 MB of small str objects)."""
    parts, have, last = [], 0, 0
    for m in _STRING.finditer(text):
        gap = text[last:m.start()]
        last = m.end()
        if gap:
            parts.append(gap)
            have += len(gap)
            if have >= size:
                yield "".join(parts)
                parts, have = [], 0
    parts.append(text[last:])
    yield "".join(parts)


def _deep_path(text: str, max_depth: int):
    """(path, char offset) of the first container opened deeper than max_depth, or None.

    Runs only after _max_depth_of found a too-deep document, to name the field.
    """
    stack: list[list] = []  # per open container: [is_object, path, index, key]
    path = None
    for m in _TOKEN.finditer(text):
        c = text[m.start()]
        top = stack[-1] if stack else None
        if c == '"':
            if top is not None and top[0] and top[3] is None:
                try:
                    top[3] = json.loads(m.group()) if m.end() - m.start() <= 200 else m.group()[1:40] + "..."
                except ValueError:
                    top[3] = m.group()[1:40]
        elif c in "[{":
            if top is None:
                child = None
            elif top[0]:
                child = (top[1], top[3] if isinstance(top[3], str) else "?")
            else:
                child = (top[1], top[2])
            stack.append([c == "{", child, 0, None])
            if len(stack) > max_depth:
                return child, m.start()
        elif c in "]}":
            if not stack:
                return None
            stack.pop()
        elif c == "," and top is not None:
            if top[0]:
                top[3] = None
            else:
                top[2] += 1
    return None


class TooManyObjects(FormatError):
    """loads_bounded refused more than its max_objects (kind "objects") or max_members (kind "members");
    `count` is how many the text holds."""

    def __init__(self, message: str, count: int, kind: str):
        super().__init__(message)
        self.count, self.kind = count, kind


def loads_bounded(text: str | bytes, what: str, *, max_depth: int = MAX_DEPTH, max_int_digits: int = MAX_INT_DIGITS,
                  max_objects: int | None = None, max_members: int | None = None) -> Any:
    """Parse JSON from an untrusted source, or raise FormatError naming `what` (see the module doc).

    `what` names the input in messages, e.g. "manifest" or "/path/config.json". `max_objects` refuses
    (TooManyObjects) text that opens more JSON objects than that, counted by the linear bracket scan
    before json.loads builds any: a count the caller would refuse anyway is refused before its Python
    objects cost ten times the text (10^6 tensors in a safetensors header: 66 MB of text, 700 MB of dicts).
    `max_members` does the same for key-value pairs in all objects (10^6 names in one weight_map).
    """
    data = None
    if isinstance(text, (bytes, bytearray, memoryview)):
        data = bytes(text)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise FormatError(f"{what}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    if not isinstance(text, str):
        raise FormatError(f"{what}: expected JSON text, got {type(text).__name__}")

    # Depth first, before json.loads: its C scanner recurses per level (RecursionError, or worse).
    if data is None:  # the byte scans below read UTF-8 (surrogates kept: they are neither quotes nor brackets)
        data = text.encode("utf-8", "surrogatepass")
    plain = _plain_scan(data, max_depth)
    depth, n_objects, n_members = plain if plain is not None else _bracket_scan(text, max_depth)
    if depth > max_depth:
        found = _deep_path(text, max_depth)
        if found is None:
            raise FormatError(f"{what}: JSON nested deeper than {max_depth} levels")
        path, pos = found
        raise FormatError(f"{_where(what, path)}: JSON nested deeper than {max_depth} levels (at character {pos})")

    if max_objects is not None and n_objects > max_objects:  # before json.loads builds any of them
        raise TooManyObjects(f"{what}: {n_objects} JSON objects, over the limit of {max_objects}", n_objects, "objects")
    if max_members is not None and n_members > max_members:
        raise TooManyObjects(f"{what}: {n_members} JSON object members, over the limit of {max_members}", n_members, "members")

    flagged = False  # set when a hook returned a placeholder: then the walk names its path

    def parse_int(s: str):
        nonlocal flagged
        digits = len(s) - (s[0] == "-")
        if digits > max_int_digits:  # checked on the literal, before any conversion
            flagged = True
            return _Bad(f"integer literal of {digits} digits exceeds the {max_int_digits}-digit limit")
        v = int(s)
        p = _int_problem(v)
        if p:
            flagged = True
            return _Bad(p)
        return v

    def parse_float(s: str):
        nonlocal flagged
        v = float(s)
        if not math.isfinite(v):
            flagged = True
            return _Bad(f"number {s[:30]}{'...' if len(s) > 30 else ''} overflows a 64-bit float")
        return v

    def parse_constant(s: str):
        nonlocal flagged
        flagged = True
        return _Bad(f"non-finite number {s} (JSON has no NaN or Infinity)")

    def pairs(kv):
        nonlocal flagged
        d = dict(kv)
        if len(d) != len(kv):
            flagged = True
            seen = set()
            dup = next(k for k, _ in kv if k in seen or seen.add(k))
            d = _DupDict(d)
            d.dup = dup
        return d

    try:
        long_ints = _has_digit_run(data, min(_SAFE_DIGIT_RUN, max_int_digits) + 1)
        obj = json.loads(text, parse_int=parse_int if long_ints else None, parse_float=parse_float,
                         parse_constant=parse_constant, object_pairs_hook=pairs)
    except json.JSONDecodeError as e:
        raise FormatError(f"{what}: not valid JSON ({e})") from None
    except (ValueError, RecursionError, TypeError, OverflowError, MemoryError) as e:
        # Belt and braces: nothing from the json layer may escape as a traceback.
        raise FormatError(f"{what}: cannot be read as JSON ({type(e).__name__})") from None
    # The walk names the path of a refused value. Without a flag it is needed only if a lone
    # surrogate is possible: from a \uD800-\uDFFF escape, or a raw one in non-ASCII str input.
    if (flagged or ("\\u" in text and _SURROGATE_ESCAPE.search(text))
            or (not text.isascii() and _SURROGATE.search(text))):
        check_value(obj, what, max_depth=max_depth, error=FormatError)
    return obj

