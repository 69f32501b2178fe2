"""Bounds on the numbers a user gives evaluation and test-time training (issue 20).

`golfpack eval`, `golfpack export` / `submit` and a TTT config file take window lengths, strides,
token counts, batch sizes, epochs and learning rates. Without an upper bound a typo or a hostile
config runs for ever (epochs 10^12), asks for the whole validation set in one forward pass (batch
10^12), or ends in a traceback (threads 10^12 overflows torch's int). Each bound is far above any
Parameter Golf setting; the same table is in SECURITY.md ("Input limits").

`int_flag` is an argparse type: the value is refused while the command line is parsed, before any
file is read, with one line naming the flag.
"""
from __future__ import annotations

import argparse

from golfpack.model.config import LIMITS as MODEL_LIMITS

EVAL_LIMITS: dict[str, int] = {
    # a window no longer than the longest sequence a model config may be trained for
    "seq_len": MODEL_LIMITS["rope_train_seq_len"],  # 2^20
    # 2^36 uint16 tokens are 128 GiB of shards, more than the evaluator (which holds the stream in
    # memory) can read; FineWeb's validation set is 62M tokens
    "max_tokens": 1 << 36,
    "batch": 4096,  # windows (or documents) side by side in one forward pass
    "tokens_per_pass": 1 << 24,  # batch x seq_len: 16M tokens, already 64 GiB of fp32 logits at vocab 1024
    "threads": 4096,
    "epochs": 1000,  # TTT steps per chunk, SGD epochs, phases
    "rank": 4096,  # LoRA rank
    "lr": 10,  # any TTT learning rate (the records use 1e-4 .. 1e-2), and weight decay
    "alpha": 65536,
    "temperature_lo_hi": 1000,  # temperature in [1/1000, 1000]: outside it logits / T overflow or vanish
    "seed": (1 << 63) - 1,  # torch.Generator.manual_seed's range
    "cap": 1 << 40,  # `check --cap` bytes (the format's size cap)
}


def int_flag(flag: str, lo: int, hi: int):
    """argparse type for an integer flag in [lo, hi]: 'nan', 'inf', '1e12' and '1.5' are not integers."""

    def parse(text: str) -> int:
        try:
            v = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer in [{lo}, {hi}], got {text[:40]!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be an integer in [{lo}, {hi}], got {text[:40]}")
        return v

    parse.__name__ = flag  # argparse names the type in some messages
    return parse


__all__ = ["EVAL_LIMITS", "int_flag"]
