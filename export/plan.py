"""The code bytes a planner reserves: the size of the script a record of this plan will ship.

Before encoding, the artifact's exact needs are unknown (which coders win which streams, whether
LQER is chosen), so `reserve` builds the script of the plan's superset (needs.for_plan: every
allowed coder, LQER if the planner may pick it, the config's model features) and measures it.
Exporting the planned artifact with those same flags (`golfpack submit`, or `export --flags`)
gives a script of exactly that size; exporting it with its own, smaller needs gives one at most
that size, so code + artifact stays within the budget either way.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from golfpack.export import needs as _needs
from golfpack.export.record import settings_for, ttt_settings
from golfpack.export.script import Settings, build_script


@dataclass(frozen=True)
class Reservation:
    code_bytes: int
    flags: frozenset
    settings: Settings


def checkpoint_config(ck) -> tuple[dict, bool]:
    """(GPTConfig dict of a checkpoint, whether the script must carry it: the artifact will hold
    ck.config, which may be absent or partial)."""
    from golfpack.model.load import as_config, infer_config

    def shape(n):
        return tuple((ck.quantized[n].symbols if n in ck.quantized else ck.floats[n]).shape)

    cfg = as_config(ck.config) if ck.config is not None else infer_config(
        {n: torch.empty(shape(n), device="meta") for n in ck.order})
    d = cfg.to_dict()
    return d, ck.config != d


def reserve(ck, coders, lqer: bool, *, eval_mode: str = "sliding", ttt: str | None = None,
            ttt_config: str | None = None, seq_len: int | None = None, stride: int | None = None,
            train_script: bytes | None = None, flags=None, native: bool = True) -> Reservation:
    """The script of this plan's superset and its size (what --code-bytes auto reserves)."""
    cfg, carry = checkpoint_config(ck)
    settings = settings_for(eval_mode, seq_len, stride, ttt_settings(ttt, ttt_config, seq_len, stride),
                            cfg if carry else None)
    fl = frozenset(flags) if flags is not None else _needs.for_plan(cfg, coders, lqer, eval_mode, ttt, native)
    return Reservation(len(build_script(fl, settings, train_script)), fl, settings)
