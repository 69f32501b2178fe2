"""`golfpack eval`: exact val_bpb of a checkpoint or golfpack artifact on token shards.

    golfpack eval SRC --val SHARD [SHARD ...] --tokenizer SP.model [--seq-len L]
        [--stride S] [--sliding-variant exact_once|rescore_tail] [--doc-aware]
        [--batch B] [--device cpu|cuda] [--max-tokens N] [--packed] [--config CFG.json] [--json]

Runs under torchrun as well (batches split across ranks; rank 0 prints).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from golfpack.errors import GolfpackError


def add_subcommands(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="exact val_loss / val_bpb of a checkpoint or artifact on token shards",
        description="Exact val_loss / val_bpb by the Parameter Golf rules: plain (default), "
        "sliding window (--stride) or document-aware (--doc-aware). Under torchrun the work is "
        "split across ranks and the sums are reduced exactly.",
    )
    p.add_argument("src", metavar="SRC", help="checkpoint (.pt/.ptz/.safetensors/sharded) or golfpack artifact")
    p.add_argument("--val", nargs="+", required=True, metavar="SHARD",
                   help="validation shard(s), a directory of *.bin or a glob; concatenated in sorted order")
    p.add_argument("--tokenizer", required=True, metavar="SP.model", help="SentencePiece model of the shards")
    p.add_argument("--seq-len", type=int, default=1024, metavar="L", help="window / segment length (default 1024)")
    p.add_argument("--stride", type=int, default=None, metavar="S",
                   help="sliding-window stride (score the last S positions of each window)")
    p.add_argument("--sliding-variant", choices=("exact_once", "rescore_tail"), default="exact_once",
                   help="tail rule: exact_once (every target once; default) or rescore_tail (03-19 scripts)")
    p.add_argument("--doc-aware", action="store_true",
                   help="no attention across documents (a document starts at each BOS)")
    p.add_argument("--batch", type=int, default=16, metavar="B",
                   help="windows per forward pass (B * L padded tokens; default 16)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="forward precision: auto = bf16 autocast on CUDA (as the challenge), fp32 on CPU")
    p.add_argument("--max-tokens", type=int, default=None, metavar="N", help="score only the first N targets")
    p.add_argument("--bos-id", type=int, default=1, help="document separator token id (default 1)")
    p.add_argument("--packed", action="store_true",
                   help="artifact SRC: run with bit-packed weights (PackedLinear) instead of dense floats")
    p.add_argument("--config", default=None, metavar="CFG.json", help="GPTConfig JSON (overrides the stored one)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--progress", action="store_true", help="report progress on stderr")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_eval)


def _existing(path: str, what: str, allow_dir: bool = False) -> Path:
    p = Path(path)
    if not p.exists():
        raise GolfpackError(f"{what} not found: {p}")
    if p.is_dir() and not allow_dir:
        raise GolfpackError(f"{what} is a directory: {p}")
    return p


def _load_config(path: str | None):
    if path is None:
        return None
    from golfpack.model import GPTConfig

    p = _existing(path, "config")
    try:
        return GPTConfig.from_json(p.read_bytes())  # bytes: bad UTF-8 is a FormatError too
    except GolfpackError as e:
        raise type(e)(f"{p}: {e}") from None


def load_model(src: str, config_path: str | None, packed: bool):
    """The model to evaluate, on CPU (evaluate() moves it)."""
    path = _existing(src, "source", allow_dir=True)  # a trainer output dir is a checkpoint
    config = _load_config(config_path)
    if packed:
        from golfpack.evaluate.packed_model import load_packed

        return load_packed(path, config=config)
    from golfpack.model import load

    return load(path, config=config, device="cpu")


def run_eval(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from golfpack.data.bytes import build_byte_tables, load_sentencepiece
    from golfpack.data.shards import read_shards
    from golfpack.evaluate.bpb import evaluate

    if args.threads is not None:
        if args.threads < 1:
            raise GolfpackError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise GolfpackError(f"--device must be cpu or cuda, got {device!r}")
    if args.seq_len < 1:
        raise GolfpackError(f"--seq-len must be >= 1, got {args.seq_len}")

    sp = load_sentencepiece(_existing(args.tokenizer, "tokenizer"))
    tokens = read_shards(args.val)
    model = load_model(args.src, args.config, args.packed)
    vocab = int(model.config.vocab_size)
    n_sp = int(sp.get_piece_size())
    if n_sp > vocab:
        raise GolfpackError(
            f"tokenizer {args.tokenizer} has {n_sp} pieces but the model's vocabulary is {vocab}: "
            "they do not belong together"
        )
    if tokens.size and int(tokens.max()) >= n_sp:
        bad = int(np.flatnonzero(tokens >= n_sp)[0])
        raise GolfpackError(
            f"shard token {int(tokens[bad])} at position {bad} is not a piece of the tokenizer "
            f"({n_sp} pieces): the shards were made with another tokenizer"
        )
    # A model vocabulary rounded up past the tokenizer gets 0-byte boundary rows (data.bytes).
    tables = build_byte_tables(sp, vocab_size=vocab)
    precision = {"auto": "auto", "bf16": torch.bfloat16, "fp32": None}[args.precision]

    rank = int(os.environ.get("RANK", "0") or 0)
    progress = None
    if args.progress and rank == 0:
        def progress(done: int, total: int) -> None:
            if done == total or done % max(1, total // 50) == 0:
                print(f"\r  {done}/{total} batches", end="\n" if done == total else "", file=sys.stderr, flush=True)

    r = evaluate(
        model, tokens, tables, seq_len=args.seq_len, stride=args.stride, doc_aware=args.doc_aware,
        batch=args.batch, device=device, max_tokens=args.max_tokens, bos_id=args.bos_id,
        variant=args.sliding_variant, autocast_dtype=precision, progress=progress,
    )
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()  # the CLI owns the process; exit cleanly under torchrun
    if rank != 0:
        return 0
    out = r.to_dict()
    out["source"] = str(args.src)
    out["packed"] = bool(args.packed)
    if args.json:
        print(json.dumps(out))
    else:
        print(format_table(out))
    return 0


def format_table(d: dict) -> str:
    mode = d["mode"]
    if d["stride"] is not None:
        mode += f" (stride {d['stride']}, {d['variant']})"
    rows = [
        ("source", d["source"] + (" [packed]" if d.get("packed") else "")),
        ("mode", f"{mode}, seq_len {d['seq_len']}, {d['segments']:,} rows"),
        ("tokens", f"{d['tokens']:,}"),
        ("bytes", f"{d['bytes']:,}"),
        ("val_loss", f"{d['val_loss']:.8f}"),
        ("val_bpb", f"{d['val_bpb']:.8f}"),
        ("time", f"{d['seconds']:.2f} s ({d['tokens_per_s']:,.0f} tokens/s) on {d['device']}, "
                 f"{d['autocast']}, {d['world_size']} process(es)"),
    ]
    return "\n".join(f"{k:<9} {v}" for k, v in rows)
