"""Decode to packed weights at every bit width, one command (issue 19).

    python benchmarks/decode_widths.py [--dir DIR] [--reps 5] [--widths 4,5,6,7,8]
        [--real-9x512 PATH/model.safetensors.index.json] [--fast-decode] [--json OUT]

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

--fast-decode: each synthetic artifact is also re-coded with the fast-decode coder
(`golfpack recode A -o B --coders CODERS --fast-decode`: the same tensors, symbol streams in
rans_x32, csrc/RANS.md section 7), both artifacts are benched in this run, and a second table
compares them per width: bytes, symbol decode into packed rows (MB/s per ISA, best of the reps),
and load_packed CPU ms.
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


def fast_twin(path: Path, coders: str) -> Path:
    """The artifact with its symbol streams re-coded by the fast-decode coder (same tensors)."""
    out = path.with_name(path.stem + "_x32.gp")
    if not out.exists():
        subprocess.run(["golfpack", "recode", str(path), "-o", str(out), "--coders", coders, "--fast-decode",
                        "--jobs", "1"], check=True, capture_output=True)
    return out


def bench(path: Path, reps: int) -> dict:
    r = subprocess.run(["golfpack", "bench", "decode", str(path), "--reps", str(reps), "--json"],
                       check=True, capture_output=True, text=True)
    return json.loads(r.stdout)


def coders_of(path: Path) -> str:
    from golfpack.codec.container import read_artifact

    art = read_artifact(path)
    c = Counter(e.streams["symbols"].coder for e in art.tensors.values() if e.is_quantized)
    return ", ".join(f"{k} {v}" for k, v in c.most_common())


def print_pairs(pairs) -> None:
    """v1 rans vs rans_x32 per width: bytes, rows decode MB/s per ISA, load CPU ms."""
    print("| width | artifact | bytes v1 | bytes rans_x32 | size | rows MB/s v1 (per ISA) | rows MB/s rans_x32 "
          "(per ISA) | load CPU ms v1 / rans_x32 |")
    print("|---:|---|---:|---:|---:|---|---|---:|")
    for w, label, v1, x32 in pairs:
        kv, kx = v1["kernel"] or {}, x32["kernel"] or {}
        isas = [k[len("rows_"):-len("_MBps")] for k in kv if k.startswith("rows_") and k.endswith("_MBps")]
        mv = " / ".join(f"{kv[f'rows_{i}_MBps']:.0f}" for i in isas)
        mx = " / ".join(f"{kx.get(f'rans_x32_rows_{i}_MBps', 0):.0f}" for i in isas)
        print(f"| {w} | {label} | {v1['artifact_bytes']:,} | {x32['artifact_bytes']:,} | "
              f"{x32['artifact_bytes'] / v1['artifact_bytes'] - 1:+.3%} | {mv} ({', '.join(isas)}) | {mx} | "
              f"{v1['decode_cpu_ms_median']:.1f} / {x32['decode_cpu_ms_median']:.1f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/golfpack_decode_widths")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--widths", default="4,5,6,7,8")
    ap.add_argument("--real-9x512", default=None)
    ap.add_argument("--coders", default="raw,rans", help="coders of the synthetic artifacts (default raw,rans)")
    ap.add_argument("--fast-decode", action="store_true",
                    help="also bench each synthetic artifact re-coded with rans_x32 and compare the two")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    d = Path(a.dir)
    d.mkdir(parents=True, exist_ok=True)
    rows, pairs = [], []
    for w in [int(x) for x in a.widths.split(",")]:
        for label, p in build(d, w, a.real_9x512, a.coders):
            res = bench(p, a.reps)
            rows.append((w, label, p, coders_of(p), res))
            if a.fast_decode and label.startswith("synthetic"):
                q = fast_twin(p, a.coders)
                fres = bench(q, a.reps)
                rows.append((w, label + " (--fast-decode)", q, coders_of(q), fres))
                pairs.append((w, label, res, fres))
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
    if pairs:
        print()
        print_pairs(pairs)
    if a.json:
        Path(a.json).write_text(json.dumps([{"width": w, "label": l, "path": str(p), "coders": c, "bench": r}
                                            for w, l, p, c, r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
