"""The 9x512 RD plot of `golfpack bench peers` (benchmarks/rd_9x512.json) with golfpack `--propagate 1`
points added (benchmarks/rd_9x512_propagate.json: each point an encode + eval, the commands in
benchmarks/RESULTS.md, issue 18, "Re-quantization against the quantized model's inputs").

    python benchmarks/rd_9x512_propagate.py [--out benchmarks/rd_9x512_propagate.png]

Only reads the two JSON files: no encode runs here.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default=str(HERE / "rd_9x512.json"))
    ap.add_argument("--points", default=str(HERE / "rd_9x512_propagate.json"))
    ap.add_argument("--out", default=str(HERE / "rd_9x512_propagate.png"))
    args = ap.parse_args()
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("this plot needs matplotlib: pip install matplotlib")
    bench = json.loads(Path(args.bench).read_text())
    extra = json.loads(Path(args.points).read_text())
    ref = bench["reference"]["val_bpb"]
    fig, ax = plt.subplots(figsize=(8, 5))
    g = sorted(bench["golfpack"]["points"], key=lambda p: p["bytes"])
    ax.plot([p["bytes"] / 1e6 for p in g], [p["val_bpb"] for p in g], "-", color="tab:blue", lw=1.2,
            label="golfpack defaults (bench peers)")
    fams: dict[str, list] = {}
    for p in bench["peers"]:
        if p["family"] in ("c", "d", "f"):
            fams.setdefault(p["family"], []).append(p)
    style = {"c": ("tab:orange", "s"), "d": ("tab:red", "o"), "f": ("tab:green", "^")}
    names = {"c": "c: SDClip RTN + brotli-11", "d": "d: GPTQ SDClip + brotli-11", "f": "f: GPTQ SDClip + lrzip pergroup"}
    for fam, pts in sorted(fams.items()):
        pts.sort(key=lambda p: p["bytes"])
        col, mk = style[fam]
        ax.plot([p["bytes"] / 1e6 for p in pts], [p["val_bpb"] for p in pts], mk + "--", color=col, ms=5, label=names[fam])
    pp = extra["points"]
    ax.plot([p["bytes"] / 1e6 for p in pp], [p["val_bpb"] for p in pp], "*", color="tab:purple", ms=11,
            label="golfpack --propagate 1 (seeds 0-2)")
    ax.axhline(ref, color="gray", lw=0.8, ls=":", label=f"float {ref:.4f}")
    lo = min(p["bytes"] for p in bench["peers"] if p["family"] in ("c", "d", "f"))
    ax.set_xlim(lo / 1e6 * 0.95, 12.0)
    ax.set_ylim(ref - 0.005, 1.70)
    ax.set_xlabel("bytes (MB, 10^6)")
    ax.set_ylabel("val_bpb, c4_val 204,800 targets, seq 1024")
    ax.set_title("GPU-trained 9x512: golfpack vs the competitors' pipelines")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
