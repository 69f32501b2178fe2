"""How `golfpack encode --budget` time grows with parameters: one row per model, stage seconds.

    python benchmarks/planner_scaling.py [--models 7x384,9x512,11x512] [--bytes-per-param 0.432] [--out F.json]

Each model is encoded by the CLI exactly as a user runs it (`golfpack encode SRC -o A --budget B
--calib enwiki_train --json`, default candidate set) in a child process, at B = bytes-per-param x
params (0.432 is the bytes per parameter of the GPTQ int6 SDClip + brotli-11 export of the 9x512,
7,374,940 B for 17.06M params, so every model is planned at the same rate). Models:

  7x384   the shared baseline .ptz (FineWeb-trained)
  9x512   the shared GPU-trained 9x512 (../shared/data/checkpoints/gpu_9x512_sp1024)
  11x512  11 layers, MLP 3x, randomly initialised (every tensor N(0, 0.02^2) so nothing is
          trivially zero); timing only, its bpb means nothing

Reported per model: params, budget, total bytes, wall seconds, CPU seconds (user + sys of the child),
peak RSS, the load average when it started (the machine's other work inflates wall time, not CPU
time), and encode's own stage_seconds. Needs ../shared (the shards and the checkpoints).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CALIB = SHARED / "shards" / "enwiki_train_sp1024.bin"


def random_11x512(path: Path) -> None:
    import torch

    from golfpack import safetensors_io
    from golfpack.model import GPT, GPTConfig

    cfg = dict(vocab_size=1024, num_layers=11, model_dim=512, num_heads=8, num_kv_heads=4, mlp_mult=3.0)
    torch.manual_seed(0)
    m = GPT(GPTConfig(**cfg))
    with torch.no_grad():
        sd = {k: (torch.randn_like(v) * 0.02).contiguous() for k, v in m.state_dict().items()}
    safetensors_io.save_file(sd, path, metadata={"golfpack.config": json.dumps(cfg)})


def params_of(src: Path) -> int:
    from golfpack.checkpoint import read_checkpoint

    return read_checkpoint(src).num_params()


def encode_row(name: str, src: Path, bpp: float, tmp: Path, extra: list[str] = ()) -> dict:
    n = params_of(src)
    budget = int(round(bpp * n))
    cmd = [sys.executable, "-m", "golfpack.cli", "encode", str(src), "-o", str(tmp / f"{name}.gp"),
           "--budget", str(budget), "--calib", str(CALIB), "--json", "--quiet", *extra]
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"{name}: encode failed ({p.returncode}): {p.stderr.strip()[-400:]}")
    r = json.loads(p.stdout)
    return {"model": name, "params": n, "budget": budget, "total_bytes": r["total_bytes"],
            "wall_s": round(wall, 1), "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
            "peak_rss_gb": round(after.ru_maxrss / 2**20, 2), "load_at_start": round(load, 2),
            "stage_seconds": r.get("stage_seconds", {})}


def markdown(rows: list[dict]) -> str:
    stages = ["calibration", "candidates", "plan", "propagate", "tune", "check"]
    out = ["| model | params | budget | total bytes | wall s | CPU s | peak RSS GB | load | "
           + " | ".join(f"{s} s" for s in stages) + " | wall s / M params |",
           "|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(stages) + "---:|"]
    for r in rows:
        st = r["stage_seconds"]
        label = r["model"] + (f" `{r['encode_args']}`" if r.get("encode_args") else "")
        out.append(f"| {label} | {r['params']:,} | {r['budget']:,} | {r['total_bytes']:,} | {r['wall_s']} | "
                   f"{r['cpu_s']} | {r['peak_rss_gb']} | {r['load_at_start']} | "
                   + " | ".join(str(st.get(s, "-")) for s in stages)
                   + f" | {r['wall_s'] / (r['params'] / 1e6):.1f} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="7x384,9x512,11x512")
    ap.add_argument("--bytes-per-param", type=float, default=0.432)
    ap.add_argument("--out", default=None, help="also write the rows as JSON here")
    ap.add_argument("--encode-args", default="", metavar="ARGS",
                    help="more encode options for every row, e.g. '--tune-epochs 2 --tune-seqs 128' (default none)")
    a = ap.parse_args()
    extra = a.encode_args.split()
    if not CALIB.is_file():
        raise SystemExit(f"needs ../shared: {CALIB} is missing")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        srcs = {"7x384": SHARED / "checkpoints" / "pg_baseline_7x384_sp1024.int8.ptz",
                "9x512": SHARED / "checkpoints" / "gpu_9x512_sp1024"}
        for name in a.models.split(","):
            if name == "11x512":
                srcs[name] = tmp / "rand_11x512_mlp3.safetensors"
                random_11x512(srcs[name])
            if name not in srcs:
                raise SystemExit(f"unknown model {name!r} (7x384, 9x512, 11x512)")
            rows.append(encode_row(name, srcs[name], a.bytes_per_param, tmp, extra))
            rows[-1]["encode_args"] = a.encode_args
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(markdown(rows))
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
