"""Eval throughput: dense fp32 torch model vs the packed CPU path (PackedLinear), same tokens.

The code lives in the package (golfpack/bench/eval.py, `golfpack bench eval [--json]`); this
script is kept so the commands in RESULTS.md still work:

    python benchmarks/eval_throughput.py [--ckpt PATH] [--val SHARD] [--tokenizer SP.model]
        [--seq-len 512] [--max-tokens 8192] [--batches 1,16] [--reps 2] [--threads 2] [--json]
"""
import sys

from golfpack.bench.eval import main

if __name__ == "__main__":
    sys.exit(main())
