"""Packed dequant-matmul vs dense torch F.linear on CPU, same process, same threads.

For the 7x384 model shapes, bits 4/6/8 and M in {1, 16, 4096}: time of dense
fp32 F.linear, of PackedLinear as configured (auto), and of both of its CPU
strategies forced (native qgemm kernel; tile dequant + torch.mm), each the
minimum over repeats with the variants interleaved (the box is shared, the min
is the least disturbed run). ratio = packed / dense (target <= 1.25 at M=4096).

    python benchmarks/qmatmul_bench.py [--threads 2] [--reps 7] [--backward]
"""
import argparse
import time

import numpy as np

import torch
import torch.nn.functional as F

from golfpack import _C
from golfpack.model.packed import PackedLinear

SHAPES = [(384, 384), (192, 384), (768, 384), (384, 768), (1024, 384)]  # (out N, in K)


def best_time(fn, reps):
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--bits", type=int, nargs="+", default=[4, 6, 8])
    ap.add_argument("--m", type=int, nargs="+", default=[1, 16, 4096])
    ap.add_argument("--backward", action="store_true", help="also time forward + grad_x (transposed kernels) vs dense autograd")
    ap.add_argument("--raw", action="store_true",
                    help="also time the bare kernel call (_C.qgemm_f32 into a preallocated array, no "
                         "PackedLinear / autograd / tensor wrapping) against dense F.linear: at small M "
                         "this separates the kernel from the Python-side cost of a layer call")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {a.threads}, qmatmul ISA {_C.qmatmul_cpu_isa()}, "
          f"auto tile crossover M >= {PackedLinear.cpu_tile_min_m}")
    print(f"{'op':4} {'N x K':>10} {'bits':>4} {'M':>5} {'dense us':>10} {'auto us':>10} {'native us':>10} "
          f"{'tiles us':>10} {'auto/dense':>10} {'native/d':>9} {'tiles/d':>8}")
    worst = {}
    with torch.no_grad():
        for N, K in SHAPES:
            w = torch.randn(N, K) * 0.05
            for bits in a.bits:
                auto = PackedLinear.from_dense(w, bits)
                wd = auto.dequantize()
                native = PackedLinear.from_dense(w, bits)
                native.cpu_tile_min_m = 1 << 62
                tiles = PackedLinear.from_dense(w, bits)
                tiles.cpu_tile_min_m = 1
                for M in a.m:
                    x = torch.randn(M, K)
                    reps = a.reps if M > 64 else 10 * a.reps
                    ops = [("fwd", lambda l: l(x), lambda: F.linear(x, wd))]
                    if a.backward:
                        gy = torch.randn(M, N)
                        # forward + grad_x through autograd, for both (dense: F.linear on W_hat)
                        ops.append(("f+b", lambda l: torch.autograd.grad(l(xg), xg, gy)[0],
                                    lambda: torch.autograd.grad(F.linear(xg, wd), xg, gy)[0]))
                    if a.raw:
                        xn, pk, sc = x.numpy(), native.packed.numpy(), native.scales.numpy()
                        out = np.empty((M, N), np.float32)
                        raw = lambda: _C.qgemm_f32(xn, pk, sc, bits, K, out=out, threads=a.threads)  # noqa: E731
                        td = tr = float("inf")
                        for _ in range(3):
                            td = min(td, best_time(lambda: F.linear(x, wd), reps))
                            tr = min(tr, best_time(raw, reps))
                        worst[("raw", M)] = max(worst.get(("raw", M), 0.0), tr / td)
                        print(f"raw  {f'{N}x{K}':>10} {bits:>4} {M:>5} {td*1e6:>10.1f} {tr*1e6:>10.1f} "
                              f"{'':>10} {'':>10} {tr/td:>10.2f}", flush=True)
                    for name, run, dense in ops:
                        if name == "f+b":
                            xg = x.clone().requires_grad_(True)
                            torch.set_grad_enabled(True)
                        t = {k: float("inf") for k in ("dense", "auto", "native", "tiles")}
                        for _ in range(3):  # interleave the variants
                            t["dense"] = min(t["dense"], best_time(dense, reps))
                            t["auto"] = min(t["auto"], best_time(lambda: run(auto), reps))
                            t["native"] = min(t["native"], best_time(lambda: run(native), reps))
                            t["tiles"] = min(t["tiles"], best_time(lambda: run(tiles), reps))
                        torch.set_grad_enabled(False)
                        r = t["auto"] / t["dense"]
                        worst[(name, M)] = max(worst.get((name, M), 0.0), r)
                        print(f"{name:4} {f'{N}x{K}':>10} {bits:>4} {M:>5} {t['dense']*1e6:>10.1f} "
                              f"{t['auto']*1e6:>10.1f} {t['native']*1e6:>10.1f} {t['tiles']*1e6:>10.1f} "
                              f"{r:>10.2f} {t['native']/t['dense']:>9.2f} {t['tiles']/t['dense']:>8.2f}", flush=True)
    for (name, M), r in sorted(worst.items()):
        print(f"worst auto/dense {name} M={M}: {r:.2f}")


if __name__ == "__main__":
    main()
