"""Sequential training batches from token shards (the challenge's TokenStream).

The shards are read in sorted order as one endless stream (wrapping around at
the end); every step takes the next contiguous `batch_tokens + 1` tokens, forms
x = chunk[:-1], y = chunk[1:] as [batch_tokens / seq_len, seq_len] rows, and
advances by batch_tokens, so each stream token is a target exactly once per
pass. Rank r of W takes rows [n*r/W, n*(r+1)/W) of that global batch and
splits them into `grad_accum` micro-batches.

Unlike the baseline (which gives each rank its own `local + 1` span), the
global batch here does not depend on the world size: a 2-rank run sees exactly
the rows a 1-rank run sees, which is what makes DDP testable against a single
process. A seed picks the starting offset in the stream (seed 0 = the start);
nothing touches global RNG state.
"""
from __future__ import annotations

import numpy as np
import torch

from golfpack.data.shards import read_shard, resolve_shards
from golfpack.errors import GolfpackError


class TokenStream:
    """An endless stream over shards; `window(n, advance)` returns n tokens and moves `advance`."""

    def __init__(self, paths_or_glob, start: int = 0):
        self.paths = resolve_shards(paths_or_glob)
        self.shards = [read_shard(p) for p in self.paths]  # memmaps: no RAM until touched
        self.sizes = [int(s.size) for s in self.shards]
        self.total = sum(self.sizes)
        if self.total < 2:
            raise GolfpackError(f"training data holds {self.total} tokens; need at least 2")
        self.file_idx = 0
        self.pos = 0
        self.skip(start % self.total)

    def skip(self, n: int) -> None:
        n %= self.total
        while n > 0:
            left = self.sizes[self.file_idx] - self.pos
            if n < left:
                self.pos += n
                return
            n -= left
            self.file_idx = (self.file_idx + 1) % len(self.shards)
            self.pos = 0
        while self.sizes[self.file_idx] == self.pos:  # step over empty shards
            self.file_idx = (self.file_idx + 1) % len(self.shards)
            self.pos = 0

    def window(self, n: int, advance: int) -> np.ndarray:
        out = np.empty(n, dtype=np.int64)
        f, pos, filled = self.file_idx, self.pos, 0
        while filled < n:
            take = min(n - filled, self.sizes[f] - pos)
            out[filled : filled + take] = self.shards[f][pos : pos + take]
            filled += take
            pos += take
            if pos >= self.sizes[f]:
                f, pos = (f + 1) % len(self.shards), 0
        self.skip(advance)
        return out


class DistributedBatches:
    """Per-rank micro-batches of one global batch per step."""

    def __init__(self, paths_or_glob, *, batch_tokens: int, seq_len: int, rank: int = 0,
                 world_size: int = 1, grad_accum: int = 1, seed: int = 0, device="cpu"):
        if seq_len < 1 or batch_tokens < seq_len or batch_tokens % seq_len:
            raise GolfpackError(f"batch_tokens ({batch_tokens}) must be a positive multiple of seq_len ({seq_len})")
        rows = batch_tokens // seq_len
        if rows % (world_size * grad_accum):
            raise GolfpackError(
                f"the global batch of {rows} sequences does not split evenly over "
                f"{world_size} rank(s) x {grad_accum} accumulation step(s)"
            )
        self.batch_tokens, self.seq_len = batch_tokens, seq_len
        self.rank, self.world_size, self.grad_accum = rank, world_size, grad_accum
        self.rows_per_micro = rows // (world_size * grad_accum)
        self.device = torch.device(device)
        # A seed-dependent start offset (not a global-RNG draw): different seeds see
        # different data order, the same seed the same.
        start = 0
        if seed:
            g = np.random.default_rng(seed)
            start = int(g.integers(0, 1 << 62))
        self.stream = TokenStream(paths_or_glob, start=start)
        # Data smaller than one batch wraps inside a step (tokens repeat); allowed, reported.
        self.wraps_within_batch = self.stream.total < batch_tokens + 1

    def next(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's grad_accum (x, y) micro-batches of the next global batch."""
        chunk = self.stream.window(self.batch_tokens + 1, self.batch_tokens)
        x = chunk[:-1].reshape(-1, self.seq_len)
        y = chunk[1:].reshape(-1, self.seq_len)
        per_rank = self.rows_per_micro * self.grad_accum
        r0 = self.rank * per_rank
        out = []
        for m in range(self.grad_accum):
            a = r0 + m * self.rows_per_micro
            b = a + self.rows_per_micro
            xm = torch.from_numpy(np.ascontiguousarray(x[a:b])).to(self.device, non_blocking=True)
            ym = torch.from_numpy(np.ascontiguousarray(y[a:b])).to(self.device, non_blocking=True)
            out.append((xm, ym))
        return out
