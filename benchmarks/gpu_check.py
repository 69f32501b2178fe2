"""GPU check: packed vs dense bf16 throughput of the 7x384 layer stack on one card.

Times, per bit width, one forward pass over the linear layers of a GPT block
stack (shapes of the 7x384 baseline; 9x512 with --baseline-9x512) for a batch of
M tokens, with PackedLinear (auto: small-M CUDA kernels, dequant + cuBLAS for
large M) and with dense bf16 F.linear on the same card and in the same run, and
reports tokens/s. Also times each CUDA kernel path (small-M, tiled, dequant+mm)
per shape so the crossover PackedLinear.cuda_tile_min_m can be set by data.
Then the whole model: eval tokens/s of golfpack.evaluate on a baseline-shaped GPT
(random weights quantized the baseline's int8-per-row way and written as a .ptz),
dense (golfpack.model.load, bf16 autocast) vs packed (load_packed: PackedLinear
layers, dense weights never materialized), same card, same tokens, same run.

    python benchmarks/gpu_check.py [--out table.md]
    python benchmarks/gpu_check.py --model-only --device cpu --small   # CPU smoke run of the model part
"""
import argparse
import io
import os
import tempfile
import time
import zlib

import numpy as np

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


def write_baseline_ptz(model, path):
    """The model's weights in the challenge's int8_clean_per_row_v1 .ptz layout (2-D > 65,536 elements
    quantized per row with the baseline's clip and 1/127 floor; everything else passed through)."""
    quantized, scales, dtypes, passthrough, qmeta = {}, {}, {}, {}, {}
    for name, t in model.state_dict().items():
        t = t.detach().float().cpu()
        if t.ndim == 2 and t.numel() > 65_536:
            clip = torch.quantile(t.abs(), 0.9999984, dim=1) if t.shape[1] <= 16_777_216 else t.abs().amax(1)
            scale = torch.clamp(clip / 127, min=1 / 127).to(torch.float16)
            q = torch.clamp(torch.round(torch.clamp(t, -clip[:, None], clip[:, None]) / scale.float()[:, None]), -127, 127)
            quantized[name], scales[name], dtypes[name] = q.to(torch.int8), scale, "float32"
            qmeta[name] = {"scheme": "per_row", "axis": 0}
        else:
            passthrough[name] = t
    obj = {"__quant_format__": "int8_clean_per_row_v1", "quantized": quantized, "scales": scales, "dtypes": dtypes,
           "passthrough": passthrough, "qmeta": qmeta}
    buf = io.BytesIO()
    torch.save(obj, buf)
    with open(path, "wb") as f:
        f.write(zlib.compress(buf.getvalue(), 1))


def model_eval_table(device: str, small: bool) -> list[str]:
    """Eval tokens/s, dense vs packed, of a baseline-shaped GPT on the same tokens."""
    from golfpack.data.bytes import ByteTables
    from golfpack.evaluate import evaluate
    from golfpack.evaluate.packed_model import load_packed, packed_summary
    from golfpack.model import GPT, GPTConfig, load

    if small:
        cfg, L, n_tokens, batches = GPTConfig(num_layers=2, model_dim=384), 128, 4096, (4,)
    else:
        cfg, L, n_tokens, batches = GPTConfig(), 1024, 2_000_000, (8, 32, 64)  # the 9x512 challenge baseline
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model = GPT(cfg)
        for p in model.parameters():  # zero-init projections would make the model trivial
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    rng = np.random.default_rng(0)
    tokens = rng.integers(2, cfg.vocab_size, n_tokens + 1).astype(np.uint16)
    tokens[:: 1000] = 1  # a BOS every 1000 tokens
    v = cfg.vocab_size
    tables = ByteTables(np.ones(v, np.int16), np.zeros(v, bool), np.arange(v) < 4)
    lines = [f"| model | batch (windows of {L}) | dense tok/s | packed tok/s | packed/dense | dense bpb | packed bpb |",
             "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        ptz = os.path.join(tmp, "model.ptz")
        write_baseline_ptz(model, ptz)
        dense = load(ptz, device=device)
        packed = load_packed(ptz, device=device)
        summ = packed_summary(packed)
        for b in batches:
            res = {}
            for name, m in (("dense", dense), ("packed", packed)):
                evaluate(m, tokens, tables, seq_len=L, batch=b, device=device, max_tokens=b * L)  # warm-up
                if device == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                r = evaluate(m, tokens, tables, seq_len=L, batch=b, device=device)
                res[name] = (r, time.perf_counter() - t0)
            (rd, td), (rp, tp) = res["dense"], res["packed"]
            lines.append(f"| {cfg.num_layers}x{cfg.model_dim} | {b} | {rd.tokens / td:,.0f} | {rp.tokens / tp:,.0f} | "
                         f"{td / tp:.2f} | {rd.val_bpb:.5f} | {rp.val_bpb:.5f} |")
            print(lines[-1], flush=True)
    lines.append(f"\npacked model: {summ}")
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline-9x512", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--model-only", action="store_true", help="only the whole-model eval table")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="tiny model and few tokens (smoke run)")
    a = ap.parse_args()
    if a.model_only:
        print("\n".join(model_eval_table(a.device, a.small)))
        return
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
    lines += ["", "## whole-model eval (golfpack.evaluate, bf16 autocast)", ""] + model_eval_table("cuda", False)
    text = "\n".join(lines) + "\n"
    dest = a.out or (os.path.join(os.environ["OUT"], "gpu_check.md") if os.environ.get("OUT") else None)
    if dest:
        with open(dest, "w") as f:
            f.write(text)
        print(f"wrote {dest}")


if __name__ == "__main__":
    main()
