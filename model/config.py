"""GPTConfig: every architecture knob of a golfpack GPT, validated, JSON round-trippable.

`GPTConfig()` is the Parameter Golf challenge baseline (9 x 512, 8 heads / 4 KV
heads, relu^2 MLP 2x, vocab 1024, tied embeddings, softcap 30, U-Net skips).
Every competitor technique is a flag that defaults to off, so a config with the
baseline numbers builds exactly the baseline `train_gpt.py` model.

Layer indices (xsa_layers, ve_layers, recur_*, parallel_residual_start) are
physical block indices, i.e. indices into `blocks.{i}`. With depth recurrence
the model runs a longer *virtual* schedule of those blocks (see
`layer_schedule`); the U-Net encoder/decoder split is taken over that schedule,
as the records with looped layers do.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from golfpack.errors import GolfpackError
from golfpack.safe_json import INT_MAX, INT_MIN, loads_bounded

ACTIVATIONS = ("relu2", "leaky_relu2")
SMEAR_MODES = ("lerp", "add")

# Upper bounds on every size a config sets: a config comes from a stranger's file (safetensors
# metadata, an artifact's manifest, a config.json), and without a bound `recur_repeats` 10^12 builds
# a 10^12-entry schedule and `num_layers` 10^6 hangs building the model. Each is far above any
# Parameter Golf model (9 x 512, vocab 1024) and any model the artifact format's 2^30-element cap
# could hold. The same table is in SECURITY.md ("Input limits").
LIMITS: dict[str, int] = {
    "vocab_size": 1 << 18,  # 262,144
    "num_layers": 256,
    "model_dim": 16384,
    "num_heads": 256,
    "num_kv_heads": 256,
    "mlp_hidden": 65536,  # int(mlp_mult * model_dim)
    "bigram_buckets": 1 << 20,
    "bigram_dim": 16384,
    "ve_dim": 16384,
    "recur_repeats": 64,
    "virtual_layers": 1024,  # layers run per token, recurrence included
    "rope_train_seq_len": 1 << 20,
    "layer_list": 256,  # entries of xsa_layers / ve_layers
    "params": 1 << 30,  # the model's weight matrices in all: the artifact format's element cap
}
_INT_LIMITED = ("vocab_size", "num_layers", "model_dim", "num_heads", "num_kv_heads", "bigram_buckets",
                "bigram_dim", "ve_dim", "recur_repeats", "rope_train_seq_len")


def limit_problems(d: dict[str, Any]) -> list[str]:
    """Which fields of a config dict (or GPTConfig.to_dict()) exceed LIMITS; checked before anything is built.

    Looks only at integer values (types are checked elsewhere) and computes nothing of the config's size."""
    def num(k):
        v = d.get(k)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None

    bad = []
    for k in _INT_LIMITED:
        v = num(k)
        if v is not None and v > LIMITS[k]:
            bad.append(f"{k} {_short_repr(v)} exceeds the limit {LIMITS[k]}")
    D, m = num("model_dim"), num("mlp_mult")
    if D is not None and m is not None and D <= LIMITS["model_dim"] and m * D > LIMITS["mlp_hidden"]:
        bad.append(f"mlp_mult {m} gives {m * D:.0f} hidden units at model_dim {D}, over the limit {LIMITS['mlp_hidden']}")
    for k in ("xsa_layers", "ve_layers"):
        v = d.get(k)
        if isinstance(v, (list, tuple)) and len(v) > LIMITS["layer_list"]:
            bad.append(f"{k} has {len(v)} entries, over the limit {LIMITS['layer_list']}")
    L, rs, re_, r = num("num_layers"), num("recur_start"), num("recur_end"), num("recur_repeats")
    if (L is not None and L <= LIMITS["num_layers"] and rs is not None and re_ is not None and r is not None
            and r <= LIMITS["recur_repeats"] and 0 <= rs <= re_ < L):
        virtual = L + (re_ - rs + 1) * (r - 1)
        if virtual > LIMITS["virtual_layers"]:
            bad.append(f"recurrence runs {virtual} layers per token, over the limit {LIMITS['virtual_layers']}")
    V = num("vocab_size")
    if not bad and None not in (L, D, V) and L >= 1 and D >= 1:
        hidden = (m or 2.0) * D
        tied = d.get("tie_embeddings", True) is not False
        params = V * D * (1 if tied else 2) + L * (2 * D * D + 2 * D * hidden)  # q, o, MLP in and out: a lower bound
        if params > LIMITS["params"]:
            bad.append(f"vocab_size {V}, num_layers {L}, model_dim {D} make about {params:.3g} parameters, "
                       f"over the limit {LIMITS['params']} (2^30)")
    return bad


@dataclass
class GPTConfig:
    # --- baseline shape ---
    vocab_size: int = 1024
    num_layers: int = 9
    model_dim: int = 512
    num_heads: int = 8
    num_kv_heads: int = 4
    mlp_mult: float = 2.0  # hidden = int(mlp_mult * model_dim)
    activation: str = "relu2"  # relu(x)^2 | leaky_relu(x, leaky_slope)^2
    leaky_slope: float = 0.5
    tie_embeddings: bool = True
    tied_embed_init_std: float = 0.005
    logit_softcap: float | None = 30.0  # None or 0 = no softcap
    rope_base: float = 10000.0
    rope_dims: int | None = None  # partial RoPE: rotate the first rope_dims of each head
    # NTK base stretch for sequences longer than this (records with "YaRN"); None = off
    rope_train_seq_len: int | None = None
    qk_norm: bool = True
    qk_gain_init: float = 1.5
    unet_skips: bool = True
    bos_id: int = 1
    # --- competitor techniques (all off by default) ---
    bigram_buckets: int = 0  # BigramHash table rows; 0 = off
    bigram_dim: int = 128
    bigram_bos_bucket: bool = True  # BOS positions use the fixed bucket too (else only position 0)
    smear_gate: bool = False
    smear_mode: str = "lerp"  # lerp: (1-g) x_t + g x_{t-1}; add: x_t + g x_{t-1}
    xsa: bool = False
    xsa_layers: tuple[int, ...] | None = None  # None with xsa=True = every layer
    value_residual: bool = False
    ve_layers: tuple[int, ...] = ()  # value-embedding layers; () = off
    ve_dim: int = 128
    recur_start: int | None = None
    recur_end: int | None = None  # inclusive
    recur_repeats: int = 1  # total passes over blocks[recur_start..recur_end]
    parallel_residual_start: int | None = None
    gated_attention: bool = False
    attn_gate_dim: int | None = None  # gate reads the first attn_gate_dim channels; None = all
    attn_gate_bias: bool = True
    ln_scale: bool = False

    def __post_init__(self) -> None:
        # JSON gives lists; keep tuples so equality and hashing behave.
        if isinstance(self.xsa_layers, list):
            self.xsa_layers = tuple(self.xsa_layers)
        if isinstance(self.ve_layers, list):
            self.ve_layers = tuple(self.ve_layers)
        if self.logit_softcap == 0:
            self.logit_softcap = None
        self.validate()

    # ---------------- derived values ----------------
    @property
    def head_dim(self) -> int:
        return self.model_dim // self.num_heads

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def mlp_hidden(self) -> int:
        return int(self.mlp_mult * self.model_dim)

    @property
    def recurrent(self) -> bool:
        return self.recur_start is not None and self.recur_repeats > 1

    def layer_schedule(self) -> list[int]:
        """Physical block index of every virtual layer, in execution order."""
        if not self.recurrent:
            return list(range(self.num_layers))
        seg = list(range(self.recur_start, self.recur_end + 1))
        return (
            list(range(self.recur_start))
            + seg * self.recur_repeats
            + list(range(self.recur_end + 1, self.num_layers))
        )

    @property
    def num_encoder_layers(self) -> int:
        """Virtual layers before the U-Net turn (0 without skips)."""
        return len(self.layer_schedule()) // 2 if self.unet_skips else 0

    @property
    def num_skip_weights(self) -> int:
        if not self.unet_skips:
            return 0
        n = len(self.layer_schedule())
        return min(n // 2, n - n // 2)

    def xsa_layer_set(self) -> frozenset[int]:
        if not self.xsa:
            return frozenset()
        if self.xsa_layers is None:
            return frozenset(range(self.num_layers))
        return frozenset(self.xsa_layers)

    # ---------------- validation ----------------
    def validate(self) -> None:
        _check_types(self)
        over = limit_problems(self.to_dict())
        if over:
            raise GolfpackError("invalid GPTConfig: " + "; ".join(over))
        problems: list[str] = []

        def need(cond: bool, msg: str) -> None:
            if not cond:
                problems.append(msg)

        for name in ("vocab_size", "num_layers", "model_dim", "num_heads", "num_kv_heads"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1 (got {getattr(self, name)})")
        if problems:
            raise GolfpackError("invalid GPTConfig: " + "; ".join(problems))
        L, D, H, KV = self.num_layers, self.model_dim, self.num_heads, self.num_kv_heads
        need(D % H == 0, f"model_dim {D} is not divisible by num_heads {H}")
        need(H % KV == 0, f"num_heads {H} is not divisible by num_kv_heads {KV}")
        need(D % H != 0 or (D // H) % 2 == 0, f"head_dim {D // H if H else '?'} must be even for RoPE")
        need(math.isfinite(self.mlp_mult) and self.mlp_mult > 0 and int(self.mlp_mult * D) >= 1,
             f"mlp_mult {self.mlp_mult} gives no hidden units at model_dim {D}")
        need(self.activation in ACTIVATIONS, f"activation {self.activation!r} not in {ACTIVATIONS}")
        need(math.isfinite(self.leaky_slope) and self.leaky_slope >= 0,
             f"leaky_slope must be finite and >= 0 (got {self.leaky_slope})")
        need(self.tied_embed_init_std > 0, "tied_embed_init_std must be > 0")
        need(self.logit_softcap is None or (math.isfinite(self.logit_softcap) and self.logit_softcap > 0),
             f"logit_softcap must be > 0, or 0/None for none (got {self.logit_softcap})")
        need(math.isfinite(self.rope_base) and self.rope_base > 1, f"rope_base must be > 1 (got {self.rope_base})")
        hd = D // H if D % H == 0 else None
        if self.rope_dims is not None and hd is not None:
            need(2 <= self.rope_dims <= hd and self.rope_dims % 2 == 0,
                 f"rope_dims must be even and in [2, head_dim={hd}] (got {self.rope_dims})")
        if self.rope_train_seq_len is not None:
            need(self.rope_train_seq_len >= 1, "rope_train_seq_len must be >= 1 or None")
            # the NTK stretch raises base to the power r/(r-2): undefined for r = 2
            need(hd is None or (self.rope_dims or hd) >= 4, "rope_train_seq_len needs >= 4 rotated dims")
        need(0 <= self.bos_id < self.vocab_size, f"bos_id {self.bos_id} outside vocab [0, {self.vocab_size})")
        need(self.bigram_buckets == 0 or self.bigram_buckets >= 2,
             f"bigram_buckets must be 0 (off) or >= 2 (got {self.bigram_buckets})")
        need(self.bigram_dim >= 1, "bigram_dim must be >= 1")
        need(self.smear_mode in SMEAR_MODES, f"smear_mode {self.smear_mode!r} not in {SMEAR_MODES}")
        if self.xsa_layers is not None:
            need(self.xsa, "xsa_layers is set but xsa is False")
            need(len(self.xsa_layers) > 0, "xsa_layers is empty (use xsa=False)")
            bad = [i for i in self.xsa_layers if not 0 <= i < L]
            need(not bad, f"xsa_layers {bad} outside [0, {L})")
        bad = [i for i in self.ve_layers if not 0 <= i < L]
        need(not bad, f"ve_layers {bad} outside [0, {L})")
        need(len(set(self.ve_layers)) == len(self.ve_layers), f"ve_layers has duplicates: {list(self.ve_layers)}")
        need(self.ve_dim >= 1, "ve_dim must be >= 1")
        need(not self.value_residual or L >= 2, "value_residual needs at least 2 layers")
        rs, re_ = self.recur_start, self.recur_end
        if (rs is None) != (re_ is None):
            problems.append("recur_start and recur_end must be given together")
        elif rs is not None:
            need(0 <= rs <= re_ < L, f"recurrence range [{rs}, {re_}] invalid for {L} layers")
        need(self.recur_repeats >= 1, f"recur_repeats must be >= 1 (got {self.recur_repeats})")
        need(self.recur_repeats == 1 or rs is not None, "recur_repeats > 1 needs recur_start/recur_end")
        if self.parallel_residual_start is not None:
            need(0 <= self.parallel_residual_start < L,
                 f"parallel_residual_start {self.parallel_residual_start} outside [0, {L})")
        if self.attn_gate_dim is not None:
            need(self.gated_attention, "attn_gate_dim is set but gated_attention is False")
            need(1 <= self.attn_gate_dim <= D, f"attn_gate_dim must be in [1, model_dim={D}]")
        if problems:
            raise GolfpackError("invalid GPTConfig: " + "; ".join(problems))

    # ---------------- serialization ----------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("xsa_layers", "ve_layers"):
            if d[k] is not None:
                d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GPTConfig":
        if not isinstance(d, dict):
            raise GolfpackError(f"GPTConfig expects a JSON object, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GolfpackError(f"unknown GPTConfig keys: {', '.join(map(str, unknown))}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "GPTConfig":
        # Bounded (golfpack.safe_json): a hostile file gives a FormatError, never a traceback.
        return cls.from_dict(loads_bounded(text, "malformed GPTConfig JSON"))

    def replace(self, **changes: Any) -> "GPTConfig":
        return dataclasses.replace(self, **changes)


# Field -> accepted Python types (checked before value validation so that JSON
# like {"num_layers": "7"} or {"tie_embeddings": 1} fails with a clear message).
_INT, _FLOAT, _BOOL, _STR = "int", "float", "bool", "str"
_SPEC: dict[str, tuple[str, bool]] = {  # name -> (kind, optional)
    "vocab_size": (_INT, False), "num_layers": (_INT, False), "model_dim": (_INT, False),
    "num_heads": (_INT, False), "num_kv_heads": (_INT, False), "mlp_mult": (_FLOAT, False),
    "activation": (_STR, False), "leaky_slope": (_FLOAT, False), "tie_embeddings": (_BOOL, False),
    "tied_embed_init_std": (_FLOAT, False), "logit_softcap": (_FLOAT, True), "rope_base": (_FLOAT, False),
    "rope_dims": (_INT, True), "rope_train_seq_len": (_INT, True), "qk_norm": (_BOOL, False),
    "qk_gain_init": (_FLOAT, False), "unet_skips": (_BOOL, False), "bos_id": (_INT, False),
    "bigram_buckets": (_INT, False), "bigram_dim": (_INT, False), "bigram_bos_bucket": (_BOOL, False),
    "smear_gate": (_BOOL, False), "smear_mode": (_STR, False), "xsa": (_BOOL, False),
    "xsa_layers": ("ints", True), "value_residual": (_BOOL, False), "ve_layers": ("ints", False),
    "ve_dim": (_INT, False), "recur_start": (_INT, True), "recur_end": (_INT, True),
    "recur_repeats": (_INT, False), "parallel_residual_start": (_INT, True),
    "gated_attention": (_BOOL, False), "attn_gate_dim": (_INT, True), "attn_gate_bias": (_BOOL, False),
    "ln_scale": (_BOOL, False),
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _short_repr(v: Any) -> str:
    """repr for an error message that cannot itself fail or flood (a huge int's str() raises)."""
    if _is_int(v) and v.bit_length() > 64:
        return f"a {v.bit_length()}-bit integer"
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_short_repr(x) for x in v[:8]) + (", ...]" if len(v) > 8 else "]")
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


def _check_types(cfg: GPTConfig) -> None:
    bad: list[str] = []
    for name, (kind, optional) in _SPEC.items():
        v = getattr(cfg, name)
        if v is None:
            if not optional:
                bad.append(f"{name} may not be null")
            continue
        ok = {
            _INT: _is_int(v) and INT_MIN <= v <= INT_MAX,
            _FLOAT: (_is_int(v) and INT_MIN <= v <= INT_MAX) or (isinstance(v, float) and math.isfinite(v)),
            _BOOL: isinstance(v, bool),
            _STR: isinstance(v, str),
            "ints": isinstance(v, tuple) and all(_is_int(i) and INT_MIN <= i <= INT_MAX for i in v),
        }[kind]
        if not ok:
            # Bounded ints and finite floats only: the validation below formats values into
            # messages (str() of a 5000-digit int raises) and float() of a huge int overflows.
            what = {_INT: "int (64-bit)", _FLOAT: "float (finite)", "ints": "ints (64-bit)"}.get(kind, kind)
            bad.append(f"{name} must be {what}{' or null' if optional else ''} (got {_short_repr(v)})")
        elif kind == _FLOAT:
            setattr(cfg, name, float(v))
    assert set(_SPEC) == {f.name for f in dataclasses.fields(cfg)}, "update _SPEC with the new field"
    if bad:
        raise GolfpackError("invalid GPTConfig: " + "; ".join(bad))
