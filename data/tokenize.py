"""Tokenize a stream of documents into train/val shards.

Each document is written as BOS (sp.bos_id()) followed by
`sp.encode(text, out_type=int)` of the raw text, no EOS, documents in corpus
order: the layout of the challenge's shards (shared/data/README.md), so
tokenizing the C4 sample with sp1024 reproduces c4_val_sp1024.bin byte for byte.

Split: the LAST `val_docs` documents form the validation shard, the rest the
train shard (the shared enwiki split keeps the last 10% as val; pass
val_docs=int(0.1 * N) or val_frac=0.1 in the CLI for that). The split is done
in one pass by holding only the val documents' tokens in a ring buffer, so the
corpus text is never all in memory. val_docs='all' sends everything to val.
"""
from __future__ import annotations

import os
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator, Literal

import numpy as np

from golfpack.data.bytes import build_byte_tables, count_bytes, load_sentencepiece
from golfpack.data.shards import ShardWriter
from golfpack.errors import GolfpackError

# Documents per sp.encode call: batching lets SentencePiece use its thread pool.
_ENCODE_BATCH = 64


@dataclass
class SplitSummary:
    path: str | None  # None when the split got no documents (no file written)
    docs: int = 0
    tokens: int = 0  # including one BOS per document
    text_bytes: int = 0  # UTF-8 bytes of the raw document text
    bpb_bytes: int = 0  # bytes the bpb metric counts (byte tables over the targets)


def shard_name(stem: str, split: str, vocab_size: int) -> str:
    return f"{stem}_{split}_sp{vocab_size}.bin"


def _encoded(sp, docs: Iterable[str]) -> Iterator[tuple[str, list[int]]]:
    batch: list[str] = []
    for text in docs:
        batch.append(text)
        if len(batch) >= _ENCODE_BATCH:
            yield from zip(batch, sp.encode(batch, out_type=int))
            batch = []
    if batch:
        yield from zip(batch, sp.encode(batch, out_type=int))


class _SplitSink:
    """Writes documents to one shard, creating the file only on the first document."""

    def __init__(self, path: Path, tables, bos: int):
        self.path = path
        self.summary = SplitSummary(path=None)
        self._writer: ShardWriter | None = None
        self._tables = tables
        self._bos = bos

    def add(self, text: str, ids: np.ndarray) -> None:
        if self._writer is None:
            self._writer = ShardWriter(self.path)
        self._writer.write(ids)
        s = self.summary
        s.docs += 1
        s.tokens += int(ids.size)
        s.text_bytes += len(text.encode("utf-8"))
        if ids.size > 1:
            s.bpb_bytes += count_bytes(ids[:-1], ids[1:], self._tables)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self.summary.path = str(self.path)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()


def tokenize_documents(
    docs: Iterable[str],
    tokenizer,
    out_dir: str | os.PathLike,
    stem: str,
    *,
    val_docs: int | Literal["all"] = 0,
) -> dict:
    """Tokenize documents into OUT/<stem>_train_sp<V>.bin and OUT/<stem>_val_sp<V>.bin.

    Returns {"vocab_size", "train": SplitSummary-dict, "val": SplitSummary-dict}.
    A split that receives no documents writes no file (its path is None).
    """
    sp = load_sentencepiece(tokenizer)
    vocab = int(sp.get_piece_size())
    if vocab > 0x10000:
        raise GolfpackError(f"tokenizer has {vocab} pieces; shards hold uint16 ids (at most 65536)")
    bos = int(sp.bos_id())
    if bos < 0:
        raise GolfpackError("tokenizer has no BOS piece (bos_id = -1); documents need a BOS separator")
    if val_docs != "all" and (not isinstance(val_docs, int) or val_docs < 0):
        raise GolfpackError(f"val_docs must be a non-negative integer or 'all', got {val_docs!r}")
    tables = build_byte_tables(sp)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GolfpackError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    train = _SplitSink(out / shard_name(stem, "train", vocab), tables, bos)
    val = _SplitSink(out / shard_name(stem, "val", vocab), tables, bos)
    ring: deque[tuple[str, np.ndarray]] = deque()
    try:
        for text, ids in _encoded(sp, docs):
            arr = np.empty(len(ids) + 1, dtype=np.int64)
            arr[0] = bos
            arr[1:] = ids
            if val_docs == "all":
                val.add(text, arr)
                continue
            if val_docs == 0:
                train.add(text, arr)
                continue
            ring.append((text, arr))
            if len(ring) > val_docs:
                train.add(*ring.popleft())
        while ring:
            val.add(*ring.popleft())
        if train.summary.docs == 0 and val.summary.docs == 0:
            raise GolfpackError("the corpus holds no documents")
        train.close()
        val.close()
    except BaseException:
        train.abort()
        val.abort()
        raise
    return {"vocab_size": vocab, "train": asdict(train.summary), "val": asdict(val.summary)}
