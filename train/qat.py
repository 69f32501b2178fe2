"""Quantization-aware training: straight-through fake quantization of weight matrices.

Each selected 2-D weight W is replaced in the forward pass by
W + (Q(W) - W).detach(), where Q is symmetric per-row quantization to `bits`
bits: step = c / (2^(bits-1) - 1) with c = max|row| ("absmax") or k * std(row)
(SDClip-style, capped at max|row|), values rounded and clamped to
[-(2^(bits-1)-1), 2^(bits-1)-1]. The gradient passes straight through to W.

Tensor classes (keys of qat_bits): "emb" = tok_emb, "head" = untied lm_head,
"attn" = matrices under .attn., "mlp" = under .mlp., "other" = any other 2-D
non-control weight (bigram / value-embedding tables and projections). Control
tensors (scales, gains, mixes, gates, skip weights) and vectors are never
quantized. A tied head is quantized through tok_emb, as the codec stores it.

Implemented with torch parametrizations, which keep the same Parameter object
(so optimizer state is unaffected); names gain ".parametrizations.weight.original"
while QAT is on, which `canonical_name` maps back. `detach_qat` removes them
(keeping the float weights) before export.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

CONTROL_PATTERNS = ("attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weight", "gate", "scale")
_PARAM_SUFFIX = ".parametrizations.weight.original"


def canonical_name(name: str) -> str:
    return name[: -len(_PARAM_SUFFIX)] + ".weight" if name.endswith(_PARAM_SUFFIX) else name


def is_control(name: str) -> bool:
    return any(p in name for p in CONTROL_PATTERNS)


def tensor_class(name: str, param: Tensor) -> str | None:
    """QAT class of a parameter (canonical name), or None for tensors QAT never touches."""
    if param.ndim != 2 or is_control(name):
        return None
    if name == "tok_emb.weight":
        return "emb"
    if name == "lm_head.weight":
        return "head"
    if ".attn." in name:
        return "attn"
    if ".mlp." in name:
        return "mlp"
    return "other"


def fake_quant_rows(w: Tensor, bits: int, clip="absmax") -> Tensor:
    """Symmetric per-row quantize-dequantize of a 2-D tensor (no gradient path)."""
    qmax = (1 << (bits - 1)) - 1
    w32 = w.float()
    amax = w32.abs().amax(dim=1, keepdim=True)
    if clip == "absmax":
        c = amax
    else:
        c = torch.minimum(float(clip) * w32.std(dim=1, keepdim=True, unbiased=False), amax)
    step = (c / qmax).clamp_min(1e-12)
    q = torch.clamp(torch.round(w32 / step), -qmax, qmax)
    return (q * step).to(w.dtype)


class FakeQuant(nn.Module):
    def __init__(self, bits: int, clip="absmax"):
        super().__init__()
        self.bits, self.clip = bits, clip

    def forward(self, w: Tensor) -> Tensor:
        return w + (fake_quant_rows(w.detach(), self.bits, self.clip) - w).detach()


def attach_qat(model: nn.Module, bits_by_class: dict[str, int], clip="absmax") -> list[str]:
    """Turn on fake quantization for the weights whose class has bits; returns their names."""
    done = []
    for name, p in list(model.named_parameters()):
        cname = canonical_name(name)
        cls = tensor_class(cname, p)
        if cls is None or cls not in bits_by_class or not cname.endswith(".weight"):
            continue
        if name.endswith(_PARAM_SUFFIX):
            continue  # already attached
        module = model.get_submodule(cname[: -len(".weight")])
        parametrize.register_parametrization(module, "weight", FakeQuant(bits_by_class[cls], clip))
        done.append(cname)
    return done


def detach_qat(model: nn.Module) -> None:
    """Remove every fake-quant parametrization, keeping the float weights (same Parameters)."""
    for m in model.modules():
        if parametrize.is_parametrized(m):
            for tname in list(m.parametrizations.keys()):
                parametrize.remove_parametrizations(m, tname, leave_parametrized=False)
