"""Byte-count tables for bits-per-byte, from a SentencePiece model.

The challenge scores a model in bits per UTF-8 byte of the (normalized) text,
not per token, so that tokenizers can be compared. The bytes a target token
stands for are counted from three per-token tables (FIELD_GUIDE section 2):

    bytes(tgt) = base_bytes[tgt] + (has_leading_space[tgt] and not is_boundary[prev])

- control / unknown / unused pieces (pad, BOS, EOS, unk): 0 bytes, boundary.
- byte-fallback pieces (<0x..>): 1 byte each.
- normal pieces: UTF-8 length after dropping ONE leading "▁" (U+2581); the
  dropped "▁" is the space byte, counted only when the previous token is not a
  boundary. So a "▁word" right after BOS does not count its space: documents
  are written BOS + encode(text) and the text itself has no leading space
  after normalization.

Consequence (checked in tests/test_data_bytes.py): for one document encoded
after BOS, the counted bytes equal len(sp.decode(ids).encode('utf-8')) minus 1
if the first piece starts with "▁" (decode keeps that space, the count drops it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from golfpack.errors import GolfpackError

SPACE_MARK = "\u2581"  # "▁", SentencePiece's whitespace symbol


@dataclass(frozen=True)
class ByteTables:
    """Per-token byte tables; all three arrays have length V (the table size)."""

    base_bytes: np.ndarray  # int16[V]
    has_leading_space: np.ndarray  # bool[V]
    is_boundary: np.ndarray  # bool[V]

    def __post_init__(self) -> None:
        n = len(self.base_bytes)
        if len(self.has_leading_space) != n or len(self.is_boundary) != n:
            raise GolfpackError(
                "ByteTables: arrays differ in length "
                f"({n}, {len(self.has_leading_space)}, {len(self.is_boundary)})"
            )

    @property
    def vocab_size(self) -> int:
        return int(len(self.base_bytes))

    def to_torch(self, device=None):
        """(base_bytes int16, has_leading_space bool, is_boundary bool) torch tensors."""
        import torch

        return (
            torch.as_tensor(self.base_bytes, dtype=torch.int16, device=device),
            torch.as_tensor(self.has_leading_space, dtype=torch.bool, device=device),
            torch.as_tensor(self.is_boundary, dtype=torch.bool, device=device),
        )


def load_sentencepiece(model_path_or_processor):
    """A SentencePieceProcessor from a path (or the processor itself), with a clear error."""
    import sentencepiece as spm

    if isinstance(model_path_or_processor, spm.SentencePieceProcessor):
        return model_path_or_processor
    path = os.fspath(model_path_or_processor)
    if not os.path.isfile(path):
        raise GolfpackError(f"tokenizer model not found: {path}")
    sp = spm.SentencePieceProcessor()
    try:
        ok = sp.Load(path)
    except Exception as e:  # sentencepiece raises OSError/RuntimeError with C++ text
        raise GolfpackError(f"{path}: not a SentencePiece model ({e})") from None
    if not ok:
        raise GolfpackError(f"{path}: not a SentencePiece model")
    return sp


def build_byte_tables(sp_model_path_or_processor, vocab_size: int | None = None) -> ByteTables:
    """Byte tables for a SentencePiece tokenizer.

    vocab_size larger than the tokenizer's pads the tables with boundary tokens
    of 0 bytes (models often round their vocab up); smaller is an error, since
    the tokenizer can emit ids the model has no row for.
    """
    sp = load_sentencepiece(sp_model_path_or_processor)
    n_sp = int(sp.get_piece_size())
    if vocab_size is None:
        vocab_size = n_sp
    vocab_size = int(vocab_size)
    if vocab_size < n_sp:
        raise GolfpackError(
            f"vocab_size {vocab_size} is smaller than the tokenizer's {n_sp} pieces"
        )
    base = np.zeros(vocab_size, dtype=np.int16)
    space = np.zeros(vocab_size, dtype=np.bool_)
    boundary = np.ones(vocab_size, dtype=np.bool_)
    for i in range(n_sp):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        if sp.is_byte(i):
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith(SPACE_MARK):
            space[i] = True
            piece = piece[1:]
        base[i] = len(piece.encode("utf-8"))
    return ByteTables(base, space, boundary)


def count_bytes(prev_tokens, target_tokens, tables: ByteTables, *, per_token: bool = False):
    """Bytes the targets stand for, given each target's previous token.

    prev_tokens and target_tokens are same-shape integer arrays (numpy or
    anything np.asarray accepts). Returns the int total, or with per_token=True
    an int64 array of the targets' shape.
    """
    prev = np.asarray(prev_tokens)
    tgt = np.asarray(target_tokens)
    if prev.shape != tgt.shape:
        raise GolfpackError(f"count_bytes: shapes differ: prev {prev.shape} vs target {tgt.shape}")
    if tgt.size:
        for name, a in (("prev", prev), ("target", tgt)):
            if not np.issubdtype(a.dtype, np.integer):
                raise GolfpackError(f"count_bytes: {name} tokens must be integers, got {a.dtype}")
            lo, hi = int(a.min()), int(a.max())
            if lo < 0 or hi >= tables.vocab_size:
                raise GolfpackError(
                    f"count_bytes: {name} token id out of range [{lo}, {hi}] for "
                    f"byte tables of size {tables.vocab_size}"
                )
    n = tables.base_bytes[tgt].astype(np.int64)
    n += (tables.has_leading_space[tgt] & ~tables.is_boundary[prev]).astype(np.int64)
    return n if per_token else int(n.sum())


def count_stream_bytes(tokens, tables: ByteTables) -> int:
    """Bytes of every target of a token stream (targets are tokens[1:])."""
    t = np.asarray(tokens)
    if t.size < 2:
        return 0
    return count_bytes(t[:-1], t[1:], tables)
