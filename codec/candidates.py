"""Per-tensor candidates: every way the planner may store one tensor, with its predicted cost.

A candidate is a `Choice` (method, bits, clip, clip multiplier, prune
fraction, LQER rank) plus what it costs:

    dloss        predicted loss increase in nats/token (calib.TensorStats.predict: the K-FAC /
                 Hessian-weighted error, plus the part of a positive first-order term that
                 calibration noise cannot explain: TensorStats.planning_cost; the planner
                 minimizes the sum of these)
    first_order  <grad, dW> on the calibration tokens (reported beside dloss)
    est_bytes    the symbols as one rANS stream + 2 bytes per fp16 scale (+ the LQER factors'
                 streams): an upper bound of what the container stores, which keeps the smallest
                 of several coders per stream

Generation is staged to keep GPTQ's cost down: RTN over the whole grid
(bits x clip multipliers), then GPTQ on the RTN lower convex hull only, then
LQER and pruning variants of the hull. The clip of a candidate is the
Hessian-weighted MSE-optimal clip of its bit width times a multiplier >= 1:
multipliers 2^(1/3) and 2^(2/3) give steps a third of a bit apart, so each
tensor's rate can be set finely (a larger step spends fewer bits at the same
nominal width, which is what SDClip's k does in the records).

The second family, "ecsq:beta" x step, is entropy-coded scalar quantization: the
step (in units of the tensor's std) sets the rate and the clip is wide (qmax
steps), since an entropy coder makes the rarely used outer levels cheap. Rows get
steps shaped by their importance I_i (the row's share of the K-FAC loss
coefficients): step_i ~ (I_i / mean I)^(-beta / 2), geometric mean 1. beta = 1 is
the high-rate rate-distortion optimum under the K-FAC model (equal marginal loss
per bit on every row); beta = 0.5 hedges against the model's errors and measured
best on the GPU-trained 9x512 (benchmarks/RESULTS.md, issue 18). The scales are
ordinary per-row scales, so the format and the decoders do not change.

So that GPTQ runs on few candidates, the RTN grid of both families is screened
first with the diagonal of the K-FAC quadratic (TensorStats.predict_diag) and the
order-0 entropy of the symbols; only the screen's lower hull is predicted exactly
and handed to GPTQ, all of a tensor's GPTQ jobs in one batched column loop
(codec.gptq.gptq_quantize_batch).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from golfpack.errors import GolfpackError


@dataclass(frozen=True)
class Choice:
    method: str  # "rtn" | "gptq" | "keep" (source symbols / floats, exact) | "float" (store floats) | "float16"
    bits: int = 0
    clip: str = ""  # codec.quant.ClipSpec as text
    clip_mult: float = 1.0
    prune: float = 0.0  # fraction of the tensor's symbols zeroed by magnitude after quantization
    rank: int = 0  # LQER rank (0: none)
    lr_bits: int = 0
    rate_lam: float = 0.0  # rate-aware rounding's price of a bit, nats/token (0: plain rounding)

    def label(self) -> str:
        if self.method in ("keep", "float", "float16"):
            return self.method
        if is_ecsq(self.clip):
            s = f"{self.method} int{self.bits} {self.clip} step {self.clip_mult:.3g}sd"
        else:
            s = f"{self.method} int{self.bits} {self.clip}"
            if self.clip_mult != 1.0:
                s += f"x{self.clip_mult:.3g}"
        if self.rate_lam:
            s += f" rate {self.rate_lam:.3g}"
        if self.rank:
            s += f" lqer r{self.rank}@{self.lr_bits}b"
        if self.prune:
            s += f" prune {self.prune:.3%}"
        return s

    def to_json(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if v not in (0, 0.0, "") or k == "method"}
        if d.get("clip_mult") == 1.0:
            d.pop("clip_mult")
        if "clip_mult" in d:
            d["clip_mult"] = round(d["clip_mult"], 6)
        if "prune" in d:
            d["prune"] = round(d["prune"], 6)
        if "rate_lam" in d:
            d["rate_lam"] = float(f"{d['rate_lam']:.6g}")
        return d


@dataclass
class Candidate:
    choice: Choice
    dloss: float
    first_order: float
    est_bytes: int
    q: object = None  # codec.quant.QuantResult (quantized choices)
    lowrank: object = None  # codec.lqer.LowRank
    values: object = None  # float choices: the tensor to store instead of the source's (codec.tune)


def rans_bytes(symbols: torch.Tensor) -> int:
    """Size of int8 symbols as one golfpack rANS stream (0 for none: an empty tensor adds nothing
    worth estimating)."""
    from golfpack.codec.prune import symbol_bytes

    return symbol_bytes(symbols) if symbols.numel() else 0


def quant_bytes(q, lowrank=None) -> int:
    n = rans_bytes(q.symbols) + 2 * q.scales.numel()
    if lowrank is not None:
        n += rans_bytes(lowrank.a_t.symbols) + rans_bytes(lowrank.b.symbols) + 2 * (
            lowrank.a_t.scales.numel() + lowrank.b.scales.numel())
    return n


# codec.byte_model pricing (TensorCandidates.reprice): a candidate another beats on dloss at less
# than (1 - REPRICE_MARGIN) of its order-0 bytes is not priced (the model saves at most ~3.5% on the
# 9x512's tensors); the classes come from a real rans_rc fit of the candidate nearest ANCHOR_BITS
# (int6 classes priced 3..7-bit candidates within 0.8% per tensor, RESULTS.md issue 19).
REPRICE_MARGIN = 0.06
ANCHOR_BITS = 6


def priced_bytes(q, lowrank=None, classes=None) -> int:
    """What the writer stores for a quantized candidate, by codec.byte_model: symbols priced with
    the rans_rc cell model (with `classes`, those of a fit of another candidate of the tensor), the
    scales exactly as stored (float16, the writer's best coder); LQER factors likewise, without
    classes (their streams are small)."""
    from golfpack.codec import byte_model

    def part(p, cl=None) -> int:
        return byte_model.tensor_bytes(p.symbols, p.scales.to(torch.float16), cl)

    n = part(q, classes)
    if lowrank is not None:
        n += part(lowrank.a_t) + part(lowrank.b)
    return n


def h0_bytes(symbols: torch.Tensor) -> float:
    """Order-0 entropy of int8 symbols in bytes (what a static rANS stream costs, before its table)."""
    if symbols.numel() == 0:
        return 0.0
    c = torch.bincount(symbols.reshape(-1).to(torch.int64) + 128, minlength=256).to(torch.float64)
    p = c[c > 0] / symbols.numel()
    return float(-(p * torch.log2(p)).sum()) * symbols.numel() / 8


ECSQ = "ecsq"


def is_ecsq(clip: str) -> bool:
    return clip.startswith(ECSQ + ":")


def row_importance(stats, n: int, k: int) -> torch.Tensor | None:
    """float64 [N]: each row's sum of the K-FAC diagonal loss coefficients (codec.rate.element_weights
    at unit scale), None without statistics."""
    if stats is None or (stats.H is None and stats.F_lookup is None):
        return None
    out = torch.zeros(n, dtype=torch.float64)
    if stats.H is not None:
        g = stats.G.reshape(n) if stats.G is not None else torch.ones(n, dtype=torch.float64)
        out += 0.5 * stats.rows_per_token * g * float(torch.diagonal(stats.H).sum())
    if stats.F_lookup is not None:
        out += 0.5 * stats.F_lookup.reshape(n, k).sum(1)
    return out


def step_shape(importance: torch.Tensor | None, n: int, beta: float) -> torch.Tensor:
    """float64 [N] row step multipliers (I_i / mean I)^(-beta / 2) with geometric mean 1 (ones without
    statistics or at beta 0). Rows the calibration never reached (I = 0) are treated as 1e-4 of the
    mean, so they get the coarsest steps without an infinite one."""
    if importance is None or beta == 0 or n == 0:
        return torch.ones(n, dtype=torch.float64)
    mean = float(importance.mean())
    if not mean > 0:
        return torch.ones(n, dtype=torch.float64)
    rel = (importance / mean).clamp_min(1e-4)
    r = rel.pow(-beta / 2)
    return r / torch.exp(torch.log(r).mean())


def lower_hull(cands: list[Candidate]) -> list[Candidate]:
    """The candidates on the lower convex hull of (est_bytes, dloss), by increasing bytes
    (decreasing dloss). These are the only ones a Lagrangian trade-off ever picks."""
    pts = sorted(cands, key=lambda c: (c.est_bytes, c.dloss))
    # drop dominated points (more bytes, no less loss)
    front = []
    for c in pts:
        if not front or c.dloss < front[-1].dloss:
            front.append(c)
    hull: list[Candidate] = []
    for c in front:
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # keep b only if it lies strictly below the segment a-c
            cross = (b.est_bytes - a.est_bytes) * (c.dloss - a.dloss) - (b.dloss - a.dloss) * (c.est_bytes - a.est_bytes)
            if cross <= 0:
                hull.pop()
            else:
                break
        hull.append(c)
    return hull


class TensorCandidates:
    """Generates and holds one tensor's candidates."""

    def __init__(self, name: str, w: torch.Tensor, stats=None, kappa: float = 1.0, gptq_cfg=None):
        self.name = name
        self.shape = tuple(w.shape)
        self.w = w.detach().to(torch.float32).reshape(w.shape[0], -1).contiguous()
        self.stats = stats
        self.kappa = kappa  # dloss per unit squared error when there are no statistics
        self.gptq_cfg = gptq_cfg
        self.cands: list[Candidate] = []
        self._clips: dict = {}

    # -- cost of an approximation
    def cost(self, w_hat: torch.Tensor) -> tuple[float, float]:
        d = w_hat.reshape(self.w.shape).to(torch.float32) - self.w
        if self.stats is None:
            return self.kappa * float(d.to(torch.float64).pow(2).sum()), 0.0
        dl, fo = self.stats.predict_fast(d), self.stats.first_order(d)
        return self.stats.planning_cost(dl, fo), fo

    def _col_weight(self):
        return None if self.stats is None else self.stats.col_weight()

    def _scales(self, bits: int, clip: str, mult: float):
        from golfpack.codec.quant import ClipSpec, clip_thresholds, qmax, scales_from_clip

        if is_ecsq(clip):  # step = mult * std(tensor) * the row shape; clip = qmax steps
            beta = float(clip.split(":", 1)[1])
            key = (ECSQ, beta)
            if key not in self._clips:
                n, k = self.w.shape
                std = float(self.w.to(torch.float64).std(correction=0)) if self.w.numel() > 1 else 0.0
                shape = step_shape(row_importance(self.stats, n, k), n, beta)
                self._clips[key] = (std * shape).to(torch.float32)
            return scales_from_clip(self._clips[key] * (mult * qmax(bits)), bits)
        key = (bits, clip)
        if key not in self._clips:
            self._clips[key] = clip_thresholds(self.w, bits, ClipSpec.parse(clip), None, self._col_weight())
        return scales_from_clip(self._clips[key] * mult, bits)

    def screen(self, specs) -> list[tuple[tuple[int, str, float], float, float]]:
        """(spec, diagonal-predicted dloss, estimated bytes) of RTN at each (bits, clip, mult) spec:
        the cheap first pass of candidate generation (module docstring). Symbols are those of
        codec.quant.quantize_with_scales (float64 quotient, half-to-even rounding)."""
        from golfpack.codec.quant import qmax

        n = self.w.shape[0]
        w64 = self.w.to(torch.float64)
        coef = None  # [N, K] float64 diagonal loss coefficients (TensorStats.predict_diag)
        if self.stats is not None:
            coef = torch.zeros_like(w64)
            if self.stats.H is not None:
                g = self.stats.G if self.stats.G is not None else torch.ones(n, dtype=torch.float64)
                coef += (0.5 * self.stats.rows_per_token) * g.reshape(n, 1) * torch.diagonal(self.stats.H).reshape(1, -1)
            if self.stats.F_lookup is not None:
                coef += 0.5 * self.stats.F_lookup.reshape(coef.shape)
        out = []
        for spec in specs:
            bits, clip, mult = spec
            scales = self._scales(bits, clip, mult)
            s = scales.to(torch.float64).reshape(n, 1)
            sym = torch.round(w64 / s).clamp_(-qmax(bits), qmax(bits))
            d2 = (sym * s).sub_(w64).square_()
            dl = self.kappa * float(d2.sum()) if coef is None else float((d2 * coef).sum())
            out.append((spec, dl, h0_bytes(sym.to(torch.int8)) + 2 * scales.numel()))
        return out

    def add_gptq_many(self, specs, device=None) -> list[Candidate]:
        """GPTQ candidates at several (bits, clip, mult) specs, in one batched column loop."""
        from golfpack.codec.gptq import GPTQConfig, GPTQJob, gptq_quantize_batch

        if self.stats is None or self.stats.H is None:
            raise GolfpackError(f"{self.name}: GPTQ needs calibration statistics (an input Hessian)")
        specs = list(specs)
        jobs = [GPTQJob(b, self._scales(b, clip, m)) for b, clip, m in specs]
        qs = gptq_quantize_batch(self.w, self.stats.H, jobs, self.gptq_cfg or GPTQConfig(), device=device)
        return [self._finish(Choice("gptq", b, clip, float(m)), q) for (b, clip, m), q in zip(specs, qs)]

    def _finish(self, choice: Choice, q, lowrank=None) -> Candidate:
        w_hat = q.dequantize()
        if lowrank is not None:
            w_hat = w_hat + lowrank.product()
        dl, fo = self.cost(w_hat)
        c = Candidate(choice, dl, fo, quant_bytes(q, lowrank), q, lowrank)
        self.cands.append(c)
        return c

    # -- generators
    def add_quantized(self, method: str, bits: int, clip: str = "mse", mult: float = 1.0) -> Candidate:
        from golfpack.codec.quant import QuantResult, quantize_with_scales

        scales = self._scales(bits, clip, mult)
        if method == "gptq":
            if self.stats is None or self.stats.H is None:
                raise GolfpackError(f"{self.name}: GPTQ needs calibration statistics (an input Hessian)")
            from golfpack.codec.gptq import GPTQConfig, gptq_quantize

            q = gptq_quantize(self.w, self.stats.H, bits, cfg=self.gptq_cfg or GPTQConfig(), scales=scales)
        elif method == "rtn":
            q = QuantResult(quantize_with_scales(self.w, scales, bits), scales, bits, None)
        else:
            raise GolfpackError(f"unknown quantization method {method!r} (rtn or gptq)")
        return self._finish(Choice(method, bits, clip, float(mult)), q)

    def add_rate_aware(self, base: Candidate, lam: float) -> Candidate:
        """The base candidate (same method, bits and scales) re-rounded rate-aware at lam nats/token
        per bit, with code lengths from the model that stores the base's own symbols: the rans_rc
        row x column cell tables fitted to them (codec.rate.cell_code_lengths)."""
        from golfpack.codec.quant import QuantResult
        from golfpack.codec.rate import RateTerm, cell_code_lengths, element_weights, row_weights, rtn_rate_aware

        ch, q = base.choice, base.q
        if q is None or q.group is not None or ch.method not in ("rtn", "gptq") or q.symbols.numel() == 0:
            raise GolfpackError(f"{self.name}: rate-aware rounding applies to non-empty per-row rtn/gptq candidates")
        lengths, cells = cell_code_lengths(q.symbols, q.bits)
        if ch.method == "gptq":
            from golfpack.codec.gptq import GPTQConfig, gptq_quantize

            n = self.w.shape[0]
            q2 = gptq_quantize(self.w, self.stats.H, q.bits, cfg=self.gptq_cfg or GPTQConfig(), scales=q.scales,
                               rate=RateTerm(lam, lengths, cells), row_weight=row_weights(self.stats, n))
        else:
            wt = element_weights(self.stats, q.scales, tuple(self.w.shape), self.kappa)
            q2 = QuantResult(rtn_rate_aware(self.w, q.scales, q.bits, wt, lam, lengths=lengths, cells=cells),
                             q.scales, q.bits, None)
        new = Choice(ch.method, ch.bits, ch.clip, ch.clip_mult, ch.prune, ch.rank, ch.lr_bits, float(lam))
        return self._finish(new, q2)

    def add_pruned(self, base: Candidate, fraction: float) -> Candidate:
        from golfpack.codec.prune import prune_symbols
        from golfpack.codec.quant import QuantResult

        q = base.q
        sym = prune_symbols(q.symbols, self.w, fraction)
        pq = QuantResult(sym, q.scales, q.bits, q.group)
        ch = Choice(base.choice.method, base.choice.bits, base.choice.clip, base.choice.clip_mult,
                    float(fraction), base.choice.rank, base.choice.lr_bits, base.choice.rate_lam)
        return self._finish(ch, pq, base.lowrank)

    def add_lqer(self, base: Candidate, ranks, bits: int) -> list[Candidate]:
        """LQER variants of a candidate, one per rank. One SVD serves every rank: the rank-r
        factors are the first r columns of the largest rank's (truncated SVD)."""
        from golfpack.codec.lqer import fit_lowrank, quantize_lowrank

        ranks = sorted({int(r) for r in ranks if 1 <= int(r) <= min(self.w.shape)})
        if not ranks:
            return []
        H = None if self.stats is None else self.stats.H
        G = None if self.stats is None else self.stats.G
        A, B = fit_lowrank(self.w - base.q.dequantize(), ranks[-1], H, G)
        out = []
        for r in ranks:
            lr = quantize_lowrank(A[:, :r], B[:r], bits)
            ch = Choice(base.choice.method, base.choice.bits, base.choice.clip, base.choice.clip_mult,
                        base.choice.prune, r, bits, base.choice.rate_lam)
            out.append(self._finish(ch, base.q, lr))
        return out

    def add_fixed(self, choice: Choice, est_bytes: int, dloss: float = 0.0) -> Candidate:
        c = Candidate(choice, dloss, 0.0, est_bytes)
        self.cands.append(c)
        return c

    def hull(self) -> list[Candidate]:
        return lower_hull(self.cands)

    # -- pricing with the writer's coder
    def reprice(self, margin: float = REPRICE_MARGIN) -> int:
        """Re-estimate est_bytes of the quantized candidates that could sit on the lower hull
        with codec.byte_model (the rans_rc cell model the writer uses, priced with the classes of
        one real fit of this tensor's mid-width candidate) instead of the order-0 rANS bound.
        Returns how many candidates were priced.

        The byte model only lowers an estimate (it is a min over raw, order-0 and rans_rc), by at
        most a few percent on real weights (benchmarks/RESULTS.md, issue 19), so a candidate that
        another beats on dloss at less than (1 - margin) of its bytes stays off the hull and is not
        priced: that keeps the cost to the hull's neighbourhood (10-80 ms a candidate)."""
        from golfpack.codec import byte_model

        pts = sorted(self.cands, key=lambda c: (c.dloss, c.est_bytes))
        todo, best = [], None  # best: the fewest bytes among candidates at most as lossy
        for c in pts:
            if c.q is not None and c.q.symbols.numel() and (best is None or best > (1 - margin) * c.est_bytes):
                todo.append(c)
            best = c.est_bytes if best is None else min(best, c.est_bytes)
        if not todo:
            return 0
        anchor = min(todo, key=lambda c: (c.choice.method != "gptq", abs(c.q.bits - ANCHOR_BITS), c.dloss))
        classes = byte_model.fit_classes(anchor.q.symbols) if anchor.q.symbols.dim() == 2 else None
        for c in todo:
            c.est_bytes = priced_bytes(c.q, c.lowrank, classes)
        return len(todo)
