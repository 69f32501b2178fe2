"""Training-only regularizers of the records: NEFTune embedding noise and z-loss.

NEFTune (PR 2163, after Jain et al. 2023): while the model is in training mode, the token
embeddings get uniform noise in [-1, 1] scaled by alpha / sqrt(T * D) (T = sequence length,
D = model dim). It is a forward hook on `tok_emb`, so evaluation (model.eval()) and TTT never
see it, and it is removed before the weights are saved and the final val runs.

z-loss (PR 2163, after PaLM): weight * mean(logsumexp(logits)^2) added to the cross-entropy,
on the logits the model scores with (softcapped when the config has a softcap), which keeps
the softmax normalizer near 1 so bf16 logits stay well conditioned.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def attach_neftune(model, alpha: float, seed: int = 0):
    """Register NEFTune noise on model.tok_emb; returns the hook handle (call .remove())."""
    gen: dict = {}

    def hook(module, inputs, out):
        if not module.training or alpha <= 0:
            return out
        g = gen.get(out.device)
        if g is None:  # own generator: the noise must not move the caller's global RNG
            g = gen[out.device] = torch.Generator(device=out.device).manual_seed(seed)
        T, D = out.shape[-2], out.shape[-1]
        noise = torch.rand(out.shape, generator=g, device=out.device, dtype=torch.float32).mul_(2).sub_(1)
        return out + noise.to(out.dtype) * (alpha / math.sqrt(T * D))

    return model.tok_emb.register_forward_hook(hook)


def loss_with_z(model, x: torch.Tensor, y: torch.Tensor, z_weight: float) -> torch.Tensor:
    """Cross-entropy of model on (x, y) plus z_weight * mean(logsumexp(logits)^2)."""
    logits = model(x)  # float32 [B, T, V], softcapped as the model scores
    flat = logits.reshape(-1, logits.size(-1))
    ce = F.cross_entropy(flat, y.reshape(-1))
    if z_weight <= 0:
        return ce
    return ce + z_weight * torch.logsumexp(flat, dim=-1).pow(2).mean()
