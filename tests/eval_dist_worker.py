"""Worker for tests/test_eval_dist.py: evaluate the stand-in model in several modes and
write the exact results (float.hex) to OUT_DIR/rank{RANK}.json.

Run alone (one process) or under `torchrun --nproc_per_node W` (gloo on CPU).
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
torch.set_num_threads(1)

from eval_standin import TinyLM, doc_stream, tiny_tables  # noqa: E402
from golfpack.evaluate import evaluate  # noqa: E402

MODES = {
    "plain": dict(seq_len=16),
    "sliding": dict(seq_len=16, stride=4),
    "rescore_tail": dict(seq_len=16, stride=4, variant="rescore_tail"),
    "doc": dict(seq_len=16, doc_aware=True),
    "doc_sliding": dict(seq_len=16, stride=6, doc_aware=True),
}


def main(out_dir: str) -> None:
    model, tables = TinyLM(seed=0), tiny_tables()
    tokens = doc_stream(40, seed=11, lead=2)
    res = {}
    for name, kw in MODES.items():
        r = evaluate(model, tokens, tables, batch=2, **kw)
        res[name] = dict(val_loss=r.val_loss.hex(), val_bpb=r.val_bpb.hex(), tokens=r.tokens,
                         bytes=r.bytes, world_size=r.world_size)
    rank = int(os.environ.get("RANK", "0"))
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(res, f)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
