"""Weight averaging for the saved checkpoint: EMA and SWA, kept in float32.

EMA: after every optimizer step, avg <- decay * avg + (1 - decay) * w.
SWA: during warmdown, every k steps add a snapshot; the result is their mean.
Both hold their own fp32 copies keyed by parameter name, so the live model and
its optimizer state are never touched, and rank 0 can save them directly.
"""
from __future__ import annotations

import torch
from torch import nn

from golfpack.train.qat import canonical_name


def _named(model: nn.Module) -> dict[str, torch.Tensor]:
    # canonical names: the same key whether or not QAT parametrizations are attached
    return {canonical_name(n): p.detach() for n, p in model.named_parameters()}


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.avg = {n: p.float().clone() for n, p in _named(model).items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for n, p in _named(model).items():
            self.avg[n].lerp_(p.float(), 1.0 - self.decay)

    def state(self) -> dict[str, torch.Tensor]:
        return self.avg


class SWA:
    def __init__(self):
        self.sum: dict[str, torch.Tensor] | None = None
        self.count = 0

    @torch.no_grad()
    def add(self, model: nn.Module) -> None:
        snap = _named(model)
        if self.sum is None:
            self.sum = {n: p.double().clone() for n, p in snap.items()}
        else:
            for n, p in snap.items():
                self.sum[n].add_(p.double())
        self.count += 1

    def state(self) -> dict[str, torch.Tensor]:
        if not self.count:
            raise RuntimeError("SWA has no snapshots")
        return {n: (s / self.count).float() for n, s in self.sum.items()}
