"""Rate-aware rounding: let the quantizers see what a symbol costs to store.

Plain rounding picks the grid point nearest each weight. Near a tie, the two
candidates are equally good for the error but not for the bytes: under the
order-0 rANS model that stores the symbols, a symbol of probability p costs
-log2 p bits, and values near 0 are much cheaper than values in the tails. Rate-
aware rounding picks, per weight, between the nearest and the second-nearest
grid point whichever minimizes

    J(q) = w_ij * (u_ij - q)^2  +  lam * L(q)          u = weight / scale (grid units)

where L(q) is the code length in bits of symbol q, w_ij converts a squared
error in grid units into the planner's predicted loss increase (nats/token:
the diagonal of codec.calib.TensorStats.predict), and lam is the price of a
bit in nats/token: the same Lagrangian slope the byte-budget planner trades on
(dloss per byte / 8). lam = 0 is plain rounding. Only the two nearest grid
points compete, so no weight moves by more than one step and a symbol never
leaves the clip range.

L comes from the tensor's own histogram (add-1/2 smoothed, so a value not yet
used has a finite, high cost) and is re-estimated from the rounded symbols a
few times: rate-aware rounding concentrates the histogram, which makes the
frequent symbols cheaper still. The fixed point is what order-0 rANS then
codes.

In GPTQ the same rule decides each column's rounding, with the column's
OBS weight s_i^2 / U_jj^2 (U the upper Cholesky factor of H^-1) in place of
H_jj: that is the loss GPTQ's error feedback cannot undo.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from golfpack.errors import GolfpackError


def code_lengths(symbols: torch.Tensor, bits: int) -> torch.Tensor:
    """float64 [2*qmax + 1]: bits of each symbol value -qmax..qmax (index q + qmax) under the
    order-0 model of `symbols`, add-1/2 smoothed."""
    from golfpack.codec.quant import qmax

    q = qmax(bits)
    flat = symbols.reshape(-1).to(torch.int64)
    if flat.numel() and not (-q <= int(flat.min()) and int(flat.max()) <= q):
        raise GolfpackError(f"symbols outside -{q}..{q} for {bits} bits")
    counts = torch.bincount(flat + q, minlength=2 * q + 1).to(torch.float64)
    p = (counts + 0.5) / (counts.sum() + 0.5 * counts.numel())
    return -torch.log2(p)


@dataclass
class RateTerm:
    """What rate-aware rounding needs besides the weights: the price of a bit and the code
    lengths of the symbols (see the module docstring)."""

    lam: float  # nats/token per bit
    lengths: torch.Tensor  # float64 [2*qmax + 1], bits per symbol value

    def __post_init__(self):
        lam = float(self.lam)
        if not lam >= 0 or lam == float("inf"):
            raise GolfpackError(f"rate-aware rounding needs a finite lam >= 0, got {self.lam!r}")
        self.lam = lam
        if not isinstance(self.lengths, torch.Tensor) or self.lengths.ndim != 1 or self.lengths.numel() % 2 != 1:
            raise GolfpackError("lengths must be a 1-D tensor of 2*qmax+1 code lengths")
        self.lengths = self.lengths.to(torch.float64)


def round_rate_aware(u: torch.Tensor, weight: torch.Tensor, rate: RateTerm, q: int) -> torch.Tensor:
    """float64 symbols in -q..q: per element, the nearest or second-nearest grid point of u
    (float64, in grid units) minimizing weight * (u - sym)^2 + lam * L(sym). weight broadcasts
    against u. With lam = 0 this is clamp(round(u)) exactly (ties to even, as plain rounding)."""
    if rate.lengths.numel() != 2 * q + 1:
        raise GolfpackError(f"lengths cover {rate.lengths.numel()} values, expected {2 * q + 1}")
    q0 = torch.round(u).clamp_(-q, q)
    if rate.lam == 0.0:
        return q0
    step = torch.sign(u - q0)
    q1 = (q0 + step).clamp_(-q, q)
    L = rate.lengths
    j0 = weight * (u - q0).square() + rate.lam * L[(q0 + q).long()]
    j1 = weight * (u - q1).square() + rate.lam * L[(q1 + q).long()]
    return torch.where(j1 < j0, q1, q0)


def rtn_rate_aware(w: torch.Tensor, scales: torch.Tensor, bits: int, weight: torch.Tensor, lam: float,
                   iters: int = 3, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """int8 symbols of w [N, K] (per-row scales [N]) by rate-aware rounding, re-estimating the
    code lengths from the result `iters` times (from plain rounding's when `lengths` is None).
    weight: [N, K], [N, 1] or [1, K] float64 loss per squared grid unit."""
    from golfpack.codec.quant import qmax

    q = qmax(bits)
    n, k = w.shape
    if scales.shape != (n,):
        raise GolfpackError(f"rate-aware RTN takes per-row scales [{n}], got {tuple(scales.shape)}")
    u = w.to(torch.float64) / scales.to(torch.float64).reshape(n, 1)
    if lengths is None:
        lengths = code_lengths(torch.round(u).clamp_(-q, q), bits)
    sym = None
    for _ in range(max(1, iters)):
        sym = round_rate_aware(u, weight, RateTerm(lam, lengths), q)
        lengths = code_lengths(sym, bits)
    return sym.to(torch.int8)


def element_weights(stats, scales: torch.Tensor, shape: tuple[int, int], kappa: float = 1.0) -> torch.Tensor:
    """float64 loss (nats/token) per squared grid unit of each element of a [N, K] weight with
    per-row scales: the diagonal of TensorStats.predict times scale_i^2 (kappa * scale^2 without
    statistics). Broadcastable to [N, K]."""
    n, k = shape
    s2 = scales.to(torch.float64).reshape(n, 1).square()
    if stats is None:
        return kappa * s2
    out = torch.zeros(n, k, dtype=torch.float64)
    if stats.H is not None:
        g = stats.G.reshape(n, 1) if stats.G is not None else torch.ones(n, 1, dtype=torch.float64)
        out = out + 0.5 * stats.rows_per_token * g * torch.diagonal(stats.H).reshape(1, k)
    if stats.F_lookup is not None:
        out = out + 0.5 * stats.F_lookup.reshape(n, k)
    return out * s2


def row_weights(stats, n: int) -> torch.Tensor:
    """float64 [N]: the row factor of the K-FAC quadratic (0.5 * rows_per_token * G_i), which GPTQ's
    per-column OBS weight multiplies."""
    if stats is None or stats.H is None:
        return torch.ones(n, dtype=torch.float64)
    g = stats.G if stats.G is not None else torch.ones(n, dtype=torch.float64)
    return 0.5 * stats.rows_per_token * g.to(torch.float64).reshape(n)
