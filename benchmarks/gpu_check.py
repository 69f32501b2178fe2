"""GPU check: packed vs dense bf16 throughput of the 7x384 layer stack on one card.

Times, per bit width, one forward pass over the linear layers of a GPT block
stack (shapes of the 7x384 baseline; 9x512 with --baseline-9x512) for a batch of
M tokens, with PackedLinear (auto: small-M CUDA kernels, dequant + cuBLAS for
large M) and with dense bf16 F.linear on the same card and in the same run, and
reports tokens/s. Also times each CUDA kernel path (small-M, tiled, dequant+mm)
per shape so the crossover PackedLinear.cuda_tile_min_m can be set by data.
The golfpack GPT model is not wired to PackedLinear yet, so the stack of
linears (which is all that changes between dense and packed) is timed.

    python benchmarks/gpu_check.py [--out table.md]
"""
import argparse
import os

import torch
import torch.nn.functional as F

from golfpack.model.packed import PackedLinear


def block_shapes(d):  # (out N, in K) of one block: q, k/v (GQA half width), proj, MLP up / down
    return [(d, d), (d // 2, d), (d // 2, d), (d, d), (2 * d, d), (d, 2 * d)]


def cuda_time(fn, reps=20):
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps / 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline-9x512", action="store_true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    layers, d = (9, 512) if a.baseline_9x512 else (7, 384)
    torch.manual_seed(0)
    lines = [f"# gpu_check: {torch.cuda.get_device_name()} torch {torch.__version__}, {layers}x{d} linear stack", ""]
    lines += ["| bits | M tokens | dense bf16 tok/s | packed tok/s | packed/dense |", "|---|---|---|---|---|"]
    shapes = block_shapes(d) * layers
    weights = [torch.randn(n, k, device="cuda") * 0.05 for n, k in shapes]
    with torch.no_grad():
        for bits in (4, 6, 8):
            packed = [PackedLinear.from_dense(w, bits) for w in weights]
            dense = [p.dequantize().to(torch.bfloat16) for p in packed]
            for M in (1, 16, 256, 4096, 65536):
                xs = [torch.randn(M, k, device="cuda", dtype=torch.bfloat16) for _, k in shapes]
                td = cuda_time(lambda: [F.linear(x, w) for x, w in zip(xs, dense)])
                tp = cuda_time(lambda: [p(x) for x, p in zip(xs, packed)])
                lines.append(f"| {bits} | {M} | {M / td:,.0f} | {M / tp:,.0f} | {td / tp:.2f} |")
                print(lines[-1], flush=True)
        lines += ["", "| kernel path (bits 6, bf16) | N x K | M | us |", "|---|---|---|---|"]
        from golfpack import _C
        for n, k in sorted(set(block_shapes(d))):
            p = PackedLinear.from_dense(torch.randn(n, k, device="cuda"), 6)
            for M in (1, 16, 64, 256, 1024, 4096):
                x = torch.randn(M, k, device="cuda", dtype=torch.bfloat16)
                out = torch.empty(M, n, device="cuda", dtype=torch.bfloat16)
                st = torch.cuda.current_stream().cuda_stream
                paths = {"tiled": 1, "small-M": 2} if M <= 16 else {"tiled": 1}
                for name, algo in paths.items():
                    t = cuda_time(lambda: _C.qgemm_cuda(x.data_ptr(), "bfloat16", M, k, p.packed.data_ptr(),
                                                        p.packed.shape[1], p.scales.data_ptr(), 6, n,
                                                        out.data_ptr(), st, algo))
                    lines.append(f"| {name} | {n}x{k} | {M} | {t * 1e6:.1f} |")
                saved = PackedLinear.cuda_tile_min_m
                p.cuda_tile_min_m = 1
                t = cuda_time(lambda: p(x))
                p.cuda_tile_min_m = saved
                lines.append(f"| dequant+cuBLAS | {n}x{k} | {M} | {t * 1e6:.1f} |")
                print("\n".join(lines[-len(paths) - 1:]), flush=True)
    text = "\n".join(lines) + "\n"
    dest = a.out or (os.path.join(os.environ["OUT"], "gpu_check.md") if os.environ.get("OUT") else None)
    if dest:
        with open(dest, "w") as f:
            f.write(text)
        print(f"wrote {dest}")


if __name__ == "__main__":
    main()
