"""Magnitude pruning of quantized symbols: zero the smallest weights, to a fraction or to a byte target.

Pruning acts on the symbols a quantizer produced, choosing by the magnitude of
the *original* weight: among the entries whose symbol is not already 0, the
`fraction` (of the whole tensor) with the smallest |w| become 0. The coders
are order-0 rANS / LZ, so every extra zero makes the dominant symbol more
probable and costs less than a bit; there is nothing else to store (no mask).

`prune_to_bytes` binary-searches the fraction until the symbols' rANS size
fits a byte target (the records' "+-1 pruning to fit the cap").
"""
from __future__ import annotations

import numpy as np
import torch

from golfpack.errors import GolfpackError


def _check(symbols: torch.Tensor, w: torch.Tensor) -> None:
    if symbols.shape != w.shape:
        raise GolfpackError(f"pruning: symbols {tuple(symbols.shape)} and weights {tuple(w.shape)} differ in shape")


def prune_symbols(symbols: torch.Tensor, w: torch.Tensor, fraction: float) -> torch.Tensor:
    """A copy of symbols with `fraction` of all entries (smallest |w| among the nonzero symbols) set to 0.

    fraction is of the whole tensor, in [0, 1]; if fewer nonzero symbols exist, all become 0.
    Ties in |w| are broken by position, so the result is deterministic.
    """
    _check(symbols, w)
    if not 0.0 <= fraction <= 1.0:
        raise GolfpackError(f"prune fraction must be in [0, 1], got {fraction}")
    out = symbols.clone()
    n = int(round(fraction * symbols.numel()))
    if n == 0:
        return out
    flat_q = out.reshape(-1)
    mag = w.detach().to(torch.float32).abs().reshape(-1)
    nz = torch.nonzero(flat_q != 0).reshape(-1)
    if nz.numel() <= n:
        flat_q.zero_()
        return out
    # The n smallest |w| among the nonzero symbols, ties broken by position: everything strictly
    # below the n-th smallest value, then the first positions holding exactly that value. A
    # selection (kthvalue) instead of a full sort: the planner prunes many candidates.
    m = mag[nz]
    thr = torch.kthvalue(m, n).values
    below = nz[m < thr]
    at = nz[m == thr][: n - below.numel()]
    flat_q[below] = 0
    flat_q[at] = 0
    return out


def symbol_bytes(symbols: torch.Tensor) -> int:
    """Bytes of the symbols as one golfpack rANS stream (what the container would store at most)."""
    from golfpack.codec.coders import StreamType, encode_stream

    q = symbols.reshape(-1).numpy().astype(np.int8)
    return len(encode_stream(q, StreamType("int", q.size, 8), "rans"))


def prune_to_bytes(symbols: torch.Tensor, w: torch.Tensor, target_bytes: int, iters: int = 20) -> tuple[torch.Tensor, float]:
    """The smallest prune fraction (to ~1e-4 of the tensor) whose symbols' rANS size is <= target_bytes.

    Returns (pruned symbols, fraction). Raises GolfpackError when even all-zero symbols do not fit.
    """
    _check(symbols, w)
    if symbol_bytes(symbols) <= target_bytes:
        return symbols.clone(), 0.0
    nonzero = float((symbols != 0).sum()) / max(1, symbols.numel())
    if symbol_bytes(torch.zeros_like(symbols)) > target_bytes:
        raise GolfpackError(f"pruning cannot reach {target_bytes} bytes: all-zero symbols need more")
    lo, hi = 0.0, nonzero
    for _ in range(iters):
        mid = (lo + hi) / 2
        if symbol_bytes(prune_symbols(symbols, w, mid)) <= target_bytes:
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-4:
            break
    return prune_symbols(symbols, w, hi), hi
