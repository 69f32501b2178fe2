"""The golfpack GPT: the Parameter Golf baseline plus the records' techniques as flags.

With every flag off this is the challenge baseline `train_gpt.py` model, with
the same state-dict names:

    tok_emb.weight [V, D]                       skip_weights [n_skip, D]
    blocks.{i}.attn.c_q.weight [D, D]           blocks.{i}.attn.c_k.weight [KV*hd, D]
    blocks.{i}.attn.c_v.weight [KV*hd, D]       blocks.{i}.attn.proj.weight [D, D]
    blocks.{i}.attn.q_gain [H]                  blocks.{i}.mlp.fc.weight [hidden, D]
    blocks.{i}.mlp.proj.weight [D, hidden]      blocks.{i}.attn_scale / mlp_scale [D]
    blocks.{i}.resid_mix [2, D]                 lm_head.weight [V, D]   (untied only)

Extra tensors per flag (names follow the records' train_gpt.py where one exists):

    bigram_buckets > 0     bigram.embed.weight [buckets, dim], bigram.proj.weight [D, dim]
                           (only if dim != D), bigram.scale []
    smear_gate             smear.gate [D]
    gated_attention        blocks.{i}.attn.attn_gate.weight [H, gate_in], .bias [H] (attn_gate_bias)
    ve_layers              ve_shared.embed.weight [V, ve_dim], ve_shared.proj.weight [KV*hd, ve_dim]
                           (only if ve_dim != KV*hd), ve_shared.scale [], ve_layer_scales.{k} [1]
                           (k-th entry of ve_layers)
    value_residual         vrl_scales.{i-1} [1] for blocks i = 1..L-1 (zero init)
    xsa, ln_scale, rope_dims, recurrence, parallel residual, qk_norm: no tensors.

Forward (baseline): x = rms_norm(tok_emb(idx)) ; x0 = x ; the first half of the
(virtual) layers push their outputs on a stack, the second half pop them back
in through skip_weights (U-Net) ; rms_norm ; tied head ; softcap*tanh(z/softcap).
Extras: the bigram embedding is added before the first norm, SmearGate runs
after it; value embeddings / value residual add to V inside attention.

Linear-layer hook: every learned projection is made by layers.make_linear and
only ever called as y = layer(x). `GPT.replace_linears(fn)` calls
fn(qualified_name, module) for each of them (names as in `GPT.linear_names`,
e.g. "blocks.0.attn.c_q") and installs whatever module fn returns (None keeps the
original), so a PackedLinear without `.weight` can stand in. The tied head uses
tok_emb.weight directly and is not a linear slot.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golfpack.errors import GolfpackError
from golfpack.model.config import GPTConfig
from golfpack.model.layers import (
    BigramHash,
    Block,
    Embedding,
    Rotary,
    SmearGate,
    ValueEmbedding,
    make_linear,
    rms_norm,
)


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise GolfpackError(f"GPT needs a GPTConfig, got {type(config).__name__}")
        cfg = self.config = config
        V, D, L = cfg.vocab_size, cfg.model_dim, cfg.num_layers
        self.tok_emb = Embedding(V, D)
        self.bigram = (
            BigramHash(cfg.bigram_buckets, cfg.bigram_dim, D, cfg.bos_id if cfg.bigram_bos_bucket else None)
            if cfg.bigram_buckets else None
        )
        self.smear = SmearGate(D, cfg.bos_id, cfg.smear_mode) if cfg.smear_gate else None
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(L))
        if cfg.unet_skips:
            self.skip_weights = nn.Parameter(torch.ones(cfg.num_skip_weights, D, dtype=torch.float32))
        self.ve_shared = ValueEmbedding(V, cfg.ve_dim, cfg.kv_dim) if cfg.ve_layers else None
        self.ve_layer_scales = nn.ParameterList(
            nn.Parameter(torch.ones(1, dtype=torch.float32)) for _ in cfg.ve_layers
        )
        self._ve_slot = {layer: k for k, layer in enumerate(cfg.ve_layers)}
        self.vrl_scales = nn.ParameterList(
            nn.Parameter(torch.zeros(1, dtype=torch.float32)) for _ in range(L - 1 if cfg.value_residual else 0)
        )
        self.lm_head = None if cfg.tie_embeddings else make_linear(D, V, zero_init=True)
        self.rotary = Rotary(cfg.rope_dims or cfg.head_dim, cfg.rope_base, cfg.rope_train_seq_len)
        self._schedule = cfg.layer_schedule()
        self._init_weights()
        self.linear_names: list[str] = [n for n, m in self.named_modules() if isinstance(m, nn.Linear)]

    @torch.no_grad()
    def _init_weights(self) -> None:
        if self.tok_emb.weight.is_meta:  # a loader's skeleton: no data to initialize (layers.Linear)
            return
        if self.config.tie_embeddings:
            nn.init.normal_(self.tok_emb.weight, mean=0.0, std=self.config.tied_embed_init_std)
        for m in self.modules():
            if getattr(m, "_zero_init", False):
                nn.init.zeros_(m.weight)
            if hasattr(m, "_normal_init"):
                nn.init.normal_(m.weight, std=m._normal_init)
            if getattr(m, "bias", None) is not None and hasattr(m, "_bias_init"):
                nn.init.constant_(m.bias, m._bias_init)

    # ------------------------------------------------------------------ forward
    def forward_hidden(self, idx: Tensor) -> Tensor:
        """Final normed hidden states [B, T, D] for token ids idx [B, T]."""
        self._check_idx(idx)
        cfg = self.config
        x = self.tok_emb(idx)
        if self.bigram is not None:
            x = x + self.bigram(idx)
        x = rms_norm(x)
        if self.smear is not None:
            x = self.smear(x, idx)
        x0 = x
        cos, sin = self.rotary(idx.size(1), idx.device)
        ve = self.ve_shared(idx) if self.ve_shared is not None else None
        v0: Tensor | None = None  # layer 0's raw V, for value_residual
        n_enc = cfg.num_encoder_layers
        skips: list[Tensor] = []
        for vi, li in enumerate(self._schedule):
            if vi >= n_enc and skips:  # decoder half of the U-Net: pop the mirrored encoder output
                w = self.skip_weights[vi - n_enc].to(x.dtype)[None, None, :]
                x = x + w * skips.pop()
            x, v_raw = self.blocks[li](x, x0, cos, sin, self._v_extra(li, ve, v0))
            if cfg.value_residual and li == 0 and v0 is None:
                v0 = v_raw
            if vi < n_enc:
                skips.append(x)
        return rms_norm(x)

    def _v_extra(self, layer: int, ve: Tensor | None, v0: Tensor | None) -> Tensor | None:
        """What layer adds to its V: its share of the value embedding and of layer 0's V."""
        extra = None
        if ve is not None and layer in self._ve_slot:
            extra = ve * self.ve_layer_scales[self._ve_slot[layer]].to(ve.dtype)
        if v0 is not None and layer > 0:
            vr = v0 * self.vrl_scales[layer - 1].to(v0.dtype)
            extra = vr if extra is None else extra + vr
        return extra

    def logits_from_hidden(self, h: Tensor) -> Tensor:
        """Head + softcap on hidden states [..., D]; returns float32 logits [..., V]."""
        if self.lm_head is not None:
            logits = self.lm_head(h)
        elif hasattr(self.tok_emb, "head"):  # a packed table (model/packed.py PackedEmbedding)
            logits = self.tok_emb.head(h)
        else:
            logits = F.linear(h, self.tok_emb.weight)
        cap = self.config.logit_softcap
        if cap:
            logits = cap * torch.tanh(logits / cap)
        return logits.float()

    def forward(self, idx: Tensor, targets: Tensor | None = None, reduction: str = "mean") -> Tensor:
        """Logits [B, T, V] (float32) when targets is None, else cross-entropy.

        reduction: 'mean' (scalar), 'sum' (scalar) or 'none' (per-token [B, T]).
        """
        logits = self.logits_from_hidden(self.forward_hidden(idx))
        if targets is None:
            return logits
        if reduction not in ("mean", "sum", "none"):
            raise GolfpackError(f"reduction must be 'mean', 'sum' or 'none' (got {reduction!r})")
        if targets.shape != idx.shape:
            raise GolfpackError(f"targets shape {tuple(targets.shape)} != idx shape {tuple(idx.shape)}")
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction=reduction)
        return loss.reshape(targets.shape) if reduction == "none" else loss

    def _check_idx(self, idx: Tensor) -> None:
        if not isinstance(idx, Tensor) or idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
            raise GolfpackError(f"token ids must be an integer tensor (got {getattr(idx, 'dtype', type(idx))})")
        if idx.dim() != 2 or idx.size(1) == 0:
            raise GolfpackError(f"token ids must have shape [B, T] with T >= 1 (got {tuple(idx.shape)})")
        if idx.numel() and not torch.compiler.is_compiling():
            lo, hi = int(idx.min()), int(idx.max())
            if lo < 0 or hi >= self.config.vocab_size:
                raise GolfpackError(f"token id {lo if lo < 0 else hi} outside vocab [0, {self.config.vocab_size})")

    # ------------------------------------------------------------------ utilities
    def replace_linears(self, fn: Callable[[str, nn.Module], nn.Module | None]) -> int:
        """Swap linear slots: fn(name, current_module) -> replacement or None. Returns #replaced."""
        n = 0
        for name in self.linear_names:
            parent_name, _, attr = name.rpartition(".")
            parent = self.get_submodule(parent_name) if parent_name else self
            new = fn(name, getattr(parent, attr))
            if new is not None:
                setattr(parent, attr, new)
                n += 1
        return n

    def num_params(self) -> int:
        """Parameters of the float model (tied head counted once).

        Linear slots count in_features * out_features (+ bias) from their
        attributes, so the count is unchanged after replace_linears installs
        packed layers that keep in_features/out_features.
        """
        slots = {self.get_submodule(n) for n in self.linear_names}
        slot_params = {id(p) for m in slots for p in m.parameters()}
        total = sum(p.numel() for p in self.parameters() if id(p) not in slot_params)
        for m in slots:
            total += m.in_features * m.out_features
            if getattr(m, "bias", None) is not None:
                total += m.out_features
        return total
