"""Build a GPT from a checkpoint: config from the file, from the caller, or inferred from shapes.

`load(path)` reads any source golfpack.checkpoint understands (.pt,
.safetensors, sharded index, baseline .ptz, golfpack artifacts); the state
dict must then match the model exactly: every missing, unexpected or
mis-shaped tensor is named in one GolfpackError.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from golfpack.errors import GolfpackError
from golfpack.model.config import GPTConfig
from golfpack.model.gpt import GPT

# Wrappers that prefix every key: torch.compile (_orig_mod.) and DDP (module.).
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")


def as_config(config: GPTConfig | Mapping[str, Any]) -> GPTConfig:
    if isinstance(config, GPTConfig):
        return config
    if isinstance(config, Mapping):
        return GPTConfig.from_dict(dict(config))
    raise GolfpackError(f"config must be a GPTConfig or dict, got {type(config).__name__}")


def strip_wrapper_prefixes(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    sd = dict(state_dict)
    changed = True
    while changed and sd:
        changed = False
        for p in _WRAPPER_PREFIXES:
            if all(k.startswith(p) for k in sd):
                sd = {k[len(p):]: v for k, v in sd.items()}
                changed = True
    return sd


def infer_config(state_dict: Mapping[str, Tensor], base: GPTConfig | Mapping[str, Any] | None = None,
                 check: bool = True) -> GPTConfig:
    """GPTConfig from tensor names and shapes.

    Shape-bearing fields come from the tensors; fields no tensor reveals
    (activation, softcap, RoPE, xsa, ln_scale, recurrence, parallel residual,
    smear_mode, ve_layers placement) come from `base` (default GPTConfig()).
    Without base, value embeddings are placed on the last k layers (the records'
    default). num_heads comes from q_gain's length, else base (8 by default).
    Raises GolfpackError if the result does not match the state dict exactly (check=False skips
    that last check, which builds the model: for a caller that builds it and checks itself).
    """
    sd = strip_wrapper_prefixes(state_dict)
    base_cfg = as_config(base) if base is not None else GPTConfig()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}

    def shape(name: str) -> tuple[int, ...]:
        if name not in shapes:
            raise GolfpackError(f"cannot infer config: tensor {name!r} is missing")
        return shapes[name]

    emb = shape("tok_emb.weight")
    if len(emb) != 2:
        raise GolfpackError(f"tok_emb.weight must be 2-D [vocab, dim], got {list(emb)}")
    V, D = emb
    ids = sorted({int(m.group(1)) for k in shapes if (m := re.match(r"blocks\.(\d+)\.", k))})
    if not ids:
        raise GolfpackError("cannot infer config: no blocks.{i}.* tensors")
    if ids != list(range(len(ids))):
        missing = sorted(set(range(ids[-1] + 1)) - set(ids))
        raise GolfpackError(f"cannot infer config: block indices not contiguous, missing blocks {missing}")
    L = len(ids)
    H = shape("blocks.0.attn.q_gain")[0] if "blocks.0.attn.q_gain" in shapes else base_cfg.num_heads
    if H < 1 or D % H:
        raise GolfpackError(f"cannot infer config: model_dim {D} not divisible by {H} heads")
    hd = D // H
    kv_rows = shape("blocks.0.attn.c_k.weight")[0]
    if kv_rows % hd:
        raise GolfpackError(f"cannot infer config: c_k has {kv_rows} rows, not a multiple of head_dim {hd}")
    hidden = shape("blocks.0.mlp.fc.weight")[0]
    derived: dict[str, Any] = dict(
        vocab_size=V, num_layers=L, model_dim=D, num_heads=H, num_kv_heads=kv_rows // hd,
        mlp_mult=_mlp_mult(hidden, D), tie_embeddings="lm_head.weight" not in shapes,
        unet_skips="skip_weights" in shapes,
    )
    if "bigram.embed.weight" in shapes:
        derived.update(bigram_buckets=shape("bigram.embed.weight")[0], bigram_dim=shape("bigram.embed.weight")[1])
    else:
        derived["bigram_buckets"] = 0
    derived["smear_gate"] = "smear.gate" in shapes
    n_ve = sum(1 for k in shapes if re.fullmatch(r"ve_layer_scales\.\d+", k))
    if "ve_shared.embed.weight" in shapes:
        derived["ve_dim"] = shape("ve_shared.embed.weight")[1]
        derived["ve_layers"] = (
            base_cfg.ve_layers if len(base_cfg.ve_layers) == n_ve else tuple(range(max(L - n_ve, 0), L))
        )
    else:
        derived["ve_layers"] = ()
    derived["value_residual"] = any(k.startswith("vrl_scales.") for k in shapes)
    gate = "blocks.0.attn.attn_gate.weight"
    derived["gated_attention"] = gate in shapes
    if gate in shapes:
        gate_in = shape(gate)[1]
        derived.update(attn_gate_dim=None if gate_in == D else gate_in,
                       attn_gate_bias="blocks.0.attn.attn_gate.bias" in shapes)
    else:
        derived["attn_gate_dim"] = None
    # base's layer-indexed options may not fit the inferred depth; the base is a hint, not a constraint
    fixed = _fit_layer_options(base_cfg.to_dict(), L)
    fixed.update(derived)
    cfg = GPTConfig.from_dict(fixed)
    if cfg.unet_skips and shape("skip_weights")[0] != cfg.num_skip_weights:
        raise GolfpackError(
            f"skip_weights has {shape('skip_weights')[0]} rows but {len(cfg.layer_schedule())} virtual layers "
            f"need {cfg.num_skip_weights}; the checkpoint probably loops layers (depth recurrence): "
            "pass a config with recur_start/recur_end/recur_repeats"
        )
    if check:
        check_state_dict(cfg, sd)
    return cfg


def _mlp_mult(hidden: int, dim: int) -> float:
    """mlp_mult with int(mlp_mult * dim) == hidden exactly (float division can land just below)."""
    m = hidden / dim
    for _ in range(4):
        if int(m * dim) == hidden:
            return m
        m = float(torch.nextafter(torch.tensor(m, dtype=torch.float64), torch.tensor(float("inf"), dtype=torch.float64)))
    raise GolfpackError(f"cannot express MLP hidden size {hidden} at model_dim {dim} as mlp_mult")


def _fit_layer_options(d: dict[str, Any], L: int) -> dict[str, Any]:
    if d["xsa_layers"] is not None and any(i >= L for i in d["xsa_layers"]):
        d["xsa_layers"] = None
    if d["recur_end"] is not None and d["recur_end"] >= L:
        d.update(recur_start=None, recur_end=None, recur_repeats=1)
    if d["parallel_residual_start"] is not None and d["parallel_residual_start"] >= L:
        d["parallel_residual_start"] = None
    return d


def check_state_dict(config: GPTConfig, state_dict: Mapping[str, Tensor]) -> None:
    """Raise GolfpackError naming every missing, unexpected, mis-shaped or non-float tensor."""
    from golfpack.model.layers import weights_on_meta

    with weights_on_meta():  # shapes only: large weights without data, and no meta-mode dispatch
        want = {k: tuple(v.shape) for k, v in GPT(config).state_dict().items()}
    got = dict(state_dict)
    problems = []
    missing = sorted(set(want) - set(got))
    unexpected = sorted(set(got) - set(want))
    if missing:
        problems.append("missing tensors: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected tensors: " + ", ".join(unexpected))
    for k in sorted(set(want) & set(got)):
        t = got[k]
        if not isinstance(t, Tensor):
            problems.append(f"{k} is a {type(t).__name__}, not a tensor")
        elif tuple(t.shape) != want[k]:
            problems.append(f"{k} has shape {list(t.shape)}, model expects {list(want[k])}")
        elif not t.dtype.is_floating_point:
            problems.append(f"{k} has dtype {t.dtype}; expected floats (dequantize first)")
    if problems:
        raise GolfpackError("state dict does not match the model: " + "; ".join(problems))


def from_state_dict(
    state_dict: Mapping[str, Tensor],
    config: GPTConfig | Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> GPT:
    """GPT in eval mode holding exactly state_dict's tensors (strict name and shape check)."""
    sd = strip_wrapper_prefixes(state_dict)
    cfg = infer_config(sd) if config is None else as_config(config)
    check_state_dict(cfg, sd)
    with torch.device(device):
        model = GPT(cfg)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def load(
    path: str | Path,
    config: GPTConfig | Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> GPT:
    """Load any checkpoint golfpack.checkpoint reads into a GPT.

    Config precedence: the `config` argument, then the config stored in the
    checkpoint, then infer_config from the tensor shapes.
    """
    try:
        from golfpack.checkpoint import load_state_dict
    except ImportError as e:  # the reader lives in another module of the package
        raise GolfpackError(f"checkpoint reader unavailable: {e}") from None
    state_dict, stored = load_state_dict(path)
    chosen = config if config is not None else stored
    return from_state_dict(state_dict, chosen, device)
