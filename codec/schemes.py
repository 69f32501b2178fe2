"""Quantization schemes of the artifact format: which streams a tensor needs and how they decode.

A tensor's ``scheme`` object (FORMAT.md section 2) names a ``kind`` and its
parameters. This module is the single place that knows, per kind,

- which scheme keys are required and which are optional (`SCHEME_KEYS`),
- which stream roles the scheme needs (`roles`),
- how the decoded float tensor is computed from those streams (`dequantize`).

The container parser validates against these tables and the decoder calls
`dequantize`, so the format's arithmetic lives in one place next to its spec.

Kinds:
    float            data                                   -> data, cast to dtype
    int_rowscale     symbols, scales[rows]                  -> q * s[row]
    int_tensorscale  symbols, scales[1]                     -> q * s
    int_groupscale   symbols, scales[rows * groups]         -> q * s[row, col // group]

``int_rowscale`` and ``int_groupscale`` may carry an LQER low-rank term
(``"lowrank": {"rank": r, "bits": b}``): four more streams hold A^T [r, rows]
and B [r, cols] as b-bit symbols with one scale per factor row, and the
decoded tensor gains A @ B. Every product is taken in float32 and the sum is
cast to the tensor's dtype once, at the end: for the baseline's int8 tensors
this is bit-for-bit the challenge's ``dequantize_state_dict_int8``.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from golfpack.errors import FormatError

# kind -> (required scheme keys besides "kind", optional scheme keys)
SCHEME_KEYS: dict[str, tuple[frozenset, frozenset]] = {
    "float": (frozenset(), frozenset()),
    "int_rowscale": (frozenset({"bits"}), frozenset({"lowrank"})),
    "int_tensorscale": (frozenset({"bits"}), frozenset()),
    "int_groupscale": (frozenset({"bits", "group"}), frozenset({"lowrank"})),
}
BASE_ROLES = {
    "float": frozenset({"data"}),
    "int_rowscale": frozenset({"symbols", "scales"}),
    "int_tensorscale": frozenset({"symbols", "scales"}),
    "int_groupscale": frozenset({"symbols", "scales"}),
}
LOWRANK_ROLES = frozenset({"lowrank_a", "lowrank_a_scales", "lowrank_b", "lowrank_b_scales"})
LOWRANK_KEYS = frozenset({"rank", "bits"})
MAX_GROUP = 1 << 30


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def validate_scheme(scheme, where: str) -> None:
    """Check a scheme object's kind and keys and the ranges of its parameters (not the shape)."""
    if not isinstance(scheme, dict) or not isinstance(scheme.get("kind"), str):
        raise FormatError(f"{where}: scheme must be an object with a kind [M9]")
    kind = scheme["kind"]
    if kind not in SCHEME_KEYS:
        raise FormatError(f"{where}: quantization scheme {kind!r} is not supported by this golfpack "
                          f"(knows {', '.join(SCHEME_KEYS)}) [M9]")
    need, opt = SCHEME_KEYS[kind]
    keys = set(scheme) - {"kind"}
    if not (need <= keys <= need | opt):
        raise FormatError(f"{where}: scheme keys {sorted(scheme)} (expected {sorted(need | {'kind'})}"
                          + (f" + optional {sorted(opt)})" if opt else ")") + " [M9]")
    if "bits" in need and not (_is_int(scheme["bits"]) and 2 <= scheme["bits"] <= 8):
        raise FormatError(f"{where}: bits must be 2..8, got {scheme['bits']!r} [M9]")
    if "group" in need and not (_is_int(scheme["group"]) and 1 <= scheme["group"] <= MAX_GROUP):
        raise FormatError(f"{where}: group must be an integer in 1..{MAX_GROUP}, got {scheme['group']!r} [M9]")
    if "lowrank" in scheme:
        lr = scheme["lowrank"]
        if not isinstance(lr, dict) or set(lr) != LOWRANK_KEYS:
            raise FormatError(f"{where}: lowrank must be an object with keys {sorted(LOWRANK_KEYS)} [M9]")
        if not (_is_int(lr["rank"]) and lr["rank"] >= 1):
            raise FormatError(f"{where}: lowrank rank must be a positive integer, got {lr['rank']!r} [M9]")
        if not (_is_int(lr["bits"]) and 2 <= lr["bits"] <= 8):
            raise FormatError(f"{where}: lowrank bits must be 2..8, got {lr['bits']!r} [M9]")


def roles(scheme: dict) -> frozenset:
    """Stream roles a (validated) scheme needs."""
    r = BASE_ROLES[scheme["kind"]]
    return r | LOWRANK_ROLES if "lowrank" in scheme else r


def n_groups(cols: int, group: int) -> int:
    return (cols + group - 1) // group if cols else 0


def expected_counts(scheme: dict, shape: tuple[int, ...], where: str) -> dict[str, int]:
    """Element count each stream must hold for this scheme and shape (FormatError if the shape cannot
    carry the scheme)."""
    kind = scheme["kind"]
    numel = math.prod(shape)
    if kind == "float":
        return {"data": numel}
    out = {"symbols": numel}
    if kind == "int_tensorscale":
        out["scales"] = 1
        return out
    if len(shape) < 1:
        raise FormatError(f"{where}: per-row scales need at least one dimension [M9]")
    rows = shape[0]
    cols = numel // rows if rows else math.prod(shape[1:])
    if kind == "int_rowscale":
        out["scales"] = rows
    else:
        out["scales"] = rows * n_groups(cols, scheme["group"])
    if "lowrank" in scheme:
        r = scheme["lowrank"]["rank"]
        if len(shape) != 2:
            raise FormatError(f"{where}: a low-rank term needs a 2-D tensor, shape is {list(shape)} [M9]")
        if r > min(shape):
            raise FormatError(f"{where}: low-rank rank {r} exceeds min{tuple(shape)} [M9]")
        out.update(lowrank_a=r * shape[0], lowrank_a_scales=r, lowrank_b=r * shape[1], lowrank_b_scales=r)
    return out


def stream_bits(scheme: dict, role: str) -> int | None:
    """Bit width an int stream of this role must declare (None for float roles)."""
    if role == "symbols":
        return int(scheme["bits"])
    if role in ("lowrank_a", "lowrank_b"):
        return int(scheme["lowrank"]["bits"])
    return None


def _rows_scaled(q: np.ndarray, s: torch.Tensor, rows: int) -> torch.Tensor:
    """float32(q) * float32(s)[row] for q [rows, ...] (the baseline's exact product)."""
    qt = torch.from_numpy(np.ascontiguousarray(q)).to(torch.float32)
    return qt * s.to(torch.float32).view(rows, *([1] * (qt.dim() - 1)))


def lowrank_factors(scheme: dict, shape: tuple[int, ...], symbols: Callable[[str], np.ndarray],
                    floats: Callable[[str], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 A [rows, r] and B [r, cols] of a low-rank term."""
    r = scheme["lowrank"]["rank"]
    n, k = shape
    a_t = _rows_scaled(symbols("lowrank_a").reshape(r, n), floats("lowrank_a_scales"), r)
    b = _rows_scaled(symbols("lowrank_b").reshape(r, k), floats("lowrank_b_scales"), r)
    return a_t.t().contiguous(), b


def dequantize(scheme: dict, shape: tuple[int, ...], dtype: torch.dtype,
               symbols: Callable[[str], np.ndarray], floats: Callable[[str], torch.Tensor]) -> torch.Tensor:
    """The decoded tensor of a quantized scheme (kind != float).

    symbols(role) returns a decoded int stream (int8, flat) and floats(role) a decoded float stream
    (a torch tensor in its stored dtype, flat).
    """
    kind = scheme["kind"]
    q = symbols("symbols").reshape(shape)
    s = floats("scales")
    if kind == "int_tensorscale":
        w = torch.from_numpy(np.ascontiguousarray(q)).to(torch.float32) * s.to(torch.float32).reshape(())
    elif kind == "int_rowscale":
        w = _rows_scaled(q, s, shape[0])
    else:  # int_groupscale: scale of (row, col // group) over the flattened trailing dims
        rows = shape[0]
        cols = math.prod(shape[1:])
        g = scheme["group"]
        sg = s.to(torch.float32).reshape(rows, n_groups(cols, g))
        full = sg.repeat_interleave(g, dim=1)[:, :cols] if cols else sg[:, :0]
        w = (torch.from_numpy(np.ascontiguousarray(q.reshape(rows, cols))).to(torch.float32) * full).reshape(shape)
    if "lowrank" in scheme:
        a, b = lowrank_factors(scheme, shape, symbols, floats)
        w = w + a @ b
    return w.to(dtype).contiguous()
