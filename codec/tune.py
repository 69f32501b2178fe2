"""Distillation of a quantized plan's free parameters: the stored scales and float tensors.

After the planner has chosen every tensor's symbols, some of what the artifact stores is still
continuous and costs the same bytes whatever its value: each quantized tensor's float16 row (or
group) scales, and the float tensors (control vectors, skip weights). `tune` moves them to
minimize the KL divergence from the float model's next-token distribution to the quantized
model's on the calibration sequences (Adam on log-scale offsets and on the float values), then
rounds them back to the dtypes the plan stores. The symbols, and so the entropy-coded bulk of
the artifact, are unchanged.

This repairs what per-tensor quantization cannot see: errors that add up across layers and
scales that GPTQ fixed before it moved the weights. On the GPU-trained 9x512 it lowered val_bpb
by 0.0013 at 7.37 MB, about an eighth of the quantization gap (benchmarks/RESULTS.md, issue 18).

With `rounding` on (opt-in), the symbols move too: each quantized weight gets a continuous
offset r, the forward pass uses the symbol q + round(r) (a straight-through estimator: the
gradient of round is taken as 1), and r is bounded so that a symbol can only move one step
toward zero (q > 0: r in [-1, 0]; q < 0: [0, 1]; q = 0 stays). That is learned rounding against
the same distillation loss; moving toward zero never widens the symbols' range and, on the
peaked distributions GPTQ leaves, shortens their code, so the artifact does not grow with it.
Adam's step is about lr whatever the gradient's size, so r crosses 1/2 only where the gradient
keeps one sign over many batches: noise flips few symbols.

The last `holdout` sequences are not trained on: after every epoch the KL on them is measured and
the values of the epoch where it was lowest are returned (early stopping); they are kept only if
they lower it below the untuned plan's, so tuning never makes a plan worse on tokens it did not fit.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from golfpack.errors import GolfpackError

# Teacher log-probabilities are cached when they take at most this many bytes, else recomputed.
CACHE_BYTES = 256 << 20


@dataclass(frozen=True)
class TuneConfig:
    """epochs over the training part of the calibration sequences (0: no tuning); lr of Adam (the
    scales move in log space, so lr is a relative step); batch sequences per step; holdout: the
    fraction of the sequences kept back for the accept check (at least one sequence); round_lr:
    Adam learning rate of the rounding offsets (0: symbols fixed; module docstring)."""

    epochs: float = 4.0
    lr: float = 1e-3
    batch: int = 8
    holdout: float = 0.125
    device: str | None = None
    round_lr: float = 0.0

    def __post_init__(self):
        for name, v, lo in (("epochs", self.epochs, 0), ("lr", self.lr, 0), ("holdout", self.holdout, 0),
                            ("round_lr", self.round_lr, 0)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < lo:
                raise GolfpackError(f"tune {name} must be a finite number >= {lo} (got {v!r})")
        if not 0 < self.holdout < 1:
            raise GolfpackError(f"tune holdout must be a fraction in (0, 1) (got {self.holdout!r})")
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise GolfpackError(f"tune batch must be an integer >= 1 (got {self.batch!r})")


@dataclass
class TuneResult:
    scales: dict  # name -> tuned scales (the stored dtype, the stored shape)
    floats: dict  # name -> tuned float values (float32; the caller stores them in the plan's dtype)
    kl_before: float  # mean KL (nats/token) on the held-out sequences
    kl_after: float  # at the epoch kept (kl_before when no epoch lowered it)
    steps: int  # optimizer steps of the values returned (0: the untuned values)
    seconds: float
    symbols: dict = None  # name -> int8 symbols that differ from the plan's (rounding on; else empty)
    flipped: int = 0  # symbols changed in all

    @property
    def improved(self) -> bool:
        return self.kl_after < self.kl_before


def _kl(teacher_logp: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    s = F.log_softmax(student_logits.float(), dim=-1)
    return (teacher_logp.exp() * (teacher_logp - s)).sum(-1).mean()


def tune(teacher, quantized: dict, floats: dict, frozen: dict, seqs: torch.Tensor, cfg: TuneConfig,
         progress=None) -> TuneResult:
    """Distill (module docstring).

    teacher: the float model (a golfpack GPT; left unchanged). quantized: name -> (symbols [N, K]
    int8, scales [N] or [N, G], lowrank product [N, K] or None, group size or None, the weight's
    shape);
    floats: name -> float tensor (tuned); frozen: name -> tensor (every other state-dict entry, as
    decoded). seqs: int64 [n, T + 1] calibration sequences (inputs [:, :-1]).
    """
    from torch.func import functional_call

    t0 = time.perf_counter()
    n = int(seqs.shape[0])
    if n < 2:
        raise GolfpackError(f"tuning needs at least 2 calibration sequences (got {n})")
    n_hold = max(1, int(round(n * cfg.holdout)))
    train, hold = seqs[: n - n_hold], seqs[n - n_hold :]
    dev = torch.device(cfg.device) if cfg.device else next(teacher.parameters()).device
    teacher = teacher.float().eval().to(dev)
    for p in teacher.parameters():
        p.requires_grad_(False)
    syms, base, lows, groups = {}, {}, {}, {}
    shapes = {}
    for name, (sym, scales, low, group, shape) in quantized.items():
        shapes[name] = tuple(shape)
        syms[name] = sym.to(dev, torch.float32)
        base[name] = scales.to(dev, torch.float32)
        lows[name] = None if low is None else low.to(dev, torch.float32)
        groups[name] = group
    u = {name: torch.zeros_like(s, requires_grad=True) for name, s in base.items()}
    fl = {name: t.detach().to(dev, torch.float32).clone().requires_grad_(True) for name, t in floats.items()}
    fixed = {name: t.to(dev) for name, t in frozen.items()}
    params = list(u.values()) + list(fl.values())
    if not params:
        raise GolfpackError("nothing to tune: the plan stores no scales and no float tensors")
    groups_ = [{"params": params, "lr": cfg.lr}]
    # rounding offsets: only for the symbols that can move toward zero (module docstring)
    signs = {name: torch.sign(sym) for name, sym in syms.items()} if cfg.round_lr > 0 else {}
    r = {name: torch.zeros_like(sym, requires_grad=True) for name, sym in signs.items()}
    if r:
        groups_.append({"params": list(r.values()), "lr": cfg.round_lr})
    opt = torch.optim.Adam(groups_)

    def moved(name: str) -> torch.Tensor:
        """The symbols with their rounding offsets applied, straight through (forward: rounded)."""
        x = r[name]
        return syms[name] + x + (torch.round(x) - x).detach()

    def bound_offsets() -> None:
        # q > 0: r in [-1, 0]; q < 0: r in [0, 1]; q = 0: r = 0
        with torch.no_grad():
            for name, x in r.items():
                sg = signs[name]
                x.copy_(-sg * (-sg * x).clamp(0.0, 1.0))

    def weights() -> dict:
        out = dict(fixed)
        out.update(fl)
        for name, sym in syms.items():
            if name in r:
                sym = moved(name)
            s = base[name] * torch.exp(u[name])
            if groups[name] is None:
                w = sym * s.reshape(s.shape[0], *([1] * (sym.dim() - 1)))
            else:
                w = sym * s.repeat_interleave(groups[name], dim=1)[:, : sym.shape[1]]
            out[name] = (w if lows[name] is None else w + lows[name]).reshape(shapes[name])
        return out

    def batches(part: torch.Tensor):
        for b0 in range(0, part.shape[0], cfg.batch):
            yield part[b0 : b0 + cfg.batch].to(dev)

    # the teacher's log-probabilities, cached when small enough
    V = int(teacher.config.vocab_size)
    cache = train.shape[0] * (train.shape[1] - 1) * V * 4 <= CACHE_BYTES

    def teacher_logp(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return F.log_softmax(teacher(x).float(), dim=-1)

    train_batches = list(batches(train))
    cached = [teacher_logp(c[:, :-1]) for c in train_batches] if cache else None

    def held_kl() -> float:
        total, count = 0.0, 0
        with torch.no_grad():
            w = weights()
            for c in batches(hold):
                x = c[:, :-1]
                total += float(_kl(teacher_logp(x), functional_call(teacher, w, (x,)))) * x.numel()
                count += x.numel()
        return total / count

    student_params = {k: v for k, v in teacher.state_dict().items()}
    missing = set(student_params) - set(fixed) - set(fl) - set(syms)
    if missing:
        raise GolfpackError(f"tuning: the plan has no tensor for {sorted(missing)[:3]}")
    def snapshot() -> tuple[dict, dict, dict]:
        with torch.no_grad():
            return ({name: (base[name] * torch.exp(u[name])).to("cpu") for name in base},
                    {name: t.detach().to("cpu").clone() for name, t in fl.items()},
                    {name: torch.round(x).to("cpu", torch.int8) for name, x in r.items()})

    # Early stopping on the held-out KL: it is measured after every epoch (a pass over the
    # held-out sequences, an eighth of an epoch's cost), and the values kept are those of the
    # epoch where it was lowest. Tuning that overfits the training sequences from some epoch on
    # keeps what it had gained before; one that never lowers it is refused (improved False).
    before = held_kl()
    steps = int(round(cfg.epochs * len(train_batches)))
    checks = sorted({min(steps, int(round(e * len(train_batches)))) for e in range(1, math.ceil(cfg.epochs) + 1)})
    best_kl, best_step, best = before, 0, snapshot()
    for step in range(steps):
        j = step % len(train_batches)
        x = train_batches[j][:, :-1]
        tl = cached[j] if cached is not None else teacher_logp(x)
        loss = _kl(tl, functional_call(teacher, weights(), (x,)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if r:
            bound_offsets()
        if step + 1 in checks:
            kl = held_kl()
            if kl < best_kl:
                best_kl, best_step, best = kl, step + 1, snapshot()
        if progress is not None:
            progress(step + 1, steps)
    scales, floats_out, offsets = best
    symbols, flipped = {}, 0
    for name, d in offsets.items():
        n_moved = int(torch.count_nonzero(d))
        if n_moved:
            old = quantized[name][0]
            symbols[name] = (old.to(torch.int16) + d.reshape(old.shape).to(torch.int16)).to(old.dtype)
            flipped += n_moved
    return TuneResult(scales, floats_out, before, best_kl, best_step, time.perf_counter() - t0, symbols, flipped)


def stored_scales(tuned: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Tuned scales in the stored dtype, kept positive, finite and within the dtype's normal range
    (the container refuses anything else)."""
    fin = torch.finfo(like.dtype)
    t = tuned.to(torch.float64).nan_to_num(nan=1.0).clamp(fin.tiny, fin.max)
    return t.to(like.dtype).reshape(like.shape)

