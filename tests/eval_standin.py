"""Tiny stand-in causal LMs and byte tables for the golfpack.evaluate tests.

Not a test module: imported by tests/test_eval_*.py and by the torchrun worker
(tests/eval_dist_worker.py). Everything is synthetic and seeded.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from golfpack.data.bytes import ByteTables

BOS = 1


@dataclass
class TinyConfig:
    vocab_size: int = 40
    dim: int = 16
    heads: int = 2


class TinyLM(nn.Module):
    """One causal attention block + MLP with learned positions; logits [B, T, V].

    Learned absolute positions (not RoPE) make the loss depend on where a token
    sits in its window, so wrong window offsets show up in the loss.
    """

    def __init__(self, vocab_size: int = 40, dim: int = 16, heads: int = 2, max_len: int = 256, seed: int = 0):
        super().__init__()
        self.config = TinyConfig(vocab_size, dim, heads)
        g = torch.Generator().manual_seed(seed)
        self.emb = nn.Parameter(torch.randn(vocab_size, dim, generator=g) * 0.5)
        self.pos = nn.Parameter(torch.randn(max_len, dim, generator=g) * 0.5)
        self.qkv = nn.Parameter(torch.randn(3 * dim, dim, generator=g) / dim**0.5)
        self.proj = nn.Parameter(torch.randn(dim, dim, generator=g) / dim**0.5)
        self.fc = nn.Parameter(torch.randn(2 * dim, dim, generator=g) / dim**0.5)
        self.fc2 = nn.Parameter(torch.randn(dim, 2 * dim, generator=g) / dim**0.5)
        self.head = nn.Parameter(torch.randn(vocab_size, dim, generator=g) / dim**0.5)
        self.heads = heads

    def forward_hidden(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        x = self.emb[idx] + self.pos[:T]
        q, k, v = F.linear(F.rms_norm(x, (x.shape[-1],)), self.qkv).chunk(3, dim=-1)
        sh = lambda t: t.view(B, T, self.heads, -1).transpose(1, 2)  # noqa: E731
        a = F.scaled_dot_product_attention(sh(q), sh(k), sh(v), is_causal=True)
        x = x + F.linear(a.transpose(1, 2).reshape(B, T, -1), self.proj)
        x = x + F.linear(torch.relu(F.linear(F.rms_norm(x, (x.shape[-1],)), self.fc)).square(), self.fc2)
        return F.rms_norm(x, (x.shape[-1],))

    def logits_from_hidden(self, h: torch.Tensor) -> torch.Tensor:
        z = F.linear(h, self.head)
        return 30.0 * torch.tanh(z / 30.0)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.logits_from_hidden(self.forward_hidden(idx))


class TinyLMLogitsOnly(nn.Module):
    """The same network seen only through forward(): exercises the slice-the-logits path."""

    def __init__(self, inner: TinyLM):
        super().__init__()
        self.inner = inner
        self.config = inner.config

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.inner(idx)


def tiny_tables(vocab_size: int = 40) -> ByteTables:
    """0..3 control (pad, BOS, EOS, unk), 4..11 byte-fallback, the rest pieces; every
    third piece has a leading space, lengths 1..4 (so the space rule matters)."""
    base = np.zeros(vocab_size, np.int16)
    space = np.zeros(vocab_size, bool)
    boundary = np.ones(vocab_size, bool)
    boundary[4:] = False
    base[4:12] = 1
    for i in range(12, vocab_size):
        base[i] = 1 + i % 4
        space[i] = i % 3 == 0
    return ByteTables(base, space, boundary)


def doc_stream(n_docs: int, seed: int, vocab_size: int = 40, max_doc: int = 60, lead: int = 0) -> np.ndarray:
    """BOS-led documents of random length (1..max_doc content tokens), optionally
    preceded by `lead` tokens that belong to no BOS (a stream cut mid-document)."""
    rng = np.random.default_rng(seed)
    parts = [rng.integers(4, vocab_size, lead)]
    for _ in range(n_docs):
        parts.append([BOS])
        parts.append(rng.integers(4, vocab_size, int(rng.integers(1, max_doc + 1))))
    return np.concatenate(parts).astype(np.uint16)
