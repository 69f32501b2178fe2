"""Entropy-coding benchmark: golfpack rANS vs zstd-22 / brotli-11 / lzma-9, and int6 unpack.

The code lives in the package (golfpack/bench/entropy.py, `golfpack bench entropy`); this
script is kept so the commands in RESULTS.md still work:

    python benchmarks/entropy.py [--json] [--ckpt PATH] [--reps N]
"""
import sys

from golfpack.bench.entropy import main

if __name__ == "__main__":
    sys.exit(main())
