"""GPTQ: error-compensated rounding of a weight matrix against a calibration Hessian.

GPTQ (Frantar et al. 2022, "OPTQ") quantizes the columns of W [N, K] one at a
time and, after each, spreads that column's rounding error over the columns not
yet quantized so that the layer output X W^T changes as little as possible,
i.e. it greedily minimizes tr((W - W_hat) H (W - W_hat)^T) with H = mean(x x^T)
over calibration inputs (codec.quant.hessian_error). This module is the
standard Cholesky form with lazy batch updates:

    H      <- H + damp * mean(diag H) * I          (dead columns: H[i, i] = 1, w[:, i] = 0)
    U      =  upper Cholesky factor of H^-1
    per block of block_size columns, per column j:
        q_j     = clamp(round(w_j / s_j), -qmax, qmax)
        e_j     = (w_j - q_j * s_j) / U[j, j]
        w[:, j:block_end] -= e_j U[j, j:block_end]       (within the block, immediately)
    after the block: w[:, block_end:] -= E U[block, block_end:]   (one matmul)

Scales are *not* re-derived during the loop: they come once from the original
w through codec.quant (clip_thresholds with col_weight = diag(H), then
scales_from_clip) and stay fixed, so GPTQ only changes which grid point each
weight rounds to. That keeps the scales a function of the checkpoint alone (the
planner can compare RTN and GPTQ at equal scale cost and the format stores
them the same way), and groups are static: group g always covers original
columns [g * group, (g + 1) * group), also under act-order.

act_order processes columns by descending diag(H) (the most-used inputs first,
while most columns are still free to absorb their error) and un-permutes the
symbols at the end. All arithmetic is float64 on the CPU: calibration
Hessians are often ill-conditioned (a few dominant input directions), and in
float32 the Cholesky of H^-1 can fail outright or carry errors comparable to
the corrections being propagated; float64 also keeps the result independent
of block_size up to rare rounding ties.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch

from golfpack.codec.quant import (
    _check_scales,
    ClipSpec,
    QuantResult,
    _as_weight,
    _check_group,
    _check_scale_dtype,
    _expand_scales,
    _is_number,
    _round_clamp,
    clip_thresholds,
    qmax,
    scales_from_clip,
)
from golfpack.codec.rate import round_rate_aware
from golfpack.errors import GolfpackError

DAMP_RETRIES = 4  # a failed Cholesky is retried with damping x10, this many times
_RETRY_BASE_DAMP = 1e-5  # first retry's relative damping when cfg.damp == 0


@dataclass(frozen=True)
class GPTQConfig:
    """damp: relative damping lambda (H += lambda * mean(diag H) * I); block_size: columns
    per lazy-update block (results do not depend on it beyond float rounding); act_order:
    process columns by descending diag(H)."""

    damp: float = 0.01
    block_size: int = 128
    act_order: bool = True

    def __post_init__(self):
        if not _is_number(self.damp) or not math.isfinite(self.damp) or self.damp < 0:
            raise GolfpackError(f"GPTQ damp must be a finite number >= 0 (got {self.damp!r})")
        if not isinstance(self.block_size, int) or isinstance(self.block_size, bool) or self.block_size < 1:
            raise GolfpackError(f"GPTQ block_size must be an integer >= 1 (got {self.block_size!r})")
        if not isinstance(self.act_order, bool):
            raise GolfpackError(f"GPTQ act_order must be a bool (got {self.act_order!r})")

    def to_json(self) -> dict:
        return {"damp": float(self.damp), "block_size": self.block_size, "act_order": self.act_order}

    @classmethod
    def from_json(cls, d) -> "GPTQConfig":
        keys = {"damp", "block_size", "act_order"}
        if not isinstance(d, dict) or set(d) - keys:
            raise GolfpackError(f"GPTQ config must be an object with keys among {sorted(keys)} (got {d!r})")
        return cls(**d)


def _check_hessian(H, k: int) -> torch.Tensor:
    """float64 symmetric copy of H [K, K]; GolfpackError for anything that cannot be a Hessian."""
    if not isinstance(H, torch.Tensor) or not H.dtype.is_floating_point:
        raise GolfpackError("H must be a float torch.Tensor")
    if tuple(H.shape) != (k, k):
        raise GolfpackError(f"H must be [K, K] = [{k}, {k}] to match w (got {tuple(H.shape)})")
    h = H.detach().to("cpu", torch.float64).clone()
    if not bool(torch.isfinite(h).all()):
        raise GolfpackError("H has NaN or Inf entries")
    d = torch.diagonal(h)
    if bool((d < 0).any()):
        i = int(torch.nonzero(d < 0)[0])
        raise GolfpackError(f"H is not positive semidefinite: H[{i}, {i}] = {float(d[i]):.6g} < 0")
    scale = float(h.abs().max()) if k else 0.0
    if not torch.allclose(h, h.T, rtol=1e-5, atol=1e-6 * scale):
        raise GolfpackError("H is not symmetric")
    return (h + h.T) / 2  # float32 X^T X is symmetric only up to rounding


_PREPARED: "OrderedDict[tuple, tuple]" = OrderedDict()
_PREPARED_MAX = 4


def _prepared(H, k: int, cfg: GPTQConfig):
    """(checked H, dead-column mask, act-order permutation or None, upper Cholesky factor of the
    damped inverse) for H. The planner quantizes one tensor many times against the same H, so
    the O(K^3) part is cached per H object. The cache holds a reference to H itself and checks
    `entry H is H`: an id alone could be reused by a new tensor once the old one is freed. The
    in-place version counter must match too, so an H changed through torch ops is recomputed
    (writes through a numpy view of H bypass that counter: do not mutate H between calls)."""
    key = None
    if isinstance(H, torch.Tensor):
        key = (id(H), k, cfg.damp, cfg.act_order)
        hit = _PREPARED.get(key)
        if hit is not None and hit[0] is H and hit[1] == H._version:
            _PREPARED.move_to_end(key)
            return hit[2]
    h = _check_hessian(H, k)
    hw = h.clone()
    dead = torch.diagonal(hw) == 0
    if bool(dead.any()):
        # give H a unit diagonal at dead columns so it stays invertible (their weights become 0)
        hw[dead, :] = 0
        hw[:, dead] = 0
        hw[dead, dead] = 1
    perm = None
    if cfg.act_order:
        perm = torch.argsort(torch.diagonal(hw), descending=True, stable=True)
        hw = hw[perm][:, perm]
    U = _inverse_cholesky(hw, cfg.damp) if k else hw
    out = (h, dead, perm, U)
    if key is not None:
        _PREPARED[key] = (H, H._version, out)
        _PREPARED.move_to_end(key)
        while len(_PREPARED) > _PREPARED_MAX:
            _PREPARED.popitem(last=False)
    return out


def _inverse_cholesky(h: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of (h + lambda * mean(diag h) * I)^-1, retrying with more damping."""
    k = h.shape[0]
    mean_diag = float(torch.diagonal(h).mean())
    eye = torch.eye(k, dtype=torch.float64)
    lam = damp
    for attempt in range(DAMP_RETRIES + 1):
        if attempt:
            lam = lam * 10 if lam > 0 else _RETRY_BASE_DAMP
        L, info = torch.linalg.cholesky_ex(h + (lam * mean_diag) * eye)
        if int(info) == 0:
            hinv = torch.cholesky_inverse(L)
            U, info = torch.linalg.cholesky_ex(hinv, upper=True)
            if int(info) == 0 and bool(torch.isfinite(U).all()):
                return U
    raise GolfpackError(
        f"H is not positive definite even with damping {lam:g} * mean(diag H) "
        f"(after {DAMP_RETRIES} retries x10): is it really a Hessian mean(x x^T)?"
    )


@dataclass(frozen=True)
class GPTQJob:
    """One quantization of the same weight in a batched GPTQ call: a bit width and its fixed scales
    ([N], or [N, G] with groups of `group` columns)."""

    bits: int
    scales: torch.Tensor
    group: int | None = None


def gptq_quantize(
    w,
    H,
    bits: int,
    clip: ClipSpec = ClipSpec(),
    group: int | None = None,
    cfg: GPTQConfig = GPTQConfig(),
    scale_dtype=torch.float16,
    scales: torch.Tensor | None = None,
    rate=None,
    row_weight: torch.Tensor | None = None,
    device=None,
) -> QuantResult:
    """GPTQ symbols of w [N, K] against the Hessian H [K, K], with scales fixed up front.

    rate (codec.rate.RateTerm): rate-aware rounding; each column picks between its nearest and
    second-nearest grid points by row_weight_i * s_i^2 / U_jj^2 * err^2 + lam * L(q), with
    row_weight [N] (codec.rate.row_weights; ones when None). Needs per-row scales.

    Scales: clip_thresholds(w, bits, clip, group, col_weight=diag(H)) -> scales_from_clip,
    from the original w, unless `scales` gives them (the planner's clip grid: [N], or [N, G]
    with groups; `clip` is then ignored). Neither w nor H is modified. device: where the column
    loop runs (default CPU; results agree with the CPU's up to float64 rounding ties).
    """
    qmax(bits)
    _check_group(group)
    _check_scale_dtype(scale_dtype)
    if not isinstance(cfg, GPTQConfig):
        raise GolfpackError(f"cfg must be a GPTQConfig (got {type(cfg).__name__})")
    w32 = _as_weight(w)
    n, k = w32.shape
    h = _prepared(H, k, cfg)[0]
    # Scales first, from the untouched weights: GPTQ then only picks grid points.
    if scales is None:
        c = clip_thresholds(w32, bits, clip, group, col_weight=torch.diagonal(h).clone(), scale_dtype=scale_dtype)
        scales = scales_from_clip(c, bits, scale_dtype)
    if rate is not None:
        if group is not None:
            raise GolfpackError("rate-aware GPTQ takes per-row scales (group None)")
        if rate.cells is not None and tuple(rate.cells.shape) != (n, k):
            raise GolfpackError(f"rate cells have shape {tuple(rate.cells.shape)}, the weight {(n, k)}")
    return gptq_quantize_batch(w32, H, [GPTQJob(bits, scales, group)], cfg, rate=rate, row_weight=row_weight,
                               device=device)[0]


# Rows (summed over a batch's jobs) of one pass of the column loop: bounds the float64 working set
# (rows x K x 8 bytes, three copies) while keeping the per-column Python overhead amortized.
BATCH_ROWS = 1 << 15


def gptq_quantize_batch(w, H, jobs, cfg: GPTQConfig = GPTQConfig(), rate=None, row_weight=None,
                        device=None) -> list[QuantResult]:
    """GPTQ of the same w [N, K] and H for several (bits, scales, group) jobs at once.

    Rows of a weight are independent under GPTQ (the error of row i only moves later columns of
    row i), so the jobs are stacked as rows of one [sum N, K] problem and share one Cholesky factor
    and one column loop: each job's symbols are what gptq_quantize gives it alone (up to float64
    rounding ties of the batched matmuls). This is what makes the planner's many scale candidates
    per tensor cheap (codec/candidates.py).
    """
    if not isinstance(cfg, GPTQConfig):
        raise GolfpackError(f"cfg must be a GPTQConfig (got {type(cfg).__name__})")
    w32 = _as_weight(w)
    n, k = w32.shape
    jobs = list(jobs)
    for j in jobs:
        if not isinstance(j, GPTQJob):
            raise GolfpackError(f"jobs must be GPTQJob (got {type(j).__name__})")
        qmax(j.bits)
        _check_group(j.group)
        _check_scales(j.scales, n, k, j.group)
    if rate is not None and len(jobs) != 1:
        raise GolfpackError("rate-aware GPTQ runs one job at a time")
    h, dead, perm, U = _prepared(H, k, cfg)
    if n == 0 or k == 0 or not jobs:
        return [QuantResult(torch.zeros(n, k, dtype=torch.int8), j.scales.clone(), j.bits, j.group) for j in jobs]
    dev = torch.device("cpu") if device is None else torch.device(device)
    W = w32.to(torch.float64)  # a fresh copy: the caller's w stays as it was
    if bool(dead.any()):
        W[:, dead] = 0  # a column no calibration input reaches: its weight never matters
    if perm is not None:
        W = W[:, perm]
    out: list[QuantResult] = []
    per_pass = max(1, BATCH_ROWS // max(n, 1))
    Ud = U.to(dev)
    for j0 in range(0, len(jobs), per_pass):
        part = jobs[j0 : j0 + per_pass]
        s_cols = torch.cat([_expand_scales(j.scales, n, k, j.group) for j in part])  # [R, K], original order
        qm = torch.cat([torch.full((n, 1), float(qmax(j.bits)), dtype=torch.float64) for j in part])
        if perm is not None:
            s_cols = s_cols[:, perm]
        Q = _column_loop(W.repeat(len(part), 1).to(dev), s_cols.contiguous().to(dev), qm.to(dev), Ud,
                         cfg.block_size, rate, row_weight, perm, n)
        if perm is not None:
            Q = Q[:, torch.argsort(perm).to(Q.device)]
        Q = Q.to("cpu", torch.int8)
        for i, j in enumerate(part):
            out.append(QuantResult(symbols=Q[i * n : (i + 1) * n].contiguous(), scales=j.scales.clone(), bits=j.bits,
                                   group=j.group))
    return out


def _column_loop(W, s_cols, qm, U, bs: int, rate, row_weight, perm, n: int, native: bool | None = None) -> torch.Tensor:
    """The blocked GPTQ loop (module docstring) over W [R, K] float64 in act-order column order,
    in place; qm [R, 1] is each row's largest symbol. Returns the symbols [R, K] as float64.

    On the CPU the in-block loop runs in golfpack._C.gptq_block_f64 (one row at a time in L1,
    rows across threads), which does this function's arithmetic operation for operation; the
    torch loop below is its reference (native=False) and the path for CUDA tensors and for
    rate-aware rounding."""
    r, k = W.shape
    if native is None:
        native = W.device.type == "cpu" and rate is None
    if rate is not None:
        rw = torch.ones(n, dtype=torch.float64) if row_weight is None else row_weight.to(torch.float64).reshape(n)
        cell_cols = None
        if rate.cells is not None:
            cell_cols = rate.cells if perm is None else rate.cells[:, perm]
        q_int = int(qm[0, 0])
    if native:
        from golfpack import _C

        qm_rows = qm.reshape(r).contiguous().numpy()
    qlo = -qm
    Q = torch.zeros(r, k, dtype=torch.float64, device=W.device)
    for i1 in range(0, k, bs):
        i2 = min(i1 + bs, k)
        U1 = U[i1:i2, i1:i2]
        if native:
            W1 = W[:, i1:i2].contiguous().numpy()
            q1, e1 = _C.gptq_block_f64(W1, s_cols[:, i1:i2].contiguous().numpy(), qm_rows,
                                       U1.contiguous().numpy(), torch.get_num_threads())
            Q[:, i1:i2] = torch.from_numpy(q1)
            E1 = torch.from_numpy(e1)
        else:
            W1 = W[:, i1:i2].clone()
            E1 = torch.zeros(r, i2 - i1, dtype=torch.float64, device=W.device)
            for i in range(i2 - i1):
                wcol = W1[:, i]
                s = s_cols[:, i1 + i]
                if rate is None:
                    # float64 division then round: the correctly rounded symbol (_round_clamp's reasoning)
                    qcol = torch.round(wcol / s).unsqueeze(1).clamp_(qlo, qm).squeeze(1)
                else:
                    qcol = round_rate_aware(wcol / s, rw * s.square() / U1[i, i].square(), rate, q_int,
                                            None if cell_cols is None else cell_cols[:, i1 + i])
                Q[:, i1 + i] = qcol
                err = (wcol - qcol * s) / U1[i, i]
                if i + 1 < i2 - i1:
                    W1[:, i + 1 :] -= torch.outer(err, U1[i, i + 1 :])
                E1[:, i] = err
        if i2 < k:
            W[:, i2:].addmm_(E1, U[i1:i2, i2:], alpha=-1.0)  # lazy batch update of all later columns
    return Q
