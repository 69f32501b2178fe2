"""A seed recipe: one competitor system in golfpack's own config vocabulary.

A `Recipe` holds, for one entry of ../shared/seeds (the challenge PR it reproduces):

    model      GPTConfig fields (golfpack.model.config)
    train      TrainConfig fields (golfpack.train.config)
    codec      the seed's own compression recipe (`CodecRecipe`: bits per tensor class as a
               codec.spec rule list, quantizer, clip, pruning, LQER, coders)
    eval       the seed's eval mode and its TTT variant with the seed's settings (`EvalRecipe`)
    tokenizer  "sp1024" or "sp8192" (the shared tokenizer the seed trained with)
    differences  what golfpack does not reproduce, and why; every setting the seed states that
               is not in the fields above is named here, so nothing is silently dropped
    tiny       overrides that shrink the same architecture to a few hundred thousand parameters
               for CPU runs and CI (every technique flag stays on; see `Recipe.at_scale`)

Everything is plain data: `golfpack recipe show NAME` prints it as JSON.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from golfpack.errors import GolfpackError

SCALES = ("tiny", "full")
EVAL_MODES = ("plain", "sliding", "doc_aware")
TOKENIZERS = {"sp1024": ("fineweb_1024_bpe.model", 1024), "sp8192": ("fineweb_8192_bpe.model", 8192)}


@dataclass(frozen=True)
class CodecRecipe:
    """The seed's own artifact recipe (golfpack.recipes.seed_codec encodes with it)."""

    bits: str  # codec.spec rules: "6", "mlp=5,attn=6", "embed=float16" (float16: fp16 passthrough)
    method: str = "rtn"  # "rtn" | "gptq"
    clip: str = "absmax"  # codec.quant.ClipSpec of every quantized tensor
    prune: float = 0.0  # magnitude pruning: this fraction of each quantized tensor's symbols -> 0
    lqer_rank: int = 0  # LQER low-rank correction of rank r on the `lqer_top` tensors of largest
    lqer_top: int = 0  #   predicted loss increase (0: none)
    lqer_bits: int = 4
    coders: tuple[str, ...] = ("zstd",)  # per stream the smallest of these (codec.coders)
    min_numel: int = 4096  # smaller tensors (and 1-D / control tensors) stay float


@dataclass(frozen=True)
class EvalRecipe:
    mode: str = "sliding"  # plain | sliding | doc_aware
    seq_len: int = 1024
    stride: int | None = 64
    ttt: str | None = None  # TTT method (golfpack.evaluate.ttt_config.METHODS) or None
    ttt_config: dict = field(default_factory=dict)  # TTTConfig overrides (the seed's settings)


@dataclass(frozen=True)
class Recipe:
    name: str
    pr: int
    title: str
    tokenizer: str
    model: dict
    train: dict
    codec: CodecRecipe
    eval: EvalRecipe
    seed_val_bpb: float  # what the seed reports (8xH100, full data): context, not a target here
    seed_artifact_bytes: int  # the seed's stated artifact size
    differences: tuple[str, ...]
    tiny: dict  # {"model": {...}, "train": {...}, "eval": {...}, "ttt_config": {...}}
    notes: tuple[str, ...] = ()  # how ambiguous seed settings were read

    # ------------------------------------------------------------------ views
    def at_scale(self, scale: str, vocab_size: int | None = None) -> "Recipe":
        """This recipe at `scale`; vocab_size (a tokenizer override) replaces the model's vocab."""
        if scale not in SCALES:
            raise GolfpackError(f"--scale must be one of {', '.join(SCALES)}, got {scale!r}")
        model, train, ev, ttt = dict(self.model), dict(self.train), self.eval, dict(self.eval.ttt_config)
        if scale == "tiny":
            model.update(self.tiny.get("model", {}))
            train.update(TINY_TRAIN)
            if train.get("swa_every"):  # the seed averages: keep it, a snapshot every 5 tiny steps
                train["swa_every"] = 5
            train.update(self.tiny.get("train", {}))
            e = {**TINY_EVAL, **self.tiny.get("eval", {})}
            ev = dataclasses.replace(ev, seq_len=e["seq_len"], stride=e["stride"] if ev.stride is not None else None)
            ttt.update(tiny_ttt(ev.ttt, ttt, ev.seq_len))
            ttt.update(self.tiny.get("ttt_config", {}))
        codec = self.codec
        if scale == "tiny":  # at d=64 a K/V projection has 2,048 weights: the recipe must still reach it
            codec = dataclasses.replace(codec, min_numel=TINY_MIN_NUMEL)
        if vocab_size is not None:
            model["vocab_size"] = int(vocab_size)
        return dataclasses.replace(self, model=model, train=train, codec=codec,
                                   eval=dataclasses.replace(ev, ttt_config=ttt))

    def model_config(self):
        from golfpack.model import GPTConfig

        return GPTConfig.from_dict(dict(self.model))

    def train_config(self, **overrides):
        from golfpack.train.config import TrainConfig

        return TrainConfig.from_dict({**self.train, **{k: v for k, v in overrides.items() if v is not None}})

    def ttt_config(self):
        """The resolved TTTConfig of the seed's TTT (None without TTT)."""
        if self.eval.ttt is None:
            return None
        from golfpack.evaluate.ttt_config import TTTConfig

        return TTTConfig.for_method(self.eval.ttt, dict(self.eval.ttt_config))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["codec"]["coders"] = list(self.codec.coders)
        return d

    def validate(self) -> None:
        """Every config section builds (a recipe that cannot run is a bug, caught by the tests)."""
        if self.tokenizer not in TOKENIZERS:
            raise GolfpackError(f"recipe {self.name}: unknown tokenizer {self.tokenizer!r}")
        if self.eval.mode not in EVAL_MODES:
            raise GolfpackError(f"recipe {self.name}: eval mode {self.eval.mode!r} not in {EVAL_MODES}")
        self.model_config()
        self.train_config()
        self.ttt_config()
        from golfpack.codec import spec
        from golfpack.codec.encode import check_coders

        spec.parse_rules(self.codec.bits.replace("float16", "float"))
        check_coders(self.codec.coders)


# A few seconds of CPU: enough steps that the weights leave their init (zero-init projections
# become nonzero), few enough that five recipes fit in CI.
TINY_TRAIN = {"batch_tokens": 4096, "seq_len": 128, "steps": 20, "minutes": 0.0, "lr_warmup_steps": 0,
              "warmdown_steps": 10, "muon_momentum_warmup_steps": 10, "log_every": 10,
              "val_every": 0, "grad_accum": 1}
TINY_MIN_NUMEL = 512
TINY_EVAL = {"seq_len": 128, "stride": 32}


def tiny_ttt(method: str | None, cfg: dict, seq_len: int) -> dict:
    """The seed's TTT geometry shrunk to tiny eval windows (its method and rates stay)."""
    if method is None:
        return {}
    out = {"context": seq_len, "chunk": seq_len // 4, "doc_batch": 4, "time_limit_s": None}
    if "rank" in cfg:
        out["rank"] = min(int(cfg["rank"]), 8)
    if "epochs" in cfg:
        out["epochs"] = min(int(cfg["epochs"]), 2)
    if "sgd_epochs" in cfg:
        out["sgd_epochs"] = min(int(cfg["sgd_epochs"]), 2)
    if "max_doc_len" in cfg:
        out["max_doc_len"] = None
    out["sgd_chunk_tokens"] = 1024
    out["sgd_batch"] = 4
    if method == "phased":
        out["prefix_docs"] = 8
        out["phases"] = min(int(cfg.get("phases", 3)), 2)
    return out
