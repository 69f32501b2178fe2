"""Validation loss and bpb during training (the challenge's plain mode).

The val stream is truncated to ((N - 1) // L) * L + 1 tokens, cut into
non-overlapping L-token windows, and rank r of W scores windows
[S*r/W, S*(r+1)/W). Per-token CE is summed in float64, and tokens and bytes
are counted in float64 and all-reduced, so val_bpb = (loss_sum / tokens / ln 2)
* tokens / bytes. `max_tokens` keeps only the first windows (periodic evals on
CPU); the final number in train_log.json says how many tokens it covered.
"""
from __future__ import annotations

import math
from contextlib import nullcontext

import numpy as np
import torch

from golfpack.data.bytes import ByteTables
from golfpack.errors import GolfpackError
from golfpack.train.distributed import all_reduce_sum


@torch.no_grad()
def evaluate_val(model, tokens: np.ndarray, seq_len: int, *, tables: ByteTables | None = None,
                 max_tokens: int = 0, batch_tokens: int = 65_536, rank: int = 0, world_size: int = 1,
                 device="cpu", autocast_dtype: torch.dtype | None = None) -> dict:
    n_windows = (int(tokens.size) - 1) // seq_len
    if max_tokens:
        n_windows = min(n_windows, max(max_tokens // seq_len, 1))
    if n_windows < 1:
        raise GolfpackError(f"val data has {tokens.size} tokens: too short for seq_len {seq_len}")
    if tables is not None and int(tokens[: n_windows * seq_len + 1].max()) >= tables.vocab_size:
        raise GolfpackError("val tokens exceed the tokenizer's vocabulary")
    lo, hi = n_windows * rank // world_size, n_windows * (rank + 1) // world_size
    per_batch = max(batch_tokens // seq_len, 1)
    device = torch.device(device)
    luts = tables.to_torch(device) if tables is not None else None
    loss_sum = tok = nbytes = 0.0
    was_training = model.training
    model.eval()
    ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
    for w0 in range(lo, hi, per_batch):
        w1 = min(w0 + per_batch, hi)
        chunk = torch.from_numpy(np.asarray(tokens[w0 * seq_len : w1 * seq_len + 1], dtype=np.int64)).to(device)
        x = chunk[:-1].reshape(-1, seq_len)
        y = chunk[1:].reshape(-1, seq_len)
        with ctx:
            nll = model(x, y, reduction="none")
        loss_sum += float(nll.double().sum())
        tok += float(y.numel())
        if luts is not None:
            base, space, boundary = luts
            b = base[y].to(torch.int64) + (space[y] & ~boundary[x]).to(torch.int64)
            nbytes += float(b.sum())
    model.train(was_training)
    loss_sum, tok, nbytes = all_reduce_sum([loss_sum, tok, nbytes], device)
    val_loss = loss_sum / tok
    out = {"val_loss": val_loss, "val_tokens": int(tok), "val_bytes": int(nbytes) if luts is not None else None,
           "val_bpb": None}
    if luts is not None and nbytes > 0:
        out["val_bpb"] = val_loss / math.log(2.0) * tok / nbytes
    return out
