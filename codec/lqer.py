"""LQER: a rank-r correction A @ B of a tensor's quantization error, itself quantized and stored.

    W ~= W_hat + A @ B        A [N, r], B [r, K]

The factors minimize the error that matters for the loss, not the plain
Frobenius error: with H = E[x x^T] (calibration inputs) and G = E[g^2] per
output row (calib.TensorStats), the K-FAC loss proxy of an error E is
sum_i G_i (E H E^T)_ii = || D E L ||_F^2 with D = diag(sqrt(G)) and H = L L^T.
The best rank-r term is therefore read off the SVD of D E L:

    D E L = U S V^T   ->   A = D^-1 U_r S_r^1/2,   B = S_r^1/2 V_r^T L^-1

(splitting S evenly keeps both factors on the same scale, which suits their
per-row quantization). Without statistics D and L are identities: the plain
truncated SVD.

Storage (FORMAT.md, scheme key "lowrank"): A^T [r, N] and B [r, K] as b-bit
symbols with one scale per factor row (codec.quant per-row RTN, MSE clip). The
stored, quantized factors are what decoding and packed inference use, so the
error this module reports is measured with them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from golfpack.errors import GolfpackError


@dataclass
class LowRank:
    """Quantized factors: a_t (A^T) [r, N] and b [r, K], each a codec.quant.QuantResult."""

    a_t: object
    b: object
    bits: int

    @property
    def rank(self) -> int:
        return int(self.a_t.symbols.shape[0])

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 A [N, r], B [r, K] exactly as decoded (codec.schemes.lowrank_factors)."""
        return self.a_t.dequantize().t().contiguous(), self.b.dequantize()

    def product(self) -> torch.Tensor:
        a, b = self.factors()
        return a @ b

    @property
    def n_symbols(self) -> int:
        return int(self.a_t.symbols.numel() + self.b.symbols.numel())


def _sqrt_psd_factor(H: torch.Tensor) -> torch.Tensor:
    """L with H ~= L L^T (float64), damped until Cholesky succeeds."""
    H = H.to(torch.float64)
    k = H.shape[0]
    mean_diag = float(torch.diagonal(H).mean()) if k else 1.0
    damp = 1e-6 * (mean_diag if mean_diag > 0 else 1.0)
    eye = torch.eye(k, dtype=torch.float64)
    for _ in range(8):
        L, info = torch.linalg.cholesky_ex(H + damp * eye)
        if int(info) == 0:
            return L
        damp *= 100
    raise GolfpackError("LQER: the calibration Hessian is not positive definite even after damping")


def fit_lowrank(err: torch.Tensor, rank: int, H: torch.Tensor | None = None,
                G: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Unquantized float32 factors (A [N, r], B [r, K]) of the best weighted rank-r approximation of err."""
    if err.dim() != 2:
        raise GolfpackError(f"LQER needs a 2-D error matrix, got shape {tuple(err.shape)}")
    n, k = err.shape
    if not 1 <= rank <= min(n, k):
        raise GolfpackError(f"LQER rank must be in 1..{min(n, k)} for shape {list(err.shape)}, got {rank}")
    E = err.to(torch.float64)
    d = None
    if G is not None:
        g = G.to(torch.float64).clamp_min(0)
        floor = float(g[g > 0].min()) if bool((g > 0).any()) else 1.0
        d = torch.sqrt(g.clamp_min(floor * 1e-3))  # rows with no gradient signal keep a small weight
        E = E * d[:, None]
    L = None
    if H is not None:
        L = _sqrt_psd_factor(H)
        E = E @ L
    if 4 * (rank + 8) < min(n, k):
        # A randomized range finder (Halko et al.) with 8 extra columns and two power iterations:
        # the top `rank` directions of a quantization residual to well under a percent of its
        # weighted energy, at O(N K rank) instead of a full SVD's O(N K min(N, K)). Seeded, so
        # planning stays deterministic and leaves the global RNG alone.
        g = torch.Generator().manual_seed(0)
        Om = torch.randn(k, rank + 8, dtype=torch.float64, generator=g)
        Y = E @ Om
        for _ in range(2):
            Y = E @ (E.t() @ torch.linalg.qr(Y).Q)
        Qb = torch.linalg.qr(Y).Q
        Ub, S, Vh = torch.linalg.svd(Qb.t() @ E, full_matrices=False)
        U = Qb @ Ub
    else:
        U, S, Vh = torch.linalg.svd(E, full_matrices=False)
    root = torch.sqrt(S[:rank])
    A = U[:, :rank] * root[None, :]
    B = root[:, None] * Vh[:rank]
    if L is not None:  # B L^-1 : solve L^T X^T = B^T
        B = torch.linalg.solve_triangular(L.t(), B.t(), upper=True).t()
    if d is not None:
        A = A / d[:, None]
    return A.to(torch.float32), B.to(torch.float32)


def quantize_lowrank(A: torch.Tensor, B: torch.Tensor, bits: int) -> LowRank:
    """Per-row RTN (MSE clip, fp16 scales) of A^T and B."""
    from golfpack.codec.quant import ClipSpec, quantize_rtn

    clip = ClipSpec("mse")
    return LowRank(quantize_rtn(A.t().contiguous(), bits, clip), quantize_rtn(B.contiguous(), bits, clip), bits)


def lqer(w: torch.Tensor, w_hat: torch.Tensor, rank: int, bits: int, H: torch.Tensor | None = None,
         G: torch.Tensor | None = None) -> LowRank:
    """Quantized rank-`rank` correction of w_hat toward w (see module docstring)."""
    A, B = fit_lowrank(w.to(torch.float32) - w_hat.to(torch.float32), rank, H, G)
    return quantize_lowrank(A, B, bits)
