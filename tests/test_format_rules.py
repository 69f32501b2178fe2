"""The numbered rules of FORMAT.md (H, M, S) and csrc/RANS.md (R, C, X): each has a hostile case
that breaks exactly it and is refused with a message ending in that rule, and every refusal site
of the reader (Python and C++) names a rule.

The rule ids are read from the two documents, so a rule added there without a case here, or a
case for a rule that no longer exists, fails `test_every_rule_has_a_hostile_case`.
"""
from __future__ import annotations

import ast
import copy
import re
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from golfpack import _C
from golfpack.codec import rans_rc
from golfpack.codec.container import HEADER, HEADER_SIZE, MANIFEST_RAW
from golfpack.errors import FormatError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_hostile_artifacts import _replace_stream, load, seal, split, tiny_artifact  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TAG = re.compile(r"\[([HMSRCX]\d+)\]")


def doc_rules() -> set[str]:
    fmt = set(re.findall(r"\*\*([HMS]\d+)\*\*", (REPO / "FORMAT.md").read_text()))
    rans = set(re.findall(r"^\| ([RCX]\d+) \|", (REPO / "csrc" / "RANS.md").read_text(), re.M))
    return fmt | rans


# ----------------------------------------------------------------------------- builders

def _art():
    return tiny_artifact()


def _header(data: bytes, **fields) -> bytes:
    """The artifact with header fields replaced and the header CRC recomputed (a hostile writer)."""
    names = ("magic", "version", "flags", "coding", "r1", "r2", "stored", "raw", "crc")
    vals = dict(zip(names, HEADER.unpack(data[:HEADER_SIZE])))
    vals.update(fields)
    head = HEADER.pack(*[vals[n] for n in names])[:-4]
    stored = data[HEADER_SIZE: HEADER_SIZE + vals["stored"]]
    return head + struct.pack("<I", zlib.crc32(stored, zlib.crc32(head))) + data[HEADER_SIZE:]


def _raw_manifest(text: bytes, payload: bytes) -> bytes:
    head = HEADER.pack(b"GOLFPACK", 1, 0, MANIFEST_RAW, 0, 0, len(text), len(text), 0)[:-4]
    return head + struct.pack("<I", zlib.crc32(text, zlib.crc32(head))) + text + payload


def _edit(fn):
    """An artifact whose manifest `fn` edits, resealed (valid CRCs)."""
    man, payload = split(_art())
    out = fn(man, payload)
    return out if isinstance(out, bytes) else seal(man, payload)


def _tensor(man, name):
    return next(t for t in man["tensors"] if t["name"] == name)


def _set(key, value):
    return lambda man, payload: man.__setitem__(key, value)


def _flip(data: bytes, pos: int, mask: int = 1) -> bytes:
    b = bytearray(data)
    b[pos] ^= mask
    return bytes(b)


def _artifact_error(data: bytes) -> str:
    with pytest.raises(FormatError) as ei:
        load(data)
    return str(ei.value)


def _error(fn) -> str:
    with pytest.raises((FormatError, ValueError)) as ei:
        fn()
    return str(ei.value)


# rANS streams (RANS.md section 1 layout): u with several symbols, a dense table.
_U = np.array([3, 7, 7, 9, 3, 3, 7, 12] * 500, np.uint8)
_V1 = _C.rans_encode(_U, 12, 8)
_TABLE = _C.rans_table_info(_V1)["table_bytes"]


def _v1(data, count=_U.size):
    return lambda: _C.rans_decode(data, count)


def _first_tagged(candidates, rule):
    """The first candidate stream the decoder refuses under `rule` (a corruption is often caught
    by a later check; the loop is deterministic)."""
    for data in candidates:
        try:
            _C.rans_decode(data, _U.size)
        except ValueError as e:
            if str(e).endswith(f"[{rule}]"):
                return data
    raise AssertionError(f"no candidate breaks {rule}")


# rans_x32 streams (RANS.md section 7): the same symbols, 32 lanes.
_X32 = _C.rans_x32_encode(_U)
_X32_TABLE = _C.rans_table_info(_X32)["table_bytes"]


def _x32(data, count=_U.size):
    return lambda: _C.rans_x32_decode(data, count)


def _x32_first_tagged(candidates, rule):
    for data in candidates:
        try:
            _C.rans_x32_decode(data, _U.size)
        except ValueError as e:
            if str(e).endswith(f"[{rule}]"):
                return data
    raise AssertionError(f"no candidate breaks {rule}")


def _rc_parts():
    rng = np.random.default_rng(1)
    u = (np.clip(np.rint(rng.laplace(size=(16, 64)) * 4), -32, 31).astype(np.int16) + 128).astype(np.uint8)
    data = rans_rc.encode(u)
    m, payload = rans_rc.parse(data, u.size)
    args = (u.size, m.cols, m.row_class, m.col_class, m.table_map, m.C, m.freqs(), m.P, m.lanes)
    return u, data, bytes(payload), args


def _rc_decode(payload, args, **changes):
    a = list(args)
    for k, v in changes.items():
        a[{"table_map": 4}[k]] = v
    return lambda: _C.rans_ctx_decode(payload, *a)


def _cases():
    a = _art()
    man, payload = split(a)
    u, rc, rc_payload, rc_args = _rc_parts()
    sym_a = _tensor(man, "a")["streams"]["symbols"]
    return {
        "H1": lambda: _artifact_error(a[:HEADER_SIZE - 1]),
        "H2": lambda: _artifact_error(b"X" + a[1:]),
        "H3": lambda: _artifact_error(_header(a, version=2)),
        "H4": lambda: _artifact_error(_header(a, flags=1)),
        "H5": lambda: _artifact_error(_header(a, coding=7)),
        "H6": lambda: _artifact_error(_header(a, raw=(64 << 20) + 1)),
        "H7": lambda: _artifact_error(_header(a, stored=len(a))),
        "H8": lambda: _artifact_error(_flip(a, HEADER_SIZE + 3)),
        "H9": lambda: _artifact_error(_header(seal(*split(a)), raw=HEADER.unpack(seal(*split(a))[:HEADER_SIZE])[7] + 1)),
        "M1": lambda: _artifact_error(_raw_manifest(b'{"tensors":[],"tensors":[]}', b"")),
        "M2": lambda: _artifact_error(_edit(_set("extra", 1))),
        "M3": lambda: _artifact_error(_edit(_set("payload_bytes", -1))),
        "M4": lambda: _artifact_error(seal(man, payload) + b"\0"),
        "M5": lambda: _artifact_error(_edit(_set("tensors", {}))),
        "M6": lambda: _artifact_error(_edit(lambda m, p: m["tensors"].append(copy.deepcopy(m["tensors"][0])))),
        "M7": lambda: _artifact_error(_edit(lambda m, p: _tensor(m, "c").update(shape=[3] + [1] * 8))),
        "M8": lambda: _artifact_error(_edit(lambda m, p: _tensor(m, "c").update(dtype="int7"))),
        "M9": lambda: _artifact_error(_edit(lambda m, p: _tensor(m, "a").update(scheme={"kind": "nope"}))),
        "M10": lambda: _artifact_error(_edit(lambda m, p: _tensor(m, "a")["streams"].pop("scales"))),
        "M11": lambda: _artifact_error(_edit(lambda m, p: _tensor(m, "c").update(meta=[1]))),
        "M12": lambda: _artifact_error(_edit(lambda m, p: _tensor(m, "c").update(shape=[1 << 20, 1 << 11]))),
        "S1": lambda: _artifact_error(_edit(lambda m, p: _tensor(m, "c")["streams"]["data"].update(x=1))),
        "S2": lambda: _artifact_error(_edit(lambda m, p: _tensor(m, "c")["streams"]["data"].update(count=-1))),
        "S3": lambda: _artifact_error(_edit(lambda m, p: _tensor(m, "c")["streams"]["data"].update(offset=10**6))),
        "S4": lambda: _artifact_error(_edit(lambda m, p: _tensor(m, "a")["streams"]["symbols"].update(bits=9))),
        "S5": lambda: _artifact_error(_edit(lambda m, p: _tensor(m, "c")["streams"]["data"].update(coder="lz4"))),
        "S6": lambda: _artifact_error(_edit(
            lambda m, p: _tensor(m, "c")["streams"]["data"].update(offset=_tensor(m, "c")["streams"]["data"]["offset"] - 1))),
        "S7": lambda: _artifact_error(_flip(a, len(a) - 1)),
        "S8": lambda: _artifact_error(_replace_stream(*split(a), "b", "symbols", b"\0")),
        "S9": lambda: _artifact_error(_replace_stream(*split(a), "a", "symbols",
                                                      _C.rans_encode(np.full(sym_a["count"], 228, np.uint8)))),
        "S10": lambda: _artifact_error(_replace_stream(*split(a), "a", "scales", np.full(2, np.nan, np.float16).tobytes())),
        "R1": _v1(bytes([0x80 | 12])),
        "R2": _v1(bytes([12])),
        "R3": _v1(_first_tagged([_flip(_V1, k, m) for k in range(1, _TABLE) for m in (1, 2, 0x40)], "R3")),
        "R4": _v1(_V1, 0),
        "R5": _v1(_C.rans_encode(np.full(10, 5, np.uint8)) + b"\0\0\0\0", 10),
        "R6": _v1(_V1[:_TABLE] + b"\0" * 8 + _V1[_TABLE + 8:]),
        "R7": _v1(_first_tagged([_V1[:-4 * k] for k in range(1, 40)], "R7")),
        "R8": _v1(_V1 + b"\0\0\0\0"),
        "R9": _v1(_first_tagged([_flip(_V1, k) for k in range(_TABLE + 64, len(_V1))], "R9")),
        "X1": _x32(_C.rans_encode(_U, 13, 1)),
        "X2": _x32(_X32, 0),
        "X3": _x32(_C.rans_x32_encode(np.full(10, 5, np.uint8)) + b"\0\0", 10),
        "X4": _x32(_X32[:_X32_TABLE] + b"\0" * 4 + _X32[_X32_TABLE + 4:]),
        "X5": _x32(_x32_first_tagged([_X32[:-2 * k] for k in range(1, 40)], "X5")),
        "X6": _x32(_X32 + b"\0\0"),
        "X7": _x32(_x32_first_tagged([_flip(_X32, k) for k in range(_X32_TABLE + 128, len(_X32))], "X7")),
        "C1": lambda: rans_rc.decode(rc[:10], u.size),
        "C2": _rc_decode(rc_payload, rc_args, table_map=np.full_like(rc_args[4], 255)),
        "C3": lambda: _C.rans_ctx_decode(rc_payload[:4], *rc_args),
        "C4": lambda: _C.rans_ctx_decode(rc_payload + b"\0\0\0\0", *rc_args),
    }


CASES = _cases()


def test_every_rule_has_a_hostile_case():
    rules = doc_rules()
    assert len(rules) >= 40, sorted(rules)
    assert set(CASES) == rules, (sorted(rules - set(CASES)), sorted(set(CASES) - rules))


@pytest.mark.parametrize("rule", sorted(CASES, key=lambda r: (r[0], int(r[1:]))))
def test_hostile_case_is_refused_under_its_rule(rule):
    case = CASES[rule]
    msg = case() if rule[0] in "HMS" else _error(case)
    tags = TAG.findall(msg)
    assert tags and tags[-1] == rule, msg
    assert "\n" not in msg


# ----------------------------------------------------------------------------- every refusal names a rule

_PY_READERS = ["codec/container.py", "codec/coders.py", "codec/schemes.py", "codec/rans_rc.py"]
# A FormatError that wraps a caught error passes its message (which names the rule) through.
_WRAPPED = re.compile(r"\{(e|err|r|out\[[^]]*\])\}|^FormatError\(str\(e\)\)$")


def _calls(path: Path):
    tree = ast.parse(path.read_text())
    src = path.read_text()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("FormatError", "_req"):
            yield node, ast.get_source_segment(src, node)


def test_every_python_refusal_names_a_rule():
    rules = doc_rules()
    seen = 0
    for rel in _PY_READERS:
        for node, text in _calls(REPO / rel):
            seen += 1
            if node.func.id == "_req":
                rule = node.args[0]
                assert isinstance(rule, ast.Constant) and rule.value in rules, f"{rel}: {text[:120]}"
                continue
            tags = TAG.findall(text)
            if text.startswith("FormatError(f\"{msg} [{rule}]\")"):
                continue  # _req itself
            assert (tags and set(tags) <= rules) or _WRAPPED.search(text), f"{rel}: refusal names no rule: {text[:160]}"
    assert seen >= 90, seen


_CPP_READERS = ["csrc/core/rans.cpp", "csrc/core/rans_ctx.cpp", "csrc/core/rans_rows.cpp",
                "csrc/core/rans_x32.cpp", "csrc/core/rans_x32_rows.cpp",
                "csrc/py/rans_py.cpp", "csrc/py/rans_ctx_py.cpp", "csrc/py/rans_x32_py.cpp"]
# Errors that refuse no input: encoder arguments, an ISA the CPU lacks, internal invariants.
_NO_RULE = re.compile(r"internal:|this CPU has no|precision must be 0 \(auto\)|lanes must be 0 \(auto\)|"
                      r"more than 2\^40 symbols|at position")


def test_every_cpp_refusal_names_a_rule():
    rules = doc_rules()
    seen = 0
    for rel in _CPP_READERS:
        text = (REPO / rel).read_text()
        for m in re.finditer(r'throw (?:Error|std::invalid_argument|std::runtime_error|py::value_error)\((.*?)\);',
                             text, re.S):
            body = m.group(1)
            if not re.search(r'"rANS|rans(_x32)? stream|Error\(|^nullptr|^"[RCSX]\d+"', body) and "Error(" not in m.group(0):
                continue  # binding argument checks (threads, lanes, bits, job tuples) are not format rules
            seen += 1
            if body.startswith('"rANS ISA must be'):
                continue  # rans_set_isa's argument, not a stream
            if body.startswith("nullptr"):
                assert _NO_RULE.search(body), f"{rel}: untagged refusal: {body[:120]}"
                continue
            lead = re.match(r'"([RCSX]\d+)"', body)
            tags = TAG.findall(body) + ([lead.group(1)] if lead else [])
            assert tags and set(tags) <= rules, f"{rel}: refusal names no rule: {body[:120]}"
    assert seen >= 50, seen
