"""Per-row symmetric round-to-nearest quantization with clip search.

A weight matrix w [N, K] becomes int8 *symbols* in [-qmax, qmax] (qmax =
2^(bits-1) - 1; the asymmetric code -2^(bits-1) is never used, so the grid is
symmetric around 0) and one positive *scale* per row, or per row and group of
`group` consecutive columns (the last group may be partial):

    w_hat[n, k] = symbols[n, k] * scales[n, k // group]

The scale of a row/group is clip / qmax, where the clip threshold c comes from
one of CLIP_METHODS:

    absmax      c = max |w|                                  (no clipping)
    percentile  c = the p-th percentile of |w| (linear interpolation, as torch.quantile)
    sdclip      c = k * std(w)                               (population std)
    mse         c = r * max |w|, r in linspace(0.3, 1.0, n), the r minimizing
                sum_k col_weight[k] * (w - w_hat)^2          (col_weight = diag(H): Hessian-weighted RTN)

Scales are stored in a narrow float type (float16 by default). Rounding always
divides by the *stored* scale, widened back to float32, so `dequantize()` is
bit-for-bit what a decoder computes from the stored symbols and scales, and the
clip search measures the error of the scale that will actually ship.

Scale rules (what `scales_from_clip` does):
  * c == 0 (an all-zero row/group): scale = 1.0, symbols all 0.
  * otherwise scale = max(c / qmax, tiny), tiny = the smallest positive *normal*
    number of the scale dtype (6.1035e-05 for float16). Subnormal scales would
    lose relative precision and 0 would make the row undecodable; a row that
    small quantizes to zeros with |error| <= tiny / 2.
  * c / qmax above the scale dtype's range raises GolfpackError (use
    scale_dtype=torch.float32 for such tensors).

A method that yields c == 0 for a row that is not all zero (sdclip on a
constant row, a low percentile of a sparse row) falls back to absmax for that
row, so c == 0 exactly when the row/group is all zero.

Everything is computed in float32/float64 on the CPU, deterministically, without
touching the caller's tensors. `hessian_error` is the proxy the planner
minimizes: tr((W - W_hat) H (W - W_hat)^T).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from golfpack.errors import GolfpackError

CLIP_METHODS = ("absmax", "percentile", "sdclip", "mse")
DEFAULT_PARAMS = {"percentile": 99.99984, "sdclip": 3.0, "mse": 24}
MSE_RATIO_MIN = 0.3
MAX_MSE_CANDIDATES = 1000
SCALE_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# Work on about this many elements at a time in the clip search (bounds temporaries).
_CHUNK_ELEMENTS = 1 << 21


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _fmt(x: float) -> str:
    x = float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


@dataclass(frozen=True)
class ClipSpec:
    """How the clip threshold c of each row/group is chosen.

    method: one of CLIP_METHODS. param (None = the method's default):
      * absmax: no parameter.
      * percentile: p in (0, 100], default 99.99984 (the challenge baseline's
        INT8_CLIP_Q); c = p-th percentile of |w|. p = 100 is absmax.
      * sdclip: k > 0, default 3.0 (a generic choice); c = k * std(w)
        (population std, unbiased=False, of the row or group). Records that
        quote an SDClip k use units where step = k * std / qmax, i.e. exactly
        this c = k * std, so their k (e.g. "sdclip:12.85") passes unchanged.
        The clip is not capped at absmax (a large k just wastes range).
      * mse: number of candidate ratios n >= 2 (integer), default 24; the
        candidates are r * absmax for r in linspace(0.3, 1.0, n) (r = 1.0, i.e.
        absmax, is always one), the one with the least col_weight-weighted
        squared error wins (ties go to the larger r). Candidates whose scale would
        overflow the scale dtype are skipped, so mse picks the best *storable* clip
        where the other methods raise.
    """

    method: str = "absmax"
    param: float | None = None

    def __post_init__(self):
        if self.method not in CLIP_METHODS:
            raise GolfpackError(f"unknown clip method {self.method!r} (expected one of {', '.join(CLIP_METHODS)})")
        p = self.param
        if p is None:
            return
        if self.method == "absmax":
            raise GolfpackError(f"clip method absmax takes no parameter (got {p!r})")
        if not _is_number(p) or not math.isfinite(p):
            raise GolfpackError(f"clip {self.method} parameter must be a finite number (got {p!r})")
        if self.method == "percentile" and not 0 < p <= 100:
            raise GolfpackError(f"clip percentile must be in (0, 100] (got {p!r})")
        if self.method == "sdclip" and not p > 0:
            raise GolfpackError(f"clip sdclip k must be > 0 (got {p!r})")
        if self.method == "mse" and (float(p) != int(p) or not 2 <= p <= MAX_MSE_CANDIDATES):
            raise GolfpackError(
                f"clip mse parameter is the number of candidate ratios, an integer in [2, {MAX_MSE_CANDIDATES}] (got {p!r})"
            )

    @property
    def value(self):
        """The parameter in effect (the default when param is None); None for absmax."""
        if self.param is None:
            return DEFAULT_PARAMS.get(self.method)
        return int(self.param) if self.method == "mse" else float(self.param)

    def to_json(self) -> dict:
        p = self.param
        if p is not None:
            p = int(p) if self.method == "mse" else float(p)
        return {"method": self.method, "param": p}

    @classmethod
    def from_json(cls, d) -> "ClipSpec":
        if not isinstance(d, dict) or "method" not in d or set(d) - {"method", "param"}:
            raise GolfpackError(f"clip spec must be an object {{'method': ..., 'param': ...}} (got {d!r})")
        if not isinstance(d["method"], str):
            raise GolfpackError(f"clip method must be a string (got {d['method']!r})")
        return cls(d["method"], d.get("param"))

    def __str__(self) -> str:
        name = "pct" if self.method == "percentile" else self.method
        return name if self.param is None else f"{name}:{_fmt(self.param)}"

    @classmethod
    def parse(cls, s: str) -> "ClipSpec":
        """Inverse of str(): "absmax", "pct:99.9" / "percentile:99.9", "sdclip:12.85", "mse", "mse:24"."""
        if not isinstance(s, str):
            raise GolfpackError(f"clip spec must be a string (got {s!r})")
        name, sep, arg = s.strip().partition(":")
        method = {"pct": "percentile"}.get(name.strip().lower(), name.strip().lower())
        if method not in CLIP_METHODS:
            raise GolfpackError(f"unknown clip method in {s!r} (expected absmax, pct:P, sdclip:K or mse[:N])")
        if not sep:
            return cls(method)
        try:
            p = float(arg)
        except ValueError:
            raise GolfpackError(f"bad clip parameter in {s!r}") from None
        if method == "mse" and p.is_integer():
            p = int(p)
        return cls(method, p)


def qmax(bits: int) -> int:
    """Largest symbol magnitude of a `bits`-bit symmetric grid: 2^(bits-1) - 1."""
    if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 8:
        raise GolfpackError(f"bits must be an integer in 2..8 (got {bits!r})")
    return (1 << (bits - 1)) - 1


def _check_group(group) -> None:
    if group is not None and (not isinstance(group, int) or isinstance(group, bool) or group < 1):
        raise GolfpackError(f"group must be None or an integer >= 1 (got {group!r})")


def _num_groups(k: int, group: int | None) -> int | None:
    return None if group is None else -(-k // group)


def _as_weight(w, what: str = "w") -> torch.Tensor:
    """Validated float32 CPU copy-or-view of a 2-D float tensor (never modified in place)."""
    if not isinstance(w, torch.Tensor):
        raise GolfpackError(f"{what} must be a torch.Tensor (got {type(w).__name__})")
    if w.ndim != 2:
        raise GolfpackError(f"{what} must be 2-D [N, K] (got shape {tuple(w.shape)})")
    if not w.dtype.is_floating_point:
        raise GolfpackError(f"{what} must be a float tensor (got {w.dtype})")
    w32 = w.detach().to("cpu", torch.float32).contiguous()
    if not bool(torch.isfinite(w32).all()):
        raise GolfpackError(f"{what} has NaN or Inf entries (or values beyond float32 range)")
    return w32


def _check_scale_dtype(scale_dtype) -> None:
    if scale_dtype not in SCALE_DTYPES:
        raise GolfpackError(f"scale_dtype must be one of float16, bfloat16, float32 (got {scale_dtype})")


def _stored_scales(c: torch.Tensor, q: int, scale_dtype) -> torch.Tensor:
    """Scales in scale_dtype from clip thresholds (float32, >= 0); overflow gives inf (caller checks)."""
    tiny = torch.finfo(scale_dtype).tiny
    s = (c.to(torch.float64) / q).clamp_min(tiny)
    s = torch.where(c == 0, torch.ones_like(s), s)
    return s.to(scale_dtype)


def scales_from_clip(c: torch.Tensor, bits: int, scale_dtype=torch.float16) -> torch.Tensor:
    """Stored scales (scale_dtype, same shape as c): 1.0 where c == 0, else max(c / qmax, tiny).

    tiny is the smallest positive normal number of scale_dtype. Raises GolfpackError when a
    scale exceeds scale_dtype's range (suggesting float32) or c is negative / not finite.
    """
    q = qmax(bits)
    _check_scale_dtype(scale_dtype)
    if not isinstance(c, torch.Tensor) or not c.dtype.is_floating_point:
        raise GolfpackError("clip thresholds must be a float tensor")
    c = c.detach().to("cpu", torch.float32)
    if not bool(torch.isfinite(c).all()) or bool((c < 0).any()):
        raise GolfpackError("clip thresholds must be finite and >= 0")
    s = _stored_scales(c, q, scale_dtype)
    if not bool(torch.isfinite(s).all()):
        worst = float(c.max()) / q
        hint = " use scale_dtype=torch.float32" if scale_dtype != torch.float32 else ""
        raise GolfpackError(
            f"scale {worst:.6g} overflows {str(scale_dtype).replace('torch.', '')} "
            f"(max {torch.finfo(scale_dtype).max:.6g});{hint}"
        )
    return s


def _expand_scales(scales: torch.Tensor, n: int, k: int, group: int | None) -> torch.Tensor:
    """Scales broadcast to [N, K] (float64 view/copy of the stored values)."""
    s = scales.to(torch.float64)
    if group is None:
        return s.reshape(n, 1).expand(n, k)
    return s.repeat_interleave(group, dim=1)[:, :k]


def _check_scales(scales, n: int, k: int, group: int | None) -> None:
    if not isinstance(scales, torch.Tensor) or not scales.dtype.is_floating_point:
        raise GolfpackError("scales must be a float tensor")
    want = (n,) if group is None else (n, _num_groups(k, group))
    if tuple(scales.shape) != want:
        raise GolfpackError(f"scales have shape {tuple(scales.shape)}, expected {want} for w [{n}, {k}], group={group}")
    sf = scales.detach().to("cpu", torch.float32)
    if not bool(torch.isfinite(sf).all()) or bool((sf <= 0).any()):
        raise GolfpackError("scales must be finite and > 0")


def _round_clamp(x: torch.Tensor, s: torch.Tensor, q: int) -> torch.Tensor:
    # float64 division: for float32 w and float16/32 scales the exact quotient cannot round
    # onto a false .5 tie in float64, so this is the correctly rounded symbol, and GPTQ (which
    # works in float64) reproduces RTN exactly when its error feedback vanishes.
    return torch.round(x.to(torch.float64) / s).clamp_(-q, q)


def quantize_with_scales(w: torch.Tensor, scales: torch.Tensor, bits: int, group: int | None = None) -> torch.Tensor:
    """int8 symbols clamp(round(w / scales), -qmax, qmax), scales as stored (widened exactly).

    scales: [N] (group None) or [N, ceil(K / group)], positive and finite. round is
    half-to-even.
    """
    q = qmax(bits)
    _check_group(group)
    w32 = _as_weight(w)
    n, k = w32.shape
    _check_scales(scales, n, k, group)
    s = _expand_scales(scales.detach().cpu(), n, k, group)
    return _round_clamp(w32, s, q).to(torch.int8)


@dataclass
class QuantResult:
    """Symbols int8 [N, K] and scales [N] (group None) or [N, ceil(K / group)] of one matrix."""

    symbols: torch.Tensor
    scales: torch.Tensor
    bits: int
    group: int | None

    def dequantize(self) -> torch.Tensor:
        """float32 [N, K]: symbols * scales per row / per group (the last group may be partial)."""
        n, k = self.symbols.shape
        s = self.scales.to(torch.float32)
        if self.group is None:
            return self.symbols.to(torch.float32) * s.reshape(n, 1)
        return self.symbols.to(torch.float32) * s.repeat_interleave(self.group, dim=1)[:, :k]


def _segments(k: int, group: int | None):
    """(start, stop, n_groups, length) column blocks whose groups all have `length` columns."""
    if group is None:
        return [(0, k, 1, k)] if k > 0 else []
    full = k // group
    out = []
    if full:
        out.append((0, full * group, full, group))
    if k % group:
        out.append((full * group, k, 1, k % group))
    return out


def _percentile_abs(a: torch.Tensor, p: float) -> torch.Tensor:
    """p-th percentile along the last dim of a (= |w| >= 0), computed as torch.quantile does
    (float32 rank, linear interpolation) but via sort: torch.quantile caps the input size."""
    length = a.shape[-1]
    srt = torch.sort(a, dim=-1).values
    rank = torch.tensor(p / 100.0, dtype=torch.float32) * (length - 1)
    lo = int(torch.floor(rank))
    hi = min(int(torch.ceil(rank)), length - 1)
    weight = rank - lo
    return torch.lerp(srt[..., lo], srt[..., hi], weight)


def _mse_clip(x: torch.Tensor, cw: torch.Tensor, amax: torch.Tensor, n_cand: int, q: int, scale_dtype) -> torch.Tensor:
    """x [R, g, L] float32, cw [g, L] float64 >= 0, amax [R, g]: the best r * amax per (row, group)."""
    ratios = torch.linspace(MSE_RATIO_MIN, 1.0, n_cand, dtype=torch.float64).tolist()
    ratios[-1] = 1.0  # absmax is always a candidate, so mse is never worse than absmax
    x64 = x.to(torch.float64)
    best_err = torch.full(amax.shape, math.inf, dtype=torch.float64)
    best_c = amax.clone()
    for r in reversed(ratios):  # descending, strict improvement only: ties go to the larger clip
        c = (amax * r) if r != 1.0 else amax
        s = _stored_scales(c, q, scale_dtype).to(torch.float64)  # the scale that would be stored
        ok = torch.isfinite(s)
        s_safe = torch.where(ok, s, torch.ones_like(s)).unsqueeze(-1)
        deq = _round_clamp(x, s_safe, q).mul_(s_safe)
        err = ((x64 - deq).square_() * cw).sum(-1)
        err = torch.where(ok, err, torch.full_like(err, math.inf))
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_c = torch.where(better, c, best_c)
    return best_c


def clip_thresholds(
    w, bits: int, clip: ClipSpec = ClipSpec(), group: int | None = None, col_weight=None, *, scale_dtype=torch.float16
) -> torch.Tensor:
    """Clip thresholds c >= 0, float32 [N] (group None) or [N, ceil(K / group)].

    col_weight ([K], finite, >= 0; default ones) weights the squared error of each
    column in the mse search and is ignored by every other method. scale_dtype matters
    only to mse, which measures each candidate's error with the scale as it will be
    stored; pass the dtype later given to scales_from_clip.
    """
    q = qmax(bits)
    _check_group(group)
    _check_scale_dtype(scale_dtype)
    if not isinstance(clip, ClipSpec):
        raise GolfpackError(f"clip must be a ClipSpec (got {type(clip).__name__})")
    w32 = _as_weight(w)
    n, k = w32.shape
    g_total = 1 if group is None else _num_groups(k, group)
    cw = None
    if clip.method == "mse":
        if col_weight is None:
            cw = torch.ones(k, dtype=torch.float64)
        else:
            if not isinstance(col_weight, torch.Tensor) or not col_weight.dtype.is_floating_point:
                raise GolfpackError("col_weight must be a float tensor")
            cw = col_weight.detach().to("cpu", torch.float64).reshape(-1)
            if cw.numel() != k:
                raise GolfpackError(f"col_weight has {cw.numel()} entries, expected K = {k}")
            if not bool(torch.isfinite(cw).all()) or bool((cw < 0).any()):
                raise GolfpackError("col_weight must be finite and >= 0")
    out = torch.zeros(n, g_total, dtype=torch.float32)
    g0 = 0
    for start, stop, g, length in _segments(k, group):
        rows = max(1, _CHUNK_ELEMENTS // (g * length))
        for r0 in range(0, n, rows):
            x = w32[r0 : r0 + rows, start:stop].reshape(-1, g, length)
            a = x.abs()
            amax = a.amax(-1)
            if clip.method == "absmax":
                c = amax
            elif clip.method == "percentile":
                c = _percentile_abs(a, clip.value)
            elif clip.method == "sdclip":
                std = x.to(torch.float64).std(dim=-1, correction=0)
                std = torch.where(amax == 0, 0, std)
                std = torch.where(x.amax(-1) == x.amin(-1), 0, std)  # constant: no spurious rounding std
                c = (clip.value * std).to(torch.float32)
            else:
                c = _mse_clip(x, cw[start:stop].reshape(g, length), amax, clip.value, q, scale_dtype)
            c = torch.where(c > 0, c, amax)  # c == 0 only for all-zero rows/groups
            out[r0 : r0 + rows, g0 : g0 + g] = c
        g0 += g
    return out.reshape(n) if group is None else out


def quantize_rtn(
    w, bits: int, clip: ClipSpec = ClipSpec(), group: int | None = None, col_weight=None, scale_dtype=torch.float16
) -> QuantResult:
    """Round-to-nearest quantization of w [N, K] with per-row (or per-group) clipped scales.

    col_weight is used only by the mse clip search (pass diag(H) for Hessian-weighted RTN).
    """
    c = clip_thresholds(w, bits, clip, group, col_weight, scale_dtype=scale_dtype)
    scales = scales_from_clip(c, bits, scale_dtype)
    symbols = quantize_with_scales(w, scales, bits, group)
    return QuantResult(symbols=symbols, scales=scales, bits=bits, group=group)


def hessian_error(w, w_hat, H) -> float:
    """tr((W - W_hat) H (W - W_hat)^T) in float64: the output error a calibration Hessian
    H = mean(x x^T) [K, K] predicts for replacing W [N, K] by W_hat."""
    if not all(isinstance(t, torch.Tensor) for t in (w, w_hat, H)):
        raise GolfpackError("hessian_error takes torch tensors")
    if w.ndim != 2 or w.shape != w_hat.shape:
        raise GolfpackError(f"w and w_hat must be 2-D of the same shape (got {tuple(w.shape)} and {tuple(w_hat.shape)})")
    k = w.shape[1]
    if tuple(H.shape) != (k, k):
        raise GolfpackError(f"H must be [{k}, {k}] (got {tuple(H.shape)})")
    d = w.detach().to("cpu", torch.float64) - w_hat.detach().to("cpu", torch.float64)
    return float(((d @ H.detach().to("cpu", torch.float64)) * d).sum())
