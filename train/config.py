"""TrainConfig: the optimizer / schedule / averaging / QAT knobs of `golfpack train`.

These are the keys of the optional "train" section of CFG.json (every key is
optional; defaults follow the challenge baseline where it has one):

  batch_tokens (524288)        global tokens per optimizer step, over all ranks
  seq_len (1024)               training sequence length
  grad_accum (1)               micro-batches per rank per step
  steps (20000)                step limit (0 = no limit; then minutes must be set)
  minutes (0)                  wallclock budget in minutes (0 = none); training stops when spent
  seed (1337)                  model init seed (torch.Generator-free: a forked RNG, globals untouched)
  data_offset_by_seed (false)  start the data stream at a seed-derived offset instead of token 0

  matrix_lr (0.04)             Muon lr for 2-D block matrices
  muon_momentum (0.95), muon_momentum_warmup_start (0.85), muon_momentum_warmup_steps (500)
  muon_backend_steps (5)       Newton-Schulz iterations
  muon_dtype ("auto")          Newton-Schulz precision: "bf16", "fp32", auto = bf16 on CUDA, fp32 on CPU
  tied_embed_lr (0.05)         Adam lr of tok_emb when the head is tied
  embed_lr (0.6)               Adam lr of tok_emb when untied (and of other embedding tables)
  head_lr (0.008)              Adam lr of an untied lm_head
  scalar_lr (0.04)             Adam lr of vectors/scalars and control tensors
  beta1 (0.9), beta2 (0.95), adam_eps (1e-8)
  weight_decay (0.0)           decoupled weight decay for Muon matrices
  embed_weight_decay (0.0)     decoupled weight decay for embeddings / head (AdamW)
  grad_clip (0.0)              global grad-norm clip (0 = off)
  neftune_alpha (0.0)          NEFTune: uniform noise alpha/sqrt(T*D) on the token embeddings while
                               training (0 = off; train/regularizers.py)
  z_loss (0.0)                 z-loss weight: + z_loss * mean(logsumexp(logits)^2) (0 = off)

  lr_warmup_steps (0)          linear lr warmup from 0
  warmdown_steps (1200)        step budget: linear decay to 0 over the last warmdown_steps
  warmdown_frac (0.2)          time budget: decay starts at (1 - warmdown_frac) of the budget

  ema_decay (0.0)              EMA of the weights each step (0 = off), e.g. 0.997
  swa_every (0)                during warmdown, average a snapshot every k steps (0 = off)
  qat_bits ({})                fake-quant bits per tensor class: attn, mlp, emb, head, other; {} = off
  qat_start (0.85)             QAT switch-on: a fraction of the run if <= 1 (progress = max of
                               step/steps and elapsed/budget), else a step number
  qat_clip ("absmax")          per-row clip for QAT: "absmax" or a number k (clip at k * row std)

  val_every (0)                periodic val every k steps (0 = only at the end)
  val_tokens (1048576)         periodic val uses the first this many val tokens (0 = all)
  final_val_tokens (0)         final val token cap (0 = the whole val shard)
  val_batch_tokens (65536)     tokens per val forward (per rank)
  log_every (10)               progress line every k steps
  autocast ("auto")            "bf16", "off", auto = bf16 on CUDA, off on CPU
  compile (false)              torch.compile the model

Saved weights: SWA average if swa_every > 0 and a snapshot was taken, else the
EMA if ema_decay > 0, else the raw weights (train_log.json says which).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from golfpack.errors import GolfpackError

QAT_CLASSES = ("attn", "mlp", "emb", "head", "other")


@dataclass
class TrainConfig:
    batch_tokens: int = 524_288
    seq_len: int = 1024
    grad_accum: int = 1
    steps: int = 20_000
    minutes: float = 0.0
    seed: int = 1337
    data_offset_by_seed: bool = False

    matrix_lr: float = 0.04
    muon_momentum: float = 0.95
    muon_momentum_warmup_start: float = 0.85
    muon_momentum_warmup_steps: int = 500
    muon_backend_steps: int = 5
    muon_dtype: str = "auto"
    tied_embed_lr: float = 0.05
    embed_lr: float = 0.6
    head_lr: float = 0.008
    scalar_lr: float = 0.04
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    embed_weight_decay: float = 0.0
    grad_clip: float = 0.0
    neftune_alpha: float = 0.0
    z_loss: float = 0.0

    lr_warmup_steps: int = 0
    warmdown_steps: int = 1200
    warmdown_frac: float = 0.2

    ema_decay: float = 0.0
    swa_every: int = 0
    qat_bits: dict = field(default_factory=dict)
    qat_start: float = 0.85
    qat_clip: Any = "absmax"

    val_every: int = 0
    val_tokens: int = 1_048_576
    final_val_tokens: int = 0
    val_batch_tokens: int = 65_536
    log_every: int = 10
    autocast: str = "auto"
    compile: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        bad: list[str] = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            t = f.type
            if t == "int" and (not isinstance(v, int) or isinstance(v, bool)):
                bad.append(f"{f.name} must be an integer (got {v!r})")
            elif t == "float":
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    bad.append(f"{f.name} must be a finite number (got {v!r})")
                else:
                    setattr(self, f.name, float(v))
            elif t == "bool" and not isinstance(v, bool):
                bad.append(f"{f.name} must be true/false (got {v!r})")
            elif t == "str" and not isinstance(v, str):
                bad.append(f"{f.name} must be a string (got {v!r})")
        if bad:
            raise GolfpackError("invalid train config: " + "; ".join(bad))

        def need(cond: bool, msg: str) -> None:
            if not cond:
                bad.append(msg)

        need(self.seq_len >= 1, "seq_len must be >= 1")
        need(self.batch_tokens >= self.seq_len and self.batch_tokens % self.seq_len == 0,
             f"batch_tokens {self.batch_tokens} must be a positive multiple of seq_len {self.seq_len}")
        need(self.grad_accum >= 1, "grad_accum must be >= 1")
        need(self.steps >= 0 and self.minutes >= 0, "steps and minutes must be >= 0")
        need(self.steps > 0 or self.minutes > 0, "give a step limit or a time budget (steps or minutes > 0)")
        for k in ("matrix_lr", "tied_embed_lr", "embed_lr", "head_lr", "scalar_lr", "weight_decay",
                  "embed_weight_decay", "grad_clip", "adam_eps",
                  "neftune_alpha", "z_loss"):
            need(getattr(self, k) >= 0, f"{k} must be >= 0")
        for k in ("muon_momentum", "muon_momentum_warmup_start", "beta1", "beta2"):
            need(0 <= getattr(self, k) < 1, f"{k} must be in [0, 1)")
        need(self.muon_backend_steps >= 1, "muon_backend_steps must be >= 1")
        need(self.muon_dtype in ("auto", "bf16", "fp32"), f"muon_dtype must be auto/bf16/fp32 (got {self.muon_dtype!r})")
        need(self.autocast in ("auto", "bf16", "off"), f"autocast must be auto/bf16/off (got {self.autocast!r})")
        for k in ("lr_warmup_steps", "warmdown_steps", "muon_momentum_warmup_steps", "swa_every", "val_every",
                  "val_tokens", "final_val_tokens"):
            need(getattr(self, k) >= 0, f"{k} must be >= 0")
        need(self.log_every >= 1, "log_every must be >= 1")
        need(self.val_batch_tokens >= 1, "val_batch_tokens must be >= 1")
        need(0 <= self.warmdown_frac <= 1, "warmdown_frac must be in [0, 1]")
        need(0 <= self.ema_decay < 1, "ema_decay must be in [0, 1)")
        need(self.qat_start > 0, "qat_start must be > 0 (a fraction in (0, 1] or a step number > 1)")
        if not isinstance(self.qat_bits, dict):
            bad.append(f"qat_bits must be an object like {{\"attn\": 6, \"mlp\": 6, \"emb\": 8}} (got {self.qat_bits!r})")
        else:
            for k, v in self.qat_bits.items():
                need(k in QAT_CLASSES, f"qat_bits key {k!r} not in {QAT_CLASSES}")
                need(isinstance(v, int) and not isinstance(v, bool) and 2 <= v <= 16,
                     f"qat_bits[{k!r}] must be an integer in [2, 16] (got {v!r})")
        c = self.qat_clip
        need(c == "absmax" or (isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0),
             f"qat_clip must be 'absmax' or a positive number (got {c!r})")
        if bad:
            raise GolfpackError("invalid train config: " + "; ".join(bad))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        if not isinstance(d, dict):
            raise GolfpackError(f"the \"train\" section must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GolfpackError(f"unknown train config keys: {', '.join(map(str, unknown))}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)
