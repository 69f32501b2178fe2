"""Where the benchmarks find the shared real material (tokenizer, shards, the 7x384 checkpoint).

$GOLFPACK_SHARED/data if set, else ../shared/data beside the source tree (an editable install),
else ../shared/data relative to the working directory. Nothing here is downloaded.
"""
from __future__ import annotations

import os
from pathlib import Path


def shared_data() -> Path:
    env = os.environ.get("GOLFPACK_SHARED")
    if env:
        return Path(env) / "data"
    beside_tree = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if beside_tree.is_dir():
        return beside_tree
    return Path.cwd().parent / "shared" / "data"


def default(rel: str) -> str:
    return str(shared_data() / rel)


CHECKPOINT = "checkpoints/pg_baseline_7x384_sp1024.int8.ptz"
VAL = "shards/c4_val_sp1024.bin"
CALIB = "shards/enwiki_train_sp1024.bin"
TOKENIZER = "tokenizers/fineweb_1024_bpe.model"

_ARGUMENTS = {"ckpt": CHECKPOINT, "calib": CALIB, "val": VAL, "tokenizer": TOKENIZER}


def add_data_arguments(ap, *names: str) -> None:
    """--ckpt / --calib / --val / --tokenizer (those named), defaulting to the shared material."""
    for name in names:
        ap.add_argument(f"--{name}", default=default(_ARGUMENTS[name]))
