"""Issue 22 acceptance: an exported record, run by a Python that has only torch, numpy and
sentencepiece, prints the val_bpb `golfpack eval ART --packed` computes on the same tokens.

    python benchmarks/export_parity.py --record DIR --python /tmp/x/bin/python \
        --val ../shared/data/shards/c4_val_sp1024.bin --tokenizer ../shared/data/tokenizers/fineweb_1024_bpe.model \
        --max-tokens 32768 [--modes lora,sliding,plain]

For each mode it exports DIR's artifact again with that mode (lora: the record's own script),
runs train_gpt.py from an empty folder with that interpreter (DATA_PATH / TOKENIZER_PATH /
EVAL_MAX_TOKENS as the challenge passes data), runs `golfpack eval` with the same settings, and
prints a Markdown table: script val_bpb, golfpack val_bpb, |difference|, wall seconds of each.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from golfpack.export.record import plan_record, write_record
from golfpack.export.run import run_record


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--record", required=True)
    ap.add_argument("--python", required=True, help="an interpreter without golfpack (a fresh venv)")
    ap.add_argument("--val", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--max-tokens", type=int, default=32768)
    ap.add_argument("--modes", default="lora,sliding,plain")
    ap.add_argument("--work", default="/tmp/export_parity")
    a = ap.parse_args()
    rec = Path(a.record)
    art = rec / "model.gp"
    sub = json.loads((rec / "submission.json").read_text())
    rows = []
    env = {"EVAL_THREADS": 1, "OMP_NUM_THREADS": 1}
    for mode in a.modes.split(","):
        if mode == "lora":
            folder, ttt = rec, sub["golfpack"]["ttt"]
            ref = ["--ttt", "lora", "--seq-len", str(ttt["context"]), "--stride", str(ttt["chunk"])]
        else:
            folder = Path(a.work) / mode
            data, script, flags, st = plan_record(art.read_bytes(), eval_mode=mode)
            write_record(folder, data, script, flags, st, force=True)
            ref = ["--seq-len", "1024"] + (["--stride", "64"] if mode == "sliding" else [])
        t0 = time.perf_counter()
        r = run_record(folder, a.val, a.tokenizer, max_tokens=a.max_tokens, python=a.python, env=env)
        t_script = time.perf_counter() - t0
        if r.val_bpb is None:
            sys.exit(f"{mode}: the script failed: {r.stderr.strip()[-500:]}")
        cmd = ["golfpack", "eval", str(art), "--packed", "--val", a.val, "--tokenizer", a.tokenizer, "--max-tokens",
               str(a.max_tokens), "--threads", "1", "--json"] + ref
        t0 = time.perf_counter()
        g = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        t_gp = time.perf_counter() - t0
        rows.append((mode, (folder / "train_gpt.py").stat().st_size, r.val_bpb, g["val_bpb"], abs(r.val_bpb - g["val_bpb"]),
                     t_script, t_gp, " ".join(cmd)))
        print(f"{mode}: script {r.val_bpb:.10f} golfpack {g['val_bpb']:.10f} diff {rows[-1][4]:.2e}", file=sys.stderr,
              flush=True)
    print(f"| mode | train_gpt.py bytes | script val_bpb | golfpack eval val_bpb | abs diff | script s | golfpack s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for m, b, s, g, d, ts, tg, _ in rows:
        print(f"| {m} | {b:,} | {s:.10f} | {g:.10f} | {d:.1e} | {ts:.0f} | {tg:.0f} |")
    for m, *_, cmd in rows:
        print(f"\n{m}: `{cmd}`")


if __name__ == "__main__":
    main()
