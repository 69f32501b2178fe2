"""`golfpack eval`: exact val_bpb of a checkpoint or golfpack artifact on token shards.

    golfpack eval SRC --val SHARD [SHARD ...] --tokenizer SP.model [--seq-len L]
        [--stride S] [--sliding-variant exact_once|rescore_tail] [--doc-aware]
        [--batch B] [--device cpu|cuda] [--max-tokens N] [--packed] [--config CFG.json] [--json]
        [--ttt lora|sgd|phased|q [--ttt-config TTT.json]]

With --ttt, score-first test-time training (evaluate/ttt.py); it is always
document-aware, --seq-len / --stride set its context / chunk (else the config's).

Runs under torchrun as well (batches split across ranks; rank 0 prints).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from golfpack.errors import GolfpackError
from golfpack.evaluate.limits import EVAL_LIMITS as LIM
from golfpack.evaluate.limits import int_flag
from golfpack.model.config import LIMITS as MODEL_LIMITS


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
    p.add_argument("--seq-len", type=int_flag("--seq-len", 1, LIM["seq_len"]), default=None, metavar="L",
                   help="window / segment length (default 1024; with --ttt: the context window)")
    p.add_argument("--stride", type=int_flag("--stride", 1, LIM["seq_len"]), default=None, metavar="S",
                   help="sliding-window stride (score the last S positions of each window)")
    p.add_argument("--sliding-variant", choices=("exact_once", "rescore_tail"), default="exact_once",
                   help="tail rule: exact_once (every target once; default) or rescore_tail (03-19 scripts)")
    p.add_argument("--doc-aware", action="store_true",
                   help="no attention across documents (a document starts at each BOS)")
    p.add_argument("--batch", type=int_flag("--batch", 1, LIM["batch"]), default=16, metavar="B",
                   help="windows per forward pass (B * L padded tokens; default 16)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="forward precision: auto = bf16 autocast on CUDA (as the challenge), fp32 on CPU")
    p.add_argument("--max-tokens", type=int_flag("--max-tokens", 1, LIM["max_tokens"]), default=None, metavar="N",
                   help="score only the first N targets")
    p.add_argument("--bos-id", type=int_flag("--bos-id", 0, MODEL_LIMITS["vocab_size"] - 1), default=1,
                   help="document separator token id (default 1)")
    p.add_argument("--packed", action="store_true",
                   help="artifact SRC: run with bit-packed weights (PackedLinear) instead of dense floats")
    p.add_argument("--config", default=None, metavar="CFG.json", help="GPTConfig JSON (overrides the stored one)")
    p.add_argument("--threads", type=int_flag("--threads", 1, LIM["threads"]), default=None, help="torch CPU threads")
    p.add_argument("--progress", action="store_true", help="report progress on stderr")
    p.add_argument("--ttt", choices=("lora", "sgd", "phased", "q"), default=None,
                   help="legal score-first test-time training (per-document LoRA, full SGD, phased, Q-only)")
    p.add_argument("--ttt-config", default=None, metavar="TTT.json",
                   help="TTTConfig overrides as a JSON object (see evaluate/ttt_config.py)")
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

    # Every number is in range (argparse, golfpack.evaluate.limits) and they agree with each other
    # before any file is read.
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise GolfpackError(f"--device must be cpu or cuda, got {device!r}")
    ttt_cfg = _ttt_config(args) if args.ttt is not None else None
    if args.ttt_config is not None and args.ttt is None:
        raise GolfpackError("--ttt-config needs --ttt lora|sgd|phased|q")
    if args.seq_len is None:
        args.seq_len = 1024
    if ttt_cfg is None:
        check_geometry(args.seq_len, args.stride, args.batch)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

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
    if args.bos_id >= vocab:
        raise GolfpackError(f"--bos-id {args.bos_id} is not a token of the model's {vocab}-token vocabulary")
    # A model vocabulary rounded up past the tokenizer gets 0-byte boundary rows (data.bytes).
    tables = build_byte_tables(sp, vocab_size=vocab)
    precision = {"auto": "auto", "bf16": torch.bfloat16, "fp32": None}[args.precision]

    from golfpack.progress import counter

    rank = int(os.environ.get("RANK", "0") or 0)
    show = args.progress and rank == 0
    if ttt_cfg is not None:
        from golfpack.evaluate.ttt import evaluate_ttt

        progress = counter(f"TTT {args.ttt}", show, unit="target")
        r = evaluate_ttt(model, tokens, tables, ttt_cfg, device=device, max_tokens=args.max_tokens,
                         bos_id=args.bos_id, autocast_dtype=precision, progress=progress)
    else:
        progress = counter("eval", show)
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


def check_geometry(seq_len: int, stride: int | None, batch: int) -> None:
    """--stride within --seq-len, and --batch x --seq-len tokens per forward pass within the limit."""
    if stride is not None and stride > seq_len:
        raise GolfpackError(f"--stride {stride} exceeds --seq-len {seq_len} (a window scores at most its own length)")
    if batch * seq_len > LIM["tokens_per_pass"]:
        raise GolfpackError(f"--batch {batch} x --seq-len {seq_len} is {batch * seq_len} tokens per forward pass, "
                            f"over the limit {LIM['tokens_per_pass']}")


def _ttt_config(args):
    """TTTConfig from --ttt, --ttt-config and the geometry flags (context / chunk)."""
    from golfpack.evaluate.ttt_config import TTTConfig

    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise GolfpackError("--ttt runs in one process (it is not split across torchrun ranks)")
    if args.sliding_variant != "exact_once":
        raise GolfpackError("--ttt scores every target exactly once; --sliding-variant rescore_tail does not apply")
    over = {}
    if args.ttt_config is not None:
        p = _existing(args.ttt_config, "TTT config")
        cfg = TTTConfig.from_json(p.read_bytes(), what=str(p), method=args.ttt)
        over = cfg.to_dict()
    else:
        cfg = TTTConfig.for_method(args.ttt)
    if args.seq_len is not None:
        over["context"] = args.seq_len
    if args.stride is not None:
        over["chunk"] = args.stride
    if args.seq_len is not None or args.stride is not None:
        context, chunk = over.get("context", cfg.context), over.get("chunk", cfg.chunk)
        if context % chunk:  # name the flags, not only the config fields they set
            raise GolfpackError(f"--ttt: the context {context} (--seq-len) must be a multiple of the chunk {chunk} "
                                "(--stride)")
    return TTTConfig.for_method(args.ttt, over) if over else cfg


def format_table(d: dict) -> str:
    mode = d["mode"]
    if mode.startswith("ttt_"):
        mode += f" (context {d['seq_len']}, chunk {d['stride']}, {d['documents_adapted']}/{d['documents']} docs adapted)"
    elif d["stride"] is not None:
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
