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


def cell_code_lengths(symbols: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(lengths float64 [T, 2*qmax+1], cells int64 [N, K]): the code length of every symbol value
    in every table of the rans_rc model fitted to `symbols` [N, K] (codec/rans_rc.py), and which
    table each element is coded with. This is the model the artifact stores the symbols with, so
    a symbol's price depends on its row and column class. Values a table lacks cost what they
    would with half a count (add-1/2 smoothing of that table's frequencies)."""
    import numpy as np

    from golfpack.codec import rans_rc
    from golfpack.codec.quant import qmax

    q = qmax(bits)
    if symbols.ndim != 2 or symbols.numel() == 0:
        raise GolfpackError(f"per-cell code lengths need a non-empty matrix of symbols, got shape {tuple(symbols.shape)}")
    sym = symbols.to(torch.int64)
    if not (-q <= int(sym.min()) and int(sym.max()) <= q):
        raise GolfpackError(f"symbols outside -{q}..{q} for {bits} bits")
    m = rans_rc.fit((sym + 128).numpy().astype(np.uint8))
    f = m.freqs().reshape(m.T, 256)[:, 128 - q:128 + q + 1].astype(np.float64)
    p = (f + 0.5) / (f.sum(1, keepdims=True) + 0.5 * f.shape[1])
    cells = m.table_map[m.row_class.astype(np.int64)[:, None] * m.C + m.col_class.astype(np.int64)[None, :]]
    return torch.from_numpy(-np.log2(p)), torch.from_numpy(cells.astype(np.int64))


@dataclass
class RateTerm:
    """What rate-aware rounding needs besides the weights: the price of a bit and the code
    lengths of the symbols (see the module docstring). Order-0: `lengths` [2*qmax+1]. Per cell
    (the rans_rc model): `lengths` [T, 2*qmax+1] and `cells` [N, K], each element's table."""

    lam: float  # nats/token per bit
    lengths: torch.Tensor  # float64 [2*qmax + 1] or [T, 2*qmax + 1], bits per symbol value
    cells: torch.Tensor | None = None  # int64 [N, K] table index of each element (2-D lengths only)

    def __post_init__(self):
        lam = float(self.lam)
        if not lam >= 0 or lam == float("inf"):
            raise GolfpackError(f"rate-aware rounding needs a finite lam >= 0, got {self.lam!r}")
        self.lam = lam
        if (not isinstance(self.lengths, torch.Tensor) or self.lengths.ndim not in (1, 2)
                or self.lengths.shape[-1] % 2 != 1):
            raise GolfpackError("lengths must be a tensor of 2*qmax+1 code lengths (per table when 2-D)")
        self.lengths = self.lengths.to(torch.float64)
        if (self.lengths.ndim == 2) != (self.cells is not None):
            raise GolfpackError("per-table lengths and cells go together")
        if self.cells is not None:
            self.cells = self.cells.to(torch.int64)
            if self.cells.numel() and not (0 <= int(self.cells.min()) and int(self.cells.max()) < self.lengths.shape[0]):
                raise GolfpackError("cells index past the lengths' tables")

    @property
    def width(self) -> int:
        return int(self.lengths.shape[-1])


def round_rate_aware(u: torch.Tensor, weight: torch.Tensor, rate: RateTerm, q: int,
                     cells: torch.Tensor | None = None) -> torch.Tensor:
    """float64 symbols in -q..q: per element, the nearest or second-nearest grid point of u
    (float64, in grid units) minimizing weight * (u - sym)^2 + lam * L(sym). weight broadcasts
    against u. With lam = 0 this is clamp(round(u)) exactly (ties to even, as plain rounding).
    With per-table lengths, L is the element's table's: `cells` (default rate.cells) gives each
    element of u its table (GPTQ passes one column's)."""
    if rate.width != 2 * q + 1:
        raise GolfpackError(f"lengths cover {rate.width} values, expected {2 * q + 1}")
    q0 = torch.round(u).clamp_(-q, q)
    if rate.lam == 0.0:
        return q0
    step = torch.sign(u - q0)
    q1 = (q0 + step).clamp_(-q, q)
    L = rate.lengths
    if L.ndim == 2:
        t = rate.cells if cells is None else cells
        j0 = weight * (u - q0).square() + rate.lam * L[t, (q0 + q).long()]
        j1 = weight * (u - q1).square() + rate.lam * L[t, (q1 + q).long()]
    else:
        j0 = weight * (u - q0).square() + rate.lam * L[(q0 + q).long()]
        j1 = weight * (u - q1).square() + rate.lam * L[(q1 + q).long()]
    return torch.where(j1 < j0, q1, q0)


def rtn_rate_aware(w: torch.Tensor, scales: torch.Tensor, bits: int, weight: torch.Tensor, lam: float,
                   iters: int = 3, lengths: torch.Tensor | None = None,
                   cells: torch.Tensor | None = None) -> torch.Tensor:
    """int8 symbols of w [N, K] (per-row scales [N]) by rate-aware rounding, re-estimating the
    code lengths from the result `iters` times (from plain rounding's when `lengths` is None).
    Per-table `lengths` [T, 2q+1] with `cells` [N, K] use and re-fit the rans_rc cell model.
    weight: [N, K], [N, 1] or [1, K] float64 loss per squared grid unit."""
    from golfpack.codec.quant import qmax

    q = qmax(bits)
    n, k = w.shape
    if scales.shape != (n,):
        raise GolfpackError(f"rate-aware RTN takes per-row scales [{n}], got {tuple(scales.shape)}")
    u = w.to(torch.float64) / scales.to(torch.float64).reshape(n, 1)
    per_cell = lengths is not None and lengths.ndim == 2
    if per_cell and cells is None:
        raise GolfpackError("per-table lengths need cells")
    if lengths is None:
        lengths = code_lengths(torch.round(u).clamp_(-q, q), bits)
    sym = None
    for _ in range(max(1, iters)):
        sym = round_rate_aware(u, weight, RateTerm(lam, lengths, cells if per_cell else None), q)
        lengths, cells = cell_code_lengths(sym, bits) if per_cell else (code_lengths(sym, bits), None)
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
