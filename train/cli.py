"""`golfpack train`: train a GPT from token shards into a safetensors checkpoint.

CFG.json holds GPTConfig fields and optionally a "train" object with the keys
documented in golfpack/train/config.py; command-line options override it.
Under `torchrun --nproc_per_node=N -m golfpack.train.cli --config ...` the
global batch is split over the N ranks.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from golfpack.errors import GolfpackError


def add_subcommands(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a GPT on token shards; writes OUT/model.safetensors, config.json, train_log.json",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    p.add_argument("--config", required=True, help="JSON: GPTConfig fields + optional \"train\" section")
    p.add_argument("--data", required=True, help="train shard file, directory of *.bin, or glob")
    p.add_argument("--out", required=True, help="output directory for the checkpoint")
    p.add_argument("--val", help="val shard (file/dir/glob) for periodic and final val loss/bpb")
    p.add_argument("--tokenizer", help="SentencePiece .model for val bpb (else only val loss)")
    p.add_argument("--minutes", type=float, help="wallclock budget (warmdown by time fraction)")
    p.add_argument("--steps", type=int, help="step limit (0 = none, needs --minutes)")
    p.add_argument("--batch-tokens", type=int, help="global tokens per step")
    p.add_argument("--seq-len", type=int, help="training sequence length")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--seed", type=int, help="model init seed")
    p.add_argument("--threads", type=int, help="torch CPU threads for this process (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.set_defaults(func=_cmd_train)


def load_configs(path, overrides: dict | None = None):
    """(GPTConfig, TrainConfig) from CFG.json, with non-None overrides applied to the train section."""
    from golfpack.model import GPTConfig
    from golfpack.safe_json import loads_bounded
    from golfpack.train.config import TrainConfig

    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise GolfpackError(f"config not found: {p}") from None
    obj = loads_bounded(raw, str(p))  # bounded: depth, integer digits, no NaN/Infinity
    if not isinstance(obj, dict):
        raise GolfpackError(f"{p}: must hold a JSON object")
    train_section = obj.pop("train", {})
    if not isinstance(train_section, dict):
        raise GolfpackError(f"{p}: \"train\" must be a JSON object")
    train_section = {**train_section, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    return GPTConfig.from_dict(obj), TrainConfig.from_dict(train_section)


def _cmd_train(args) -> int:
    import torch

    from golfpack.train.trainer import train

    overrides = {"minutes": args.minutes, "steps": args.steps, "batch_tokens": args.batch_tokens,
                 "seq_len": args.seq_len, "seed": args.seed}
    if args.minutes is not None and args.steps is None:
        overrides["steps"] = 0  # a time budget alone: no step limit from the config default
    cfg, tcfg = load_configs(args.config, overrides)
    if args.threads is not None:
        if args.threads < 1:
            raise GolfpackError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    log = train(cfg, tcfg, args.data, args.out, val=args.val, tokenizer=args.tokenizer, device=device,
                show_progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    summary = {k: log.get(k) for k in ("steps", "tokens_seen", "train_seconds", "tokens_per_second", "weights",
                                       "num_params", "world_size", "device")}
    summary["final"] = log.get("final")
    summary["out"] = str(args.out)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        f = summary["final"]
        val = f" val loss {f['val_loss']:.4f}" + (f" bpb {f['val_bpb']:.4f}" if f and f.get("val_bpb") else "") \
            if f else ""
        print(f"wrote {args.out}/model.safetensors: {summary['steps']} steps, "
              f"{summary['train_seconds']:.1f}s, {summary['weights']} weights{val}")
    return 0


def main(argv=None) -> int:
    """Entry point for `python -m golfpack.train.cli` (e.g. under torchrun)."""
    from golfpack.cli import main as gp_main

    return gp_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
