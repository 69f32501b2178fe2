"""TTTConfig: every knob of test-time training, validated (from JSON via safe_json).

Methods (evaluate/ttt.py runs them):
  lora    per-document batched LoRA, Adam(W), score each chunk then step on it
  phased  lora + global SGD phases on the already-scored prefix documents
  sgd     full-parameter score-first SGD over chunks of whole documents
  q       sgd restricted to the attention Q projections

Per-method defaults follow the records (FIELD_GUIDE section 5), scaled to a
CPU; any field can be overridden with a JSON object, e.g.
``{"rank": 16, "lr": 0.003, "targets": ["q", "v", "lm_head"]}``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from golfpack.errors import GolfpackError

METHODS = ("lora", "phased", "sgd", "q")
TARGETS = ("q", "k", "v", "o", "mlp", "lm_head")
# Which linear slots (GPT.linear_names suffixes) each target name covers.
TARGET_SUFFIXES = {
    "q": (".attn.c_q",), "k": (".attn.c_k",), "v": (".attn.c_v",), "o": (".attn.proj",),
    "mlp": (".mlp.fc", ".mlp.proj"),
}


@dataclass(frozen=True)
class TTTConfig:
    method: str = "lora"
    # Geometry (all methods): a document's targets are scored in chunks of `chunk`, each with
    # up to `context` tokens of the same document as input (context % chunk == 0).
    chunk: int = 128
    context: int = 512
    doc_batch: int = 16  # documents trained side by side (one adapter slot each)
    # Per-document LoRA (lora, phased).
    rank: int = 8
    alpha: float = 16.0
    targets: tuple = ("q", "v", "lm_head")
    lr: float = 0.01
    betas: tuple = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.0
    epochs: int = 1  # steps per chunk; only the first, pre-update forward is ever counted
    keep_a_warm: bool = False  # on reset keep a slot's A (only B is zeroed), as the phased record
    temperature: float = 1.0  # scored logits are divided by it (fixed beforehand)
    max_doc_len: int | None = None  # longer documents are scored without adapters
    time_limit_s: float | None = None  # after this, remaining documents are scored without TTT
    seed: int = 0
    # Full-parameter SGD (sgd, q, and phased's global phases). Dense trainable deltas.
    sgd_targets: tuple = ("q", "k", "v", "o", "mlp")
    sgd_controls: bool = True  # also train the float control tensors (scales, mixes, gains, skips)
    sgd_lr: float = 0.002
    sgd_momentum: float = 0.9
    sgd_epochs: int = 3
    sgd_chunk_tokens: int = 32768  # documents are grouped into chunks of at least this many targets
    sgd_batch: int = 8  # rows of `context` tokens per SGD step
    grad_clip: float = 1.0
    # Phased: global SGD after the first prefix_docs documents are scored, split into `phases`.
    phases: int = 3
    prefix_docs: int = 2500

    # ------------------------------------------------------------------ building
    @classmethod
    def for_method(cls, method: str, overrides: dict | None = None) -> "TTTConfig":
        if method not in METHODS:
            raise GolfpackError(f"unknown TTT method {method!r} (expected one of {', '.join(METHODS)})")
        base = dict(METHOD_DEFAULTS[method], method=method)
        over = dict(overrides or {})
        if "method" in over and over["method"] != method:
            raise GolfpackError(f"TTT config says method {over['method']!r} but {method!r} was requested")
        base.update(over)
        return cls.from_dict(base)

    @classmethod
    def from_dict(cls, d: dict) -> "TTTConfig":
        if not isinstance(d, dict):
            raise GolfpackError(f"TTT config must be a JSON object, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise GolfpackError(f"unknown TTT config field(s): {', '.join(unknown)}")
        vals = {}
        for k, v in d.items():
            vals[k] = tuple(v) if isinstance(v, list) else v
        cfg = cls(**vals)
        cfg.validate()
        return cfg

    @classmethod
    def from_json(cls, text: str | bytes, what: str = "TTT config", method: str | None = None) -> "TTTConfig":
        from golfpack.safe_json import loads_bounded

        d = loads_bounded(text, what)
        try:
            if not isinstance(d, dict):
                raise GolfpackError(f"must be a JSON object, got {type(d).__name__}")
            return cls.for_method(method, d) if method is not None else cls.from_dict(d)
        except GolfpackError as e:
            raise type(e)(f"{what}: {e}") from None

    def with_(self, **kw) -> "TTTConfig":
        cfg = replace(self, **kw)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        from golfpack.evaluate.limits import EVAL_LIMITS as LIM

        def integer(name, lo=1, optional=False, hi=None):
            v = getattr(self, name)
            if optional and v is None:
                return
            if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
                want = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
                raise GolfpackError(f"TTT {name} must be an integer {want}, got {_short(v)}")

        def real(name, lo=0.0, hi=math.inf, lo_open=False, optional=False):
            v = getattr(self, name)
            if optional and v is None:
                return
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < lo or v > hi or (lo_open and v == lo):
                rng = f"{'(' if lo_open else '['}{lo}, {hi}]"
                raise GolfpackError(f"TTT {name} must be a finite number in {rng}, got {_short(v)}")

        if self.method not in METHODS:
            raise GolfpackError(f"unknown TTT method {self.method!r} (expected one of {', '.join(METHODS)})")
        # Upper bounds (golfpack.evaluate.limits, SECURITY.md): without them epochs 10^12 runs for
        # ever, rank or doc_batch 10^12 end in an allocation traceback, seed 2^64 in torch's overflow.
        for n in ("chunk", "context"):
            integer(n, hi=LIM["seq_len"])
        for n in ("doc_batch", "sgd_batch"):
            integer(n, hi=LIM["batch"])
        for n in ("epochs", "sgd_epochs", "phases"):
            integer(n, hi=LIM["epochs"])
        integer("rank", hi=LIM["rank"])
        for n in ("sgd_chunk_tokens", "prefix_docs"):
            integer(n, hi=LIM["max_tokens"])
        integer("max_doc_len", optional=True, hi=LIM["max_tokens"])
        integer("seed", lo=0, hi=LIM["seed"])
        if self.context % self.chunk:
            raise GolfpackError(f"TTT context ({self.context}) must be a multiple of chunk ({self.chunk})")
        for n in ("doc_batch", "sgd_batch"):
            if getattr(self, n) * self.context > LIM["tokens_per_pass"]:
                raise GolfpackError(f"TTT {n} {getattr(self, n)} x context {self.context} is "
                                    f"{getattr(self, n) * self.context} tokens per forward pass, over the limit "
                                    f"{LIM['tokens_per_pass']}")
        for n in ("lr", "weight_decay", "sgd_lr"):
            real(n, hi=LIM["lr"])
        real("grad_clip")
        real("sgd_momentum", hi=1.0)
        real("alpha", lo_open=True, hi=LIM["alpha"])
        real("eps", lo_open=True, hi=1.0)
        real("temperature", lo=1 / LIM["temperature_lo_hi"], hi=LIM["temperature_lo_hi"])
        real("time_limit_s", optional=True)
        if not (isinstance(self.betas, tuple) and len(self.betas) == 2
                and all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in self.betas)):
            raise GolfpackError(f"TTT betas must be two numbers in [0, 1), got {self.betas!r}")
        for n in ("keep_a_warm", "sgd_controls"):
            if not isinstance(getattr(self, n), bool):
                raise GolfpackError(f"TTT {n} must be true or false, got {getattr(self, n)!r}")
        for n, allowed in (("targets", TARGETS), ("sgd_targets", tuple(TARGET_SUFFIXES))):
            t = getattr(self, n)
            if not isinstance(t, tuple) or not all(isinstance(x, str) for x in t) or len(set(t)) != len(t):
                raise GolfpackError(f"TTT {n} must be a list of distinct names, got {t!r}")
            bad = [x for x in t if x not in allowed]
            if bad:
                raise GolfpackError(f"TTT {n}: unknown target(s) {bad} (allowed: {', '.join(allowed)})")
        if self.method in ("lora", "phased") and not self.targets:
            raise GolfpackError("TTT targets must name at least one layer for LoRA")
        if self.method in ("sgd", "phased") and not (self.sgd_targets or self.sgd_controls):
            raise GolfpackError("TTT sgd_targets is empty and sgd_controls is false: nothing to train")
        if self.method == "q" and self.sgd_targets != ("q",):
            raise GolfpackError(f"TTT method q trains the Q projections only; sgd_targets is {self.sgd_targets!r}")


def _short(v) -> str:
    """repr for an error line that cannot flood it (a 5000-digit int, a long string)."""
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 64:
        return f"a {v.bit_length()}-bit integer"
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


# The records' settings (FIELD_GUIDE section 5), chunk/context shortened for CPU evaluation.
METHOD_DEFAULTS = {
    "lora": dict(rank=8, alpha=16.0, targets=("q", "v", "lm_head"), lr=0.01, betas=(0.9, 0.95)),
    "phased": dict(rank=8, alpha=16.0, targets=("q", "k", "v", "o", "mlp", "lm_head"), lr=1e-3,
                   betas=(0.0, 0.99), weight_decay=0.5, keep_a_warm=True, sgd_lr=1e-3, sgd_epochs=1,
                   sgd_controls=True),
    "sgd": dict(sgd_lr=0.002, sgd_momentum=0.9, sgd_epochs=3, sgd_controls=True),
    "q": dict(sgd_targets=("q",), sgd_controls=False, sgd_lr=0.002, sgd_epochs=3),
}
