"""Train a small SentencePiece BPE tokenizer with the challenge's conventions.

For a fresh machine without the challenge tokenizer: same special ids (pad 0,
bos 1, eos 2, unk 3), byte fallback, nmt_nfkc normalization and no dummy
prefix, like fineweb_1024_bpe.model. Training is single-threaded on a fixed,
unshuffled input so the same input gives the same model bytes.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Iterable, Iterator

from golfpack.errors import GolfpackError

# SentencePiece drops "sentences" longer than this many bytes; documents are fed line by line.
_MAX_SENTENCE_BYTES = 4192


def _sentences(docs: Iterable[str], max_bytes: int) -> Iterator[str]:
    total = 0
    for doc in docs:
        for line in doc.splitlines():
            line = line.strip()
            if not line:
                continue
            b = len(line.encode("utf-8"))
            if b > _MAX_SENTENCE_BYTES:
                continue
            yield line
            total += b
            if total >= max_bytes:
                return


def train_tokenizer(
    docs: Iterable[str],
    out_path: str | os.PathLike,
    *,
    vocab_size: int = 1024,
    max_bytes: int = 4_000_000,
) -> dict:
    """Train BPE on the first `max_bytes` of text lines of `docs`; write the .model atomically.

    Returns {"path", "vocab_size", "input_bytes", "input_lines"}.
    """
    import sentencepiece as spm

    if vocab_size < 300 or vocab_size > 65536:
        # 4 specials + 256 byte pieces leave room for merges only above ~300.
        raise GolfpackError(f"vocab size must be in [300, 65536], got {vocab_size}")
    if max_bytes <= 0:
        raise GolfpackError(f"max_bytes must be positive, got {max_bytes}")
    lines = list(_sentences(docs, max_bytes))
    if not lines:
        raise GolfpackError("no text to train the tokenizer on")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=model,
            model_type="bpe",
            vocab_size=vocab_size,
            byte_fallback=True,
            pad_id=0,
            bos_id=1,
            eos_id=2,
            unk_id=3,
            normalization_rule_name="nmt_nfkc",
            add_dummy_prefix=False,
            character_coverage=0.9995,
            input_sentence_size=0,
            shuffle_input_sentence=False,
            num_threads=1,
            max_sentence_length=_MAX_SENTENCE_BYTES,
            minloglevel=2,
        )
    except RuntimeError as e:
        # e.g. "Vocabulary size is too high" for a tiny input.
        raise GolfpackError(f"SentencePiece training failed: {e}") from None
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    from golfpack.output import write_bytes

    write_bytes(out, model.getvalue())
    return {
        "path": str(out),
        "vocab_size": vocab_size,
        "input_bytes": sum(len(s.encode("utf-8")) for s in lines),
        "input_lines": len(lines),
    }
