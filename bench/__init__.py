"""`golfpack bench ...`: benchmarks that ship with the package (entropy coders, decode, eval, peers).

Each benchmark is a module `golfpack.bench.<name>` exposing `add_arguments(parser)` and
`run(args) -> int`; `golfpack.bench.cli` registers whichever of them exist.
"""
