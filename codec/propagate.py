"""Re-quantization of a chosen plan against the inputs the quantized model really sees.

The planner's candidates are made one tensor at a time against the float model's statistics:
GPTQ of W minimizes ||(W - Q) X||^2 over the float model's inputs X of that linear. In the
artifact's model every layer after the first sees inputs X~ that carry the errors of the layers
before it, and what reaches the loss is W X - Q X~. With

    H~ = E[x~ x~^T]      C = E[x x~^T]      W* = W C H~^-1   (the least-squares map from x~ to W x)

the output error splits exactly into a part no Q can change and a GPTQ problem:

    E||W x - Q x~||^2 = E||W x - W* x~||^2 + E||(W* - Q) x~||^2

(the cross term vanishes because W* is the least-squares solution). So the stage runs GPTQ on
(W*, H~) with the candidate's own bit width and scales (the bytes barely move), in the order the
forward pass reaches the linears, each stage's inputs taken from the model whose earlier tensors
are already the re-quantized ones. This is the "asymmetric calibration" of GPTAQ
(arXiv:2504.02692) applied to whatever the planner chose; the calibration tokens are the
planner's own.

Linears that read the same input (q, k, v) form one stage. A tensor is re-quantized only where the
plan stores it as plain per-row rtn/gptq symbols (no LQER term, no pruning, no groups) and the
module is a linear reached once per forward; every other tensor keeps its candidate, but its
decoded values are in place from the start, so the errors it causes are seen downstream.

`alpha` moves the target only part of the way, W + alpha (W* - W) (1: the full correction); `damp`
is the ridge of the solve, a fraction of mean(diag H~), as GPTQ's damping.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from golfpack.errors import GolfpackError


class _Stop(Exception):
    """Raised by the last stage's pre-hook once it is re-quantized: the rest of the forward is not needed."""


@dataclass(frozen=True)
class PropagateConfig:
    alpha: float = 1.0
    damp: float = 0.01
    batch: int = 8

    def __post_init__(self):
        if not 0 < self.alpha <= 1:
            raise GolfpackError(f"propagate alpha must be in (0, 1], got {self.alpha}")
        if not self.damp > 0:
            raise GolfpackError(f"propagate damping must be > 0, got {self.damp}")
        if self.batch < 1:
            raise GolfpackError(f"propagate batch must be >= 1, got {self.batch}")


def linear_stages(model, x: torch.Tensor) -> tuple[list[list[str]], set[str]]:
    """(stages, repeated): the model's linears (module names) in the order one forward reaches
    them, consecutive linears reading the same input tensor grouped into one stage; `repeated`
    holds linears reached more than once (weights shared across depth), which get no stage."""
    # the input tensors themselves are kept (not their ids): a freed tensor's id is reused by the
    # next allocation, which grouped an MLP's two linears on the 9x512
    order: list[tuple[str, torch.Tensor]] = []
    handles = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            handles.append(mod.register_forward_hook(
                lambda m, inp, out, name=name: order.append((name, inp[0]))))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    seen: dict[str, int] = {}
    for name, _ in order:
        seen[name] = seen.get(name, 0) + 1
    repeated = {n for n, k in seen.items() if k > 1}
    stages: list[list[str]] = []
    last_input = None
    for name, inp in order:
        if name in repeated:
            last_input = None
            continue
        if stages and last_input is not None and inp is last_input:
            stages[-1].append(name)
        else:
            stages.append([name])
        last_input = inp
    return stages, repeated


def corrected_target(w: torch.Tensor, C: torch.Tensor, Ht: torch.Tensor, alpha: float, damp: float) -> torch.Tensor:
    """W + alpha (W C (H~ + lambda I)^-1 - W) in float32, lambda = damp * mean(diag H~); float64 solve."""
    k = Ht.shape[0]
    lam = damp * float(torch.diagonal(Ht).mean())
    if not lam > 0:
        return w.to(torch.float32)
    A = Ht + lam * torch.eye(k, dtype=torch.float64)
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) != 0:
        raise GolfpackError("propagate: the quantized model's input Hessian is not positive definite")
    w64 = w.to(torch.float64)
    # W* = W C A^-1  <=>  W*^T = A^-1 C^T W^T (A symmetric)
    ws = torch.cholesky_solve(C.T @ w64.T, L).T
    return (w64 + alpha * (ws - w64)).to(torch.float32)


def _grams(xq: torch.Tensor, xf: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """(x~^T x~, x^T x~) / rows in float64, summed over float32 chunks of rows (as calibration does:
    float64 products of [16k, 1024] inputs were most of the stage's time)."""
    k = xq.shape[1]
    Ht = torch.zeros(k, k, dtype=torch.float64)
    C = torch.zeros(xf.shape[1], k, dtype=torch.float64)
    for r0 in range(0, xq.shape[0], chunk):
        b, a = xq[r0 : r0 + chunk], xf[r0 : r0 + chunk]
        Ht += (b.T @ b).to(torch.float64)
        C += (a.T @ b).to(torch.float64)
    rows = max(1, xq.shape[0])
    return Ht / rows, C / rows


def propagate(student, teacher, seqs: torch.Tensor, targets: dict, quantize, cfg: PropagateConfig = PropagateConfig(),
              progress=None, float_inputs: dict | None = None) -> dict:
    """Re-quantize `targets` in forward order against the student's own inputs.

    student: the model with every tensor of the plan already at its decoded value (updated in place
    as the stages go); teacher: the float model (same architecture); seqs int64 [n, T + 1];
    targets: {module name: float weight [N, K] of the source}; quantize(name, w_target, H~) -> the
    decoded float weight of the new candidate (the caller keeps the candidate itself).

    Two forwards in all: the teacher's, in batches, keeps the float inputs of every stage; then one
    forward of the student over all sequences at once, in which a pre-hook on each stage's first
    linear computes H~ and C from the inputs arriving there, re-quantizes the stage and puts the new
    weights in place before the linears run, so every later stage sees the re-quantized ones.
    float_inputs: a dict that keeps the teacher's inputs between calls on the same teacher and
    sequences (a second round of the planner skips the teacher's pass); None: not kept.
    Returns a report: stages, tensors done, seconds."""
    t0 = time.perf_counter()
    x_all = seqs[:, :-1]
    stages, repeated = linear_stages(teacher, x_all[:1])
    stages = [st for st in stages if any(n in targets for n in st)]
    if not stages:
        return {"stages": 0, "tensors": 0, "repeated_linears": sorted(repeated), "seconds": 0.0}
    firsts = [st[0] for st in stages]
    # 1. the float model's inputs of each stage, float32 [rows, K] (all sequences)
    float_in = float_inputs if float_inputs is not None else {}
    need = [n for n in firsts if n not in float_in]
    if need:
        parts: dict[str, list] = {n: [] for n in need}
        handles = [teacher.get_submodule(n).register_forward_pre_hook(
            lambda m, inp, n=n: parts[n].append(inp[0].detach().reshape(-1, inp[0].shape[-1]).to(torch.float32)))
            for n in need]
        try:
            with torch.no_grad():
                for b0 in range(0, x_all.shape[0], cfg.batch):
                    teacher(x_all[b0 : b0 + cfg.batch])
        finally:
            for h in handles:
                h.remove()
        for n, v in parts.items():
            float_in[n] = torch.cat(v)
        del parts
    # 2. the student's forward, re-quantizing stage by stage
    s_params = dict(student.named_parameters())
    done: list[str] = []
    last = firsts[-1]

    def pre_hook(k: int, st: list[str]):
        def f(mod, inp):
            xq = inp[0].detach().reshape(-1, inp[0].shape[-1]).to(torch.float32)
            xf = float_in[st[0]]
            if xf.shape != xq.shape:
                raise GolfpackError(f"propagate: {st[0]} saw inputs {tuple(xq.shape)} in the quantized model, "
                                    f"{tuple(xf.shape)} in the float one")
            Ht, C = _grams(xq, xf)
            del xq
            for n in st:
                if n not in targets:
                    continue
                if targets[n].shape[1] != Ht.shape[0]:
                    raise GolfpackError(f"propagate: {n} has {targets[n].shape[1]} inputs, its stage's input "
                                        f"{Ht.shape[0]} features")
                wt = corrected_target(targets[n], C, Ht, cfg.alpha, cfg.damp)
                w_hat = quantize(n, wt, Ht)
                p = s_params[n + ".weight"]
                with torch.no_grad():
                    p.copy_(w_hat.reshape(p.shape))
                done.append(n)
            if progress is not None:
                progress(k + 1, len(stages))
            if st[0] == last:
                raise _Stop  # nothing after the last stage is needed
        return f

    handles = [student.get_submodule(st[0]).register_forward_pre_hook(pre_hook(k, st))
               for k, st in enumerate(stages)]
    try:
        with torch.no_grad():
            student(x_all)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    missing = sorted(set(targets) - set(done))
    if missing:
        raise GolfpackError(f"propagate: the forward never reached {missing[:4]}")
    return {"stages": len(stages), "tensors": len(done), "repeated_linears": sorted(repeated),
            "seconds": round(time.perf_counter() - t0, 2)}
