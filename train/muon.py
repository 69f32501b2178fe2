"""Muon: momentum SGD whose 2-D update is orthogonalized by a Newton-Schulz iteration.

As in the challenge baseline (from modded-nanogpt): Nesterov momentum 0.95 on
the raw gradient, then 5 steps of the quintic Newton-Schulz iteration with
coefficients (3.4445, -4.7750, 2.0315), which pushes every singular value of
the update towards ~1, then a shape correction max(1, rows/cols)**0.5.

Differences from the baseline, on purpose:
- the iteration runs in bfloat16 on CUDA (as the baseline) and in float32 on
  CPU by default (bf16 matmuls are slow and no more faithful there);
- optional decoupled weight decay, p <- p * (1 - lr * wd), before the update;
- no cross-rank sharding of the iteration: the trainer all-reduces gradients
  first, so every rank computes the same update from the same gradient. This
  costs redundant FLOPs on multi-GPU but keeps the update bit-identical on all
  ranks without a second collective.
"""
from __future__ import annotations

import torch
from torch import Tensor

NS_COEFFS = (3.4445, -4.7750, 2.0315)


def zeropower_via_newtonschulz5(G: Tensor, steps: int = 5, eps: float = 1e-7, dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """Approximately orthogonalize a 2-D matrix (U S V^T -> ~U V^T) with the quintic iteration."""
    if G.ndim != 2:
        raise ValueError(f"Newton-Schulz needs a 2-D matrix, got shape {tuple(G.shape)}")
    a, b, c = NS_COEFFS
    X = G.to(dtype)
    X = X / (X.norm() + eps)
    transposed = G.size(0) > G.size(1)
    if transposed:  # iterate on the wide orientation: A = X X^T is the smaller Gram matrix
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    return X.T if transposed else X


class Muon(torch.optim.Optimizer):
    """Muon for 2-D parameters. Param-group keys: lr, momentum, nesterov, backend_steps, weight_decay."""

    def __init__(
        self,
        params,
        lr: float = 0.04,
        momentum: float = 0.95,
        nesterov: bool = True,
        backend_steps: int = 5,
        weight_decay: float = 0.0,
        ns_dtype: torch.dtype = torch.bfloat16,
    ):
        if lr < 0 or not 0.0 <= momentum < 1.0 or backend_steps < 1 or weight_decay < 0:
            raise ValueError(
                f"bad Muon hyperparameters: lr={lr} momentum={momentum} "
                f"backend_steps={backend_steps} weight_decay={weight_decay}"
            )
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, backend_steps=backend_steps,
                        weight_decay=weight_decay)
        super().__init__(params, defaults)
        self.ns_dtype = ns_dtype
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon handles 2-D parameters only, got shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mom, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(g)
                buf = state["momentum_buffer"]
                buf.mul_(mom).add_(g)
                g = g.add(buf, alpha=mom) if group["nesterov"] else buf
                u = zeropower_via_newtonschulz5(g, steps=group["backend_steps"], dtype=self.ns_dtype)
                u = u * max(1.0, p.size(0) / p.size(1)) ** 0.5
                if wd:
                    p.mul_(1.0 - lr * wd)
                p.add_(u.to(p.dtype), alpha=-lr)
        return loss
