"""Which tokens each forward pass sees and which of its targets it scores.

Everything here is pure index arithmetic on the token stream (no model, no
torch), so the coverage rules can be tested by counting.

Vocabulary. The stream has N tokens t[0..N-1]; the *targets* are t[1..N-1]
(T = N-1 of them), target i being predicted from t[..i-1]. A **segment** is one
row of a forward pass:

    input  = t[start : start+length]
    target = t[start+1 : start+length+1]         (target of position j is t[start+1+j])
    scored = positions score_lo .. length-1      (targets start+1+score_lo .. start+length)

The previous token of every target, t[start+j], is the input at the same
position, so byte counting never needs anything outside the segment.

Modes (field guide section 2):

* plain: truncate the stream to ((N-1)//L)*L + 1 tokens, then non-overlapping
  windows of L, every position scored. Attention crosses documents. Up to L-1
  final targets are never scored (the challenge's rule).
* sliding, stride S (1 <= S <= L): windows of length min(L, T - ws) start at
  ws = 0, S, 2S, ... The first window scores all its positions; every later one
  scores only its tail. Two variants:
    - "exact_once" (default; challenge scripts from 04-05 on): a start ws > 0
      is kept only if ws + L - S < T, and a kept window scores positions
      L-S .. wlen-1. Full windows score their last S targets; the last window
      (the first with ws + L >= T) is cut at the stream end and scores the
      targets ws+L-S+1 .. T, between 1 and S of them. So every target 1..T is
      scored exactly once, target t seeing at least min(t, L-S+1) tokens.
    - "rescore_tail" (03-19 .. 03-29 scripts): every start ws < T is kept, a
      window scores its last min(S, wlen) positions. The trailing partial
      windows (ws + L > T, about L/S of them) each re-score the final targets,
      so those count several times in the loss, tokens and bytes.
* doc-aware: a document starts at each BOS and spans it up to and including,
  as its final target, the next document's BOS (the last one runs to the end
  of the stream; tokens before the first BOS form a document of their own).
  Documents never share a row, so there is no attention across them. A document
  longer than L is cut into consecutive L-token segments (hard cut: a segment
  does not see the previous one), or, with a stride, slid over with the sliding
  rules applied to the document alone. Every target 1..T is scored (once, for
  exact_once; rescore_tail re-scores each document's tail).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from golfpack.errors import GolfpackError

VARIANTS = ("exact_once", "rescore_tail")


@dataclass(frozen=True)
class Segments:
    """Rows of forward passes, as parallel int64 arrays (see module docstring)."""

    start: np.ndarray
    length: np.ndarray
    score_lo: np.ndarray

    def __len__(self) -> int:
        return int(self.start.size)

    @property
    def num_scored(self) -> int:
        return int((self.length - self.score_lo).sum())

    def scored_targets(self) -> np.ndarray:
        """Stream indices of every scored target, with repeats (for tests / audits)."""
        counts = self.length - self.score_lo
        first = self.start + 1 + self.score_lo
        if counts.sum() == 0:
            return np.zeros(0, dtype=np.int64)
        offsets = np.arange(counts.sum(), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        return np.repeat(first, counts) + offsets

    @staticmethod
    def concat(parts: list["Segments"]) -> "Segments":
        if not parts:
            z = np.zeros(0, dtype=np.int64)
            return Segments(z, z.copy(), z.copy())
        return Segments(
            np.concatenate([p.start for p in parts]),
            np.concatenate([p.length for p in parts]),
            np.concatenate([p.score_lo for p in parts]),
        )


def _check_lengths(seq_len: int, stride: int | None) -> None:
    if int(seq_len) < 1:
        raise GolfpackError(f"seq_len must be >= 1, got {seq_len}")
    if stride is not None and not (1 <= int(stride) <= int(seq_len)):
        raise GolfpackError(f"stride must be in [1, seq_len={seq_len}], got {stride}")


def plain_segments(num_tokens: int, seq_len: int) -> Segments:
    """Non-overlapping windows over the stream truncated to ((N-1)//L)*L + 1 tokens."""
    _check_lengths(seq_len, None)
    n_windows = max(int(num_tokens) - 1, 0) // seq_len
    start = np.arange(n_windows, dtype=np.int64) * seq_len
    return Segments(start, np.full(n_windows, seq_len, np.int64), np.zeros(n_windows, np.int64))


def sliding_segments(
    num_targets: int, seq_len: int, stride: int, variant: str = "exact_once", offset: int = 0
) -> Segments:
    """Sliding windows over the targets offset+1 .. offset+num_targets (see module docstring)."""
    _check_lengths(seq_len, stride)
    if variant not in VARIANTS:
        raise GolfpackError(f"unknown sliding variant {variant!r} (expected one of {', '.join(VARIANTS)})")
    T, L, S = int(num_targets), int(seq_len), int(stride)
    ws = np.arange(0, max(T, 0), S, dtype=np.int64)
    if variant == "exact_once":
        ws = ws[(ws == 0) | (ws + L - S < T)]
        wlen = np.minimum(L, T - ws)
        lo = np.where(ws == 0, 0, L - S)
    else:
        wlen = np.minimum(L, T - ws)
        lo = np.where(ws == 0, 0, np.maximum(wlen - S, 0))
    return Segments(ws + offset, wlen.astype(np.int64), lo.astype(np.int64))


def document_spans(tokens: np.ndarray, bos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, num_targets) of every document; they tile targets 1..N-1 exactly."""
    n = int(tokens.size)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.asarray(tokens) == bos_id).astype(np.int64)
    # The last token can only be a document's final target, never a document of its own.
    starts = starts[starts < n - 1]
    if starts.size == 0 or starts[0] != 0:
        starts = np.concatenate([np.zeros(1, np.int64), starts])  # leading tokens form a document
    ends = np.append(starts[1:], n - 1)  # final target (inclusive) = next BOS or the last token
    return starts, ends - starts


def doc_segments(
    tokens: np.ndarray, seq_len: int, stride: int | None, variant: str, bos_id: int
) -> Segments:
    """Document-aware rows: hard L-cuts, or sliding windows within each document."""
    _check_lengths(seq_len, stride)
    starts, counts = document_spans(tokens, bos_id)
    if stride is None:
        # Hard cut into L-token pieces, all scored; vectorized over documents.
        per_doc = -(-counts // seq_len)
        doc_start = np.repeat(starts, per_doc)
        doc_count = np.repeat(counts, per_doc)
        piece = np.arange(per_doc.sum(), dtype=np.int64) - np.repeat(np.cumsum(per_doc) - per_doc, per_doc)
        seg_start = doc_start + piece * seq_len
        length = np.minimum(seq_len, doc_count - piece * seq_len)
        return Segments(seg_start, length, np.zeros_like(length))
    return Segments.concat(
        [sliding_segments(int(c), seq_len, stride, variant, offset=int(s)) for s, c in zip(starts, counts)]
    )


def plan_segments(
    tokens: np.ndarray,
    seq_len: int,
    *,
    stride: int | None = None,
    doc_aware: bool = False,
    variant: str = "exact_once",
    bos_id: int = 1,
) -> Segments:
    """The rows of a whole evaluation, in stream order."""
    if variant not in VARIANTS:
        raise GolfpackError(f"unknown sliding variant {variant!r} (expected one of {', '.join(VARIANTS)})")
    if doc_aware:
        return doc_segments(tokens, seq_len, stride, variant, bos_id)
    if stride is None:
        return plain_segments(int(tokens.size), seq_len)
    return sliding_segments(int(tokens.size) - 1, seq_len, stride, variant)


def plan_batches(segments: Segments, batch_tokens: int) -> list[np.ndarray]:
    """Group segments into forward passes of at most `batch_tokens` padded tokens.

    Segments are taken longest first (stable, so equal lengths stay in stream
    order) and each batch is padded to its first (longest) row, which keeps the
    padding small for doc-aware mode. The plan depends only on the segments and
    the budget, so every rank of a distributed run derives the same batches,
    which is what makes the multi-process result equal the single-process one.
    """
    n = len(segments)
    if n == 0:
        return []
    order = np.argsort(-segments.length, kind="stable")
    lengths = segments.length[order]
    batches = []
    i = 0
    while i < n:
        rows = max(1, int(batch_tokens) // int(lengths[i]))
        batches.append(order[i : i + rows])
        i += rows
    return batches
