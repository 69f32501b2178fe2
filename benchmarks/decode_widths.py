"""Decode to packed weights at every bit width, one command (issue 19).

    python benchmarks/decode_widths.py [--dir DIR] [--reps 5] [--widths 4,5,6,7,8]
        [--real-9x512 PATH/model.safetensors.index.json] [--json OUT]

Builds (once; kept in DIR) ~16 MB artifacts of a seed-class GPT at each width with
benchmarks/make_decode_artifact.py (synthetic Student-t(6) weights, RTN absmax per row), the
layer count chosen per width so the artifact lands near 16 MB, coded with --coders (default
raw,rans: on these i.i.d. synthetic rows the writer's other choices are coin flips within
~0.5%, and a rans_rc fit of 26-45 M symbols takes many minutes on a shared 2-core machine), and,
with --real-9x512, RTN int7 and int8 artifacts of the GPU-trained 9x512 with the writer's
default coders, whatever it picks (`golfpack encode --bits B --method rtn --calib none`). Then
runs `golfpack bench decode ART --reps N --json` on each and prints one table: bytes, symbols,
the coders of the symbol streams, load_packed CPU ms (median; the AVX2 loop's and the scalar
loop's in the same run), the stage profile, and the symbol kernels' MB/s (10^6 symbols per
second of thread CPU time) per ISA. Timings are of this process on whatever machine runs it:
read the ratios when the machine is shared.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
# layers per width that put the synthetic 512-wide, MLP x3, vocab 1024 model near 16 MB
LAYERS = {4: 19, 5: 14, 6: 11, 7: 9, 8: 8}


def build(dir_: Path, width: int, real: str | None, coders: str) -> list[tuple[str, Path]]:
    out = []
    p = dir_ / f"synth_int{width}_{coders.replace(',', '-')}.gp"
    if not p.exists():
        subprocess.run([sys.executable, str(HERE / "make_decode_artifact.py"), "-o", str(p), "--bits", str(width),
                        "--layers", str(LAYERS[width]), "--coders", coders], check=True)
    out.append((f"synthetic {LAYERS[width]}x512 RTN int{width}", p))
    if real and width in (7, 8):
        p = dir_ / f"real9x512_rtn{width}.gp"
        if not p.exists():
            subprocess.run(["golfpack", "encode", real, "-o", str(p), "--bits", str(width), "--method", "rtn",
                            "--calib", "none", "--quiet"], check=True)
        out.append((f"GPU-trained 9x512 RTN int{width}", p))
    return out


def coders_of(path: Path) -> str:
    from golfpack.codec.container import read_artifact

    art = read_artifact(path)
    c = Counter(e.streams["symbols"].coder for e in art.tensors.values() if e.is_quantized)
    return ", ".join(f"{k} {v}" for k, v in c.most_common())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/golfpack_decode_widths")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--widths", default="4,5,6,7,8")
    ap.add_argument("--real-9x512", default=None)
    ap.add_argument("--coders", default="raw,rans", help="coders of the synthetic artifacts (default raw,rans)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    d = Path(a.dir)
    d.mkdir(parents=True, exist_ok=True)
    rows = []
    for w in [int(x) for x in a.widths.split(",")]:
        for label, p in build(d, w, a.real_9x512, a.coders):
            r = subprocess.run(["golfpack", "bench", "decode", str(p), "--reps", str(a.reps), "--json"],
                               check=True, capture_output=True, text=True)
            res = json.loads(r.stdout)
            rows.append((w, label, p, coders_of(p), res))
    print("| width | artifact | bytes | symbols | symbol coders | load CPU ms (fused) | rest of the load | AVX2 loop "
          "| scalar | stages CPU ms | kernel MB/s |")
    print("|---:|---|---:|---:|---|---:|---:|---:|---:|---|---|")
    for w, label, p, coders, res in rows:
        cfg = res["configs"]
        st = ", ".join(f"{k} {v:.1f}" for k, v in res["stages_cpu_ms"].items())
        k = res["kernel"] or {}
        kern = ", ".join(f"{n.replace('_MBps', '')} {v:.0f}" for n, v in k.items() if n.endswith("_MBps"))
        avx2 = cfg.get("avx2", {}).get("decode_cpu_ms_median")
        scal = cfg.get("scalar", {}).get("decode_cpu_ms_median")
        print(f"| {w} | {label} | {res['artifact_bytes']:,} | {res['symbols']:,} | {coders} | "
              f"{res['decode_cpu_ms_median']:.1f} | {res['rest_cpu_ms_median']:.1f} | {avx2 if avx2 is not None else '-'} | "
              f"{scal if scal is not None else '-'} | {st} | {kern} |")
    if a.json:
        Path(a.json).write_text(json.dumps([{"width": w, "label": l, "path": str(p), "coders": c, "bench": r}
                                            for w, l, p, c, r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
