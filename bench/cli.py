"""`golfpack bench {entropy,decode,eval,peers}`: the benchmark subcommands.

Each benchmark lives in its own module `golfpack.bench.<name>` with `add_arguments(parser)`
and `run(args) -> int`. A module that is not there (yet) still gets a subcommand, which says
so and exits with status 2 instead of printing numbers it did not measure.
"""
from __future__ import annotations

import argparse
import importlib

from golfpack.errors import GolfpackError

BENCHMARKS = (
    ("entropy", "golfpack rANS vs zstd-22 / brotli-11 / lzma-9 on real int8/int6 symbols"),
    ("decode", "in-process decode of an artifact to packed weights"),
    ("eval", "eval throughput: packed CPU path vs dense fp32"),
    ("peers", "competitors' export pipelines vs golfpack at the same bytes and the same bpb"),
)


def _unavailable(name: str):
    def run(args) -> int:
        raise GolfpackError(f"bench {name} is not available in this build (module golfpack.bench.{name} "
                            "is not installed)")
    return run


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks: entropy, decode, eval, peers",
                       description="Benchmarks that print ratios against a baseline measured in the same run; "
                                   "--json gives one JSON object.")
    bsub = p.add_subparsers(dest="bench_command", metavar="BENCH")
    bsub.required = True
    for name, help_text in BENCHMARKS:
        try:
            mod = importlib.import_module(f"golfpack.bench.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"golfpack.bench.{name}":
                raise  # a missing dependency of an existing benchmark is a real error
            mod = None
        bp = bsub.add_parser(name, help=help_text if mod else f"{help_text} (not available in this build)")
        if mod is None:
            bp.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            bp.set_defaults(func=_unavailable(name))
        else:
            mod.add_arguments(bp)
            bp.set_defaults(func=mod.run)
