"""Building blocks of the golfpack GPT (baseline blocks plus competitor modules).

Every matrix multiply with a learned weight goes through `make_linear`, so one
hook (`GPT.replace_linears`) can swap them all for packed/quantized layers.
Forward code only *calls* those layers (y = layer(x)); it never reads their
`.weight`, which a packed replacement may not have.

Precision: the rotary tables are built in float32 from float32 positions and
are kept outside the module's parameters/buffers, so `model.to(torch.bfloat16)`
cannot degrade them (FIELD_GUIDE §3: bf16 positions wreck every position above
~256). They are cast to the activation dtype only at the point of use, as the
baseline does.
"""
from __future__ import annotations

import contextlib
import contextvars
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golfpack.model.config import GPTConfig


def rms_norm(x: Tensor) -> Tensor:
    """Weightless RMSNorm over the last dim with torch's default eps (the baseline's)."""
    return F.rms_norm(x, (x.size(-1),))


# Set while `weights_on_meta()` is active: Linear and Embedding then make their weights on the
# meta device by themselves, without torch.device("meta") (a Python TorchFunctionMode that every
# torch call of the whole build goes through: half of a 19-layer skeleton's build time).
_WEIGHTS_ON_META = contextvars.ContextVar("golfpack_weights_on_meta", default=False)


@contextlib.contextmanager
def weights_on_meta():
    """Build modules whose Linear and Embedding weights (all the large tensors) are on the meta
    device, with no data and no init; every other parameter (gains, scales, mixes: a few kB) is
    an ordinary CPU tensor at its init value. A loader's skeleton (evaluate/packed_model.py)."""
    token = _WEIGHTS_ON_META.set(True)
    try:
        yield
    finally:
        _WEIGHTS_ON_META.reset(token)


class Linear(nn.Linear):
    """nn.Linear that skips its default init on the meta device. Loaders build the model on meta
    and then put the stored weights in (model/load.py); initializing tensors that have no data
    was about a third of that skeleton's build time. Anywhere else it is nn.Linear."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        if device is None and dtype is None and _WEIGHTS_ON_META.get():
            # What nn.Linear.__init__ builds on meta (reset_parameters does nothing there), with the
            # attributes put in place directly: nn.Module.__setattr__'s generic checks were half
            # of each slot's cost, and a 19-layer skeleton has 114 slots.
            nn.Module.__init__(self)
            self.__dict__.update(in_features=in_features, out_features=out_features)
            self._parameters.update(
                weight=nn.Parameter(torch.empty((out_features, in_features), device="meta")),
                bias=nn.Parameter(torch.empty(out_features, device="meta")) if bias else None)
            return
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)

    def reset_parameters(self) -> None:
        if not self.weight.is_meta:
            super().reset_parameters()


class Embedding(nn.Embedding):
    """nn.Embedding that skips its default init on the meta device (see Linear)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, *args, device=None, **kwargs):
        if device is None and _WEIGHTS_ON_META.get():
            device = "meta"
        super().__init__(num_embeddings, embedding_dim, *args, device=device, **kwargs)

    def reset_parameters(self) -> None:
        if not self.weight.is_meta:
            super().reset_parameters()


def make_linear(in_features: int, out_features: int, bias: bool = False, zero_init: bool = False) -> nn.Module:
    """The one factory for learned projections: a plain bias-free nn.Linear by default."""
    layer = Linear(in_features, out_features, bias=bias)
    if zero_init:
        layer._zero_init = True  # applied in GPT._init_weights, like the baseline
    return layer


# ----------------------------------------------------------------------------- RoPE
class Rotary:
    """cos/sin tables [T, rope_dims/2] in float32, cached for the last (T, device).

    A plain object, not an nn.Module: nothing in it is a parameter or buffer, so
    dtype casts of the model never reach it.
    """

    def __init__(self, rope_dims: int, base: float, train_seq_len: int | None = None):
        self.dims = rope_dims
        self.base = base
        self.train_seq_len = train_seq_len
        self._key: tuple | None = None
        self._tables: tuple[Tensor, Tensor] | None = None

    def __call__(self, seq_len: int, device: torch.device) -> tuple[Tensor, Tensor]:
        key = (seq_len, torch.device(device))
        if self._key != key or self._tables is None:
            base = self.base
            if self.train_seq_len is not None and seq_len > self.train_seq_len:
                # NTK-style base stretch the looped/YaRN records use past their train length.
                base = base * (seq_len / self.train_seq_len) ** (self.dims / (self.dims - 2))
            exps = torch.arange(0, self.dims, 2, dtype=torch.float32, device=device) / self.dims
            inv_freq = 1.0 / (base ** exps)
            t = torch.arange(seq_len, dtype=torch.float32, device=device)
            freqs = torch.outer(t, inv_freq)
            self._tables = (freqs.cos(), freqs.sin())
            self._key = key
        return self._tables


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate-half RoPE on the first 2*cos.size(-1) channels of x [B, H, T, hd]."""
    r = 2 * cos.size(-1)
    cos = cos.to(x.dtype)[None, None]
    sin = sin.to(x.dtype)[None, None]
    xr = x[..., :r] if r < x.size(-1) else x
    half = r // 2
    x1, x2 = xr[..., :half], xr[..., half:]
    rot = torch.cat((x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos), dim=-1)
    return rot if r == x.size(-1) else torch.cat((rot, x[..., r:]), dim=-1)


# ----------------------------------------------------------------------------- attention / MLP
class CausalSelfAttention(nn.Module):
    """GQA attention with qk RMSNorm, RoPE and per-head q_gain; optional XSA and output gate."""

    def __init__(self, cfg: GPTConfig, layer_idx: int):
        super().__init__()
        D, H, KV, hd = cfg.model_dim, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = H, KV, hd
        self.qk_norm = cfg.qk_norm
        self.c_q = make_linear(D, D)
        self.c_k = make_linear(D, KV * hd)
        self.c_v = make_linear(D, KV * hd)
        self.proj = make_linear(D, D, zero_init=True)
        self.q_gain = nn.Parameter(torch.full((H,), cfg.qk_gain_init, dtype=torch.float32))
        self.use_xsa = layer_idx in cfg.xsa_layer_set()
        self.gate_in = None
        if cfg.gated_attention:
            self.gate_in = cfg.attn_gate_dim or D
            self.attn_gate = make_linear(self.gate_in, H, bias=cfg.attn_gate_bias, zero_init=True)
            self.attn_gate._bias_init = 4.0  # sigmoid(4) ~ 0.98: the gate starts nearly open

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, v_extra: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x: normed block input [B, T, D]. Returns (output [B, T, D], raw c_v(x) [B, T, KV*hd])."""
        B, T, D = x.shape
        H, KV, hd = self.num_heads, self.num_kv_heads, self.head_dim
        q = self.c_q(x).reshape(B, T, H, hd).transpose(1, 2)
        k = self.c_k(x).reshape(B, T, KV, hd).transpose(1, 2)
        v_raw = self.c_v(x)
        v = v_raw if v_extra is None else v_raw + v_extra
        v = v.reshape(B, T, KV, hd).transpose(1, 2)
        if self.qk_norm:
            q, k = rms_norm(q), rms_norm(k)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        q = q * self.q_gain.to(q.dtype)[None, :, None, None]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=(KV != H))
        if self.use_xsa:
            y = exclusive_self_attention(y, v)
        if self.gate_in is not None:
            g = torch.sigmoid(self.attn_gate(x[..., : self.gate_in]))  # [B, T, H]
            y = y * g.transpose(1, 2).unsqueeze(-1).to(y.dtype)
        y = y.transpose(1, 2).reshape(B, T, D)
        return self.proj(y), v_raw


def exclusive_self_attention(y: Tensor, v: Tensor) -> Tensor:
    """XSA: remove from each head's output its component along the token's own value.

    y: [B, H, T, hd]; v: [B, KV, T, hd]. Query head h reads KV head h // (H/KV),
    the grouping SDPA's enable_gqa uses.
    """
    B, H, T, hd = y.shape
    KV = v.size(1)
    yg = y.reshape(B, KV, H // KV, T, hd)
    vn = F.normalize(v, dim=-1).unsqueeze(2)
    yg = yg - (yg * vn).sum(dim=-1, keepdim=True) * vn
    return yg.reshape(B, H, T, hd)


class MLP(nn.Module):
    """proj(act(fc(x))^2) with act = relu (baseline) or leaky_relu(slope)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = make_linear(cfg.model_dim, cfg.mlp_hidden)
        self.proj = make_linear(cfg.mlp_hidden, cfg.model_dim, zero_init=True)
        self.slope = cfg.leaky_slope if cfg.activation == "leaky_relu2" else 0.0

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc(x)
        h = torch.relu(h) if self.slope == 0.0 else F.leaky_relu(h, self.slope)
        return self.proj(h.square())


class Block(nn.Module):
    """Baseline block: x0 mix, pre-norm attention and MLP with per-channel output scales.

    Options: ln_scale multiplies both normed inputs by 1/sqrt(layer_idx + 1);
    parallel residual feeds attention and MLP the same normed input.
    """

    def __init__(self, cfg: GPTConfig, layer_idx: int):
        super().__init__()
        D = cfg.model_dim
        self.attn = CausalSelfAttention(cfg, layer_idx)
        self.mlp = MLP(cfg)
        self.attn_scale = nn.Parameter(torch.ones(D, dtype=torch.float32))
        self.mlp_scale = nn.Parameter(torch.ones(D, dtype=torch.float32))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(D), torch.zeros(D))).float())
        self.ln_scale = 1.0 / math.sqrt(layer_idx + 1) if cfg.ln_scale else 1.0
        p = cfg.parallel_residual_start
        self.parallel = p is not None and layer_idx >= p

    def _norm(self, x: Tensor) -> Tensor:
        n = rms_norm(x)
        return n * self.ln_scale if self.ln_scale != 1.0 else n

    def forward(self, x: Tensor, x0: Tensor, cos: Tensor, sin: Tensor,
                v_extra: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0][None, None, :] * x + mix[1][None, None, :] * x0
        n = self._norm(x)
        a, v_raw = self.attn(n, cos, sin, v_extra)
        a_scale = self.attn_scale.to(x.dtype)[None, None, :]
        m_scale = self.mlp_scale.to(x.dtype)[None, None, :]
        if self.parallel:
            return x + a_scale * a + m_scale * self.mlp(n), v_raw
        x = x + a_scale * a
        return x + m_scale * self.mlp(self._norm(x)), v_raw


# ----------------------------------------------------------------------------- input-side extras
class BigramHash(nn.Module):
    """Hashed (previous token, token) embedding added to the token embedding.

    bucket = (36313 * t_i XOR 27191 * t_{i-1}) mod (buckets - 1) in int32, the
    hash the records use; bucket buckets-1 is reserved for position 0 (no
    previous token) and, with bos_bucket, for every BOS position so no bigram
    spans a document boundary. Params: embed.weight [buckets, dim] (zero init),
    proj.weight [D, dim] when dim != D (zero init), scale (scalar, 0.05).
    """

    def __init__(self, buckets: int, dim: int, model_dim: int, bos_id: int | None):
        super().__init__()
        self.buckets = buckets
        self.bos_id = bos_id
        self.embed = Embedding(buckets, dim)
        self.embed._zero_init = True
        self.proj = make_linear(dim, model_dim, zero_init=True) if dim != model_dim else None
        self.scale = nn.Parameter(torch.tensor(0.05, dtype=torch.float32))

    def bucket_ids(self, idx: Tensor) -> Tensor:
        t = idx.to(torch.int32)
        fixed = self.buckets - 1
        out = torch.full_like(t, fixed)
        out[:, 1:] = torch.bitwise_xor(36313 * t[:, 1:], 27191 * t[:, :-1]) % fixed
        if self.bos_id is not None:
            out = out.masked_fill(idx == self.bos_id, fixed)
        return out.long()

    def forward(self, idx: Tensor) -> Tensor:
        h = self.embed(self.bucket_ids(idx))
        if self.proj is not None:
            h = self.proj(h)
        return h * self.scale.to(h.dtype)


class SmearGate(nn.Module):
    """Per-channel gated mix of the previous position into the current one.

    g = sigmoid(gate) [D] (gate zero-init). mode 'lerp' (the records):
    x_t <- (1-g) x_t + g x_{t-1}; mode 'add': x_t <- x_t + g x_{t-1}. The
    previous-position term is zero at position 0 and at every BOS token, so
    nothing is smeared across a document boundary (PRs #1851/#1855's fix).
    """

    def __init__(self, dim: int, bos_id: int, mode: str):
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(dim, dtype=torch.float32))
        self.bos_id = bos_id
        self.mode = mode

    def forward(self, x: Tensor, idx: Tensor) -> Tensor:
        g = torch.sigmoid(self.gate.to(x.dtype))[None, None, :]
        prev = torch.cat((torch.zeros_like(x[:, :1]), x[:, :-1]), dim=1)
        prev = prev.masked_fill((idx == self.bos_id).unsqueeze(-1), 0.0)
        if self.mode == "lerp":
            return (1 - g) * x + g * prev
        return x + g * prev


class ValueEmbedding(nn.Module):
    """Token embedding shared by the value-embedding layers, added to their V.

    Params: embed.weight [V, ve_dim] (N(0, 0.01)), proj.weight [KV*hd, ve_dim]
    when ve_dim != KV*hd (zero init), scale (scalar, 0.1). Each layer also has
    its own scalar in GPT.ve_layer_scales.
    """

    def __init__(self, vocab_size: int, ve_dim: int, kv_dim: int):
        super().__init__()
        self.embed = Embedding(vocab_size, ve_dim)
        self.embed._normal_init = 0.01
        self.proj = make_linear(ve_dim, kv_dim, zero_init=True) if ve_dim != kv_dim else None
        self.scale = nn.Parameter(torch.tensor(0.1, dtype=torch.float32))

    def forward(self, idx: Tensor) -> Tensor:
        h = self.embed(idx)
        if self.proj is not None:
            h = self.proj(h)
        return h * self.scale.to(h.dtype)
