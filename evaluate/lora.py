"""Adapters for test-time training: batched per-document LoRA and dense weight deltas.

BatchedLoRA wraps any linear map ``base`` (a PackedLinear, an nn.Linear, or the
tied output head) and adds a low-rank term with *one adapter per slot*:

    y[r] = base(x[r]) + (alpha / rank) * (x[r] . A[s_r]^T) . B[s_r]^T

A [S, rank, in] and B [S, out, rank] are single nn.Parameters, so S documents
train in one batch: row r of the input belongs to slot ``bank.rows[r]``. A
document's loss only reaches its own slot (the gather's backward scatters into
that slot alone), so the per-slot optimizer below makes every document an
independent TTT run. B starts at zero, so a fresh adapter is exactly the base
map; the base is only ever *called*, so a packed base stays packed and its
gradient to x flows through the transposed dequant-matmul kernel.

DeltaLinear is the full-parameter counterpart: y = base(x) + x . Delta^T with a
dense trainable Delta [out, in] (zero at start). The base stays packed; the
delta *is* a dense trainable copy's worth of memory (what the SGD variants need).

SlotAdamW is AdamW with a step count per slot and an active-slot mask, so a
finished or idle document is never moved by stale momentum.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


class SlotBank:
    """Shared routing state of one set of adapters: which slot each batch row uses.

    rows: LongTensor [R] of slot ids for the current forward (None = rows are slots 0..R-1).
    enabled: False makes every adapter return its base output unchanged (base-model scoring).
    """

    def __init__(self, slots: int):
        self.slots = int(slots)
        self.rows: torch.Tensor | None = None
        self.enabled = True


class BatchedLoRA(nn.Module):
    """base(x) + per-slot low-rank term; x is [R, T, in] with R == len(bank.rows)."""

    def __init__(self, base: Callable[[torch.Tensor], torch.Tensor], in_features: int, out_features: int,
                 rank: int, alpha: float, bank: SlotBank, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu"):
        super().__init__()
        self.base = base
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.rank = int(rank)
        self.scale = float(alpha) / self.rank
        self.bank = bank
        self.generator = generator
        S = bank.slots
        self.A = nn.Parameter(torch.empty(S, self.rank, self.in_features, device=device))
        self.B = nn.Parameter(torch.zeros(S, self.out_features, self.rank, device=device))
        self.reset(torch.arange(S), keep_a=False)

    @torch.no_grad()
    def reset(self, slots: torch.Tensor, keep_a: bool) -> None:
        """B <- 0 for `slots` (the adapter is the identity again); A <- fresh init unless keep_a."""
        slots = slots.to(self.B.device)
        self.B[slots] = 0.0
        if not keep_a:
            # PEFT's default: kaiming-uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)).
            bound = 1.0 / math.sqrt(self.in_features)
            a = torch.rand(len(slots), self.rank, self.in_features, generator=self.generator)
            self.A[slots] = ((a * 2 - 1) * bound).to(self.A.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if not self.bank.enabled:
            return y
        rows = self.bank.rows
        A = self.A if rows is None else self.A[rows]  # [R, r, in]
        B = self.B if rows is None else self.B[rows]  # [R, out, r]
        if x.shape[0] != A.shape[0]:
            raise RuntimeError(f"LoRA got {x.shape[0]} rows but routing names {A.shape[0]} slots")
        x3 = x.reshape(x.shape[0], -1, self.in_features)
        h = torch.bmm(x3, A.transpose(1, 2).to(x3.dtype))
        d = torch.bmm(h, B.transpose(1, 2).to(h.dtype)) * self.scale
        return y + d.reshape(y.shape).to(y.dtype)


class DeltaLinear(nn.Module):
    """base(x) + x . Delta^T with a dense trainable Delta [out, in] (zero init)."""

    def __init__(self, base: Callable[[torch.Tensor], torch.Tensor], in_features: int, out_features: int,
                 device: torch.device | str = "cpu"):
        super().__init__()
        self.base = base
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.delta = nn.Parameter(torch.zeros(self.out_features, self.in_features, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + F.linear(x, self.delta.to(x.dtype))


class SlotAdamW:
    """AdamW over parameters whose dim 0 is the slot; steps only the slots marked active.

    Decoupled weight decay (p -= lr * wd * p), bias correction with each slot's own step count.
    """

    def __init__(self, params: list[nn.Parameter], slots: int, lr: float, betas: tuple[float, float],
                 eps: float, weight_decay: float):
        self.params = list(params)
        self.lr, (self.b1, self.b2), self.eps, self.wd = float(lr), (float(betas[0]), float(betas[1])), float(eps), \
            float(weight_decay)
        dev = self.params[0].device if self.params else "cpu"
        self.t = torch.zeros(slots, dtype=torch.float64, device=dev)
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def reset(self, slots: torch.Tensor) -> None:
        slots = slots.to(self.t.device)
        self.t[slots] = 0
        for m, v in zip(self.m, self.v):
            m[slots] = 0
            v[slots] = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        """active: bool [S]; inactive slots keep their parameters and moments unchanged."""
        if self.lr == 0.0:
            return
        act = active.to(self.t.device)
        self.t += act.to(self.t.dtype)
        t = self.t.clamp(min=1)
        bc1 = (1 - self.b1 ** t).float()
        bc2 = (1 - self.b2 ** t).float()
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            shape = (-1,) + (1,) * (p.dim() - 1)
            a = act.view(shape).to(p.dtype)
            g = p.grad
            m.mul_(1 - a * (1 - self.b1)).add_(a * (1 - self.b1) * g)
            v.mul_(1 - a * (1 - self.b2)).add_(a * (1 - self.b2) * g * g)
            upd = (m / bc1.view(shape)) / ((v / bc2.view(shape)).sqrt() + self.eps)
            if self.wd:
                upd = upd + self.wd * p
            p.sub_(self.lr * a * upd)
