"""Code bytes of the exported train_gpt.py per option (issue 22's table).

    python benchmarks/export_code_bytes.py [--artifact ART]

Each row builds the script for one set of runtime blocks (golfpack.export.needs) and reports the
template source, the minified source, its LZMA stream and the file (base85 + stub). With
--artifact, a first table gives the size of each record `golfpack export` writes for it.
"""
from __future__ import annotations

import argparse
import lzma

from golfpack.export import minify
from golfpack.export.needs import MODEL_FLAGS
from golfpack.export.script import LZMA_FILTERS, Settings, build_script, runtime_source, script_source

TTT = {"method": "lora", "chunk": 128, "context": 512, "doc_batch": 16, "rank": 8, "alpha": 16.0,
       "targets": ["q", "v", "lm_head"], "lr": 0.01, "betas": [0.9, 0.95], "eps": 1e-08, "weight_decay": 0.0,
       "epochs": 1, "keep_a_warm": False, "temperature": 1.0, "max_doc_len": None, "time_limit_s": None, "seed": 0}


def measure(flags, settings):
    src = script_source(flags, settings)
    mini = minify.minify(src)
    packed = lzma.compress(mini.encode(), format=lzma.FORMAT_ALONE, filters=LZMA_FILTERS)
    return len(src.encode()), len(mini.encode()), len(packed), len(build_script(flags, settings))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--artifact", default=None)
    a = ap.parse_args()
    base = {"rans", "sliding", "softcap"}
    rows = []
    if a.artifact:  # the records `golfpack export` writes for this artifact, byte for byte
        from pathlib import Path

        from golfpack.export.record import plan_record

        data = Path(a.artifact).read_bytes()
        print("| record of this artifact | train_gpt.py bytes | blocks |")
        print("|---|---:|---|")
        for label, kw in (("--eval sliding", {}), ("--eval plain", {"eval_mode": "plain"}),
                          ("--eval doc-aware", {"eval_mode": "doc-aware"}), ("--ttt lora", {"ttt": "lora"}),
                          ("--ttt sgd (or q)", {"ttt": "sgd"}), ("--ttt phased", {"ttt": "phased"})):
            _, script, flags, _ = plan_record(data, **kw)
            print(f"| {label} | {len(script):,} | {', '.join(sorted(flags))} |")
        print()
    rows += [
        ("rans + sliding (smallest useful)", base, None),
        ("+ native C loop", base | {"native"}, None),
        ("+ rans_rc", base | {"native", "rans_rc"}, None),
        ("+ raw", base | {"native", "rans_rc", "raw"}, None),
        ("+ byteshuffle floats", base | {"native", "rans_rc", "raw", "shuffle"}, None),
        ("+ LQER (lowrank)", base | {"native", "rans_rc", "raw", "shuffle", "lowrank"}, None),
        ("+ tensorscale + groupscale", base | {"native", "rans_rc", "raw", "shuffle", "lowrank", "tensorscale",
                                               "groupscale"}, None),
        ("every coder and scheme, plain instead of sliding", (base - {"sliding"}) | {"plain", "native", "rans_rc", "raw",
                                                                                   "shuffle", "lowrank"}, None),
        ("every coder and scheme, doc-aware", (base - {"sliding"}) | {"doc", "native", "rans_rc", "raw", "shuffle",
                                                                     "lowrank"}, None),
        ("every coder and scheme + LoRA TTT", base | {"native", "rans_rc", "raw", "shuffle", "lowrank", "lora"}, TTT),
        ("every coder, scheme and model feature", base | {"native", "rans_rc", "raw", "shuffle", "lowrank",
                                                          "tensorscale", "groupscale"} | set(MODEL_FLAGS), None),
        ("everything + LoRA TTT", base | {"native", "rans_rc", "raw", "shuffle", "lowrank", "tensorscale",
                                          "groupscale", "lora"} | set(MODEL_FLAGS), TTT),
    ]
    print(f"runtime templates, all blocks: {len(runtime_source().encode()):,} bytes\n")
    print("| script for | template source | minified | LZMA | train_gpt.py (base85 + stub) |")
    print("|---|---:|---:|---:|---:|")
    for name, flags, ttt in rows:
        src, mini, packed, total = measure(flags, Settings(ttt=ttt))
        print(f"| {name} | {src:,} | {mini:,} | {packed:,} | {total:,} |")


if __name__ == "__main__":
    main()
