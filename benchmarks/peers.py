"""Competitors' export pipelines vs golfpack at the same bytes and the same bpb.

The code lives in the package (golfpack/bench/peers.py and peer_codecs.py); this script is the
same command as `golfpack bench peers`:

    python benchmarks/peers.py SRC --val SHARD --tokenizer SP.model [--calib TRAIN_SHARD]
        [--max-tokens N] [--planner full|fast] [--out-dir DIR] [--plot RD.png] [--markdown OUT.md] [--json]
"""
import sys

from golfpack.bench.peers import main

if __name__ == "__main__":
    sys.exit(main())
