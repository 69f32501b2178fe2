"""Entropy-coding benchmark: golfpack rANS vs zstd-22 / brotli-11 / lzma-9, and int6 unpack.

    golfpack bench entropy [--json] [--ckpt PATH] [--reps N]      (or python benchmarks/entropy.py)

Stream sets, each tensor coded as its own stream (as the container does), results summed:
- int8: the per-row int8 symbols of the real baseline checkpoint, as u = q + 128.
- int6-absmax: the same weights dequantized (w = q * scale[:, None]) and re-quantized per
  row with step = absmax(row) / 31 (all-zero rows get step 1), q6 = round(w / step), as
  u = q6 + 128. Rows then differ a lot in spread (an outlier row collapses to ~0), which
  LZ coders exploit and an order-0 model cannot: expect brotli below per-tensor H0 here.
- int6-sdclip: SDClip as in the top records: step = k * std(row) / 31 with k = 12.85,
  q6 = clip(round(w / step), -31, 31). Rows share one shape, so order-0 is near-optimal.
- int6-concat: all int6-sdclip symbols as ONE stream (>= 1M symbols), to show big-stream speed.
Without the checkpoint, synthetic Laplace int8/int6 tensors of the same shapes stand in.

Reported per coder: bytes, % over H0 (sum of per-tensor order-0 entropies; the LZ coders get
one byte per symbol), encode and decode MB/s (MB of symbols; best of --reps runs, wall clock
and this thread's CPU time: the CPU figure is robust to sharing the core with other jobs).
Also: rANS/zstd decode-speed ratio and int6 unpack GB/s (output int8 bytes) vs numpy.
"""
from __future__ import annotations

import argparse
import io
import json
import lzma
import os
import sys
import time
import zlib
from pathlib import Path

import brotli
import numpy as np
import zstandard

from golfpack import _C

from golfpack.bench import paths

DEFAULT_CKPT = Path(paths.default(paths.CHECKPOINT))


# ---------------------------------------------------------------------------------------
# symbol streams
# ---------------------------------------------------------------------------------------
SDCLIP_K = 12.85


def requant_int6(w: np.ndarray) -> np.ndarray:
    """Per-row absmax: step = max|w_row| / 31."""
    absmax = np.abs(w).max(axis=1, keepdims=True)
    step = np.where(absmax > 0, absmax / 31.0, 1.0)
    return np.clip(np.round(w / step), -31, 31).astype(np.int8)


def requant_int6_sdclip(w: np.ndarray, k: float = SDCLIP_K) -> np.ndarray:
    """SDClip: step = k * std(row) / 31, values clipped to [-31, 31]."""
    std = w.std(axis=1, keepdims=True)
    step = np.where(std > 0, k * std / 31.0, 1.0)
    return np.clip(np.round(w / step), -31, 31).astype(np.int8)


def as_u(s: np.ndarray) -> np.ndarray:
    return (s.reshape(-1).astype(np.int16) + 128).astype(np.uint8)


def load_checkpoint_streams(path: Path):
    import torch

    torch.set_num_threads(1)
    obj = torch.load(io.BytesIO(zlib.decompress(path.read_bytes())), map_location="cpu",
                     weights_only=True)
    int8, int6, int6sd = [], [], []
    for name, q in obj["quantized"].items():
        q = q.numpy()
        scale = obj["scales"][name].float().numpy()
        w = q.astype(np.float32).reshape(q.shape[0], -1) * scale[:, None]
        int8.append((name, as_u(q)))
        int6.append((name, as_u(requant_int6(w))))
        int6sd.append((name, as_u(requant_int6_sdclip(w))))
    return int8, int6, int6sd, f"checkpoint {path.name}"


def synthetic_streams(seed: int = 0):
    rng = np.random.default_rng(seed)
    shapes = [(1024, 384)] + [(384, 384), (192, 384), (192, 384), (384, 384), (768, 384),
                              (384, 768)] * 7
    int8, int6, int6sd = [], [], []
    for k, (r, c) in enumerate(shapes):
        w = rng.laplace(0, 1, (r, c)) * rng.uniform(0.5, 2, (r, 1))
        s8 = np.clip(np.round(w / (np.abs(w).max(axis=1, keepdims=True) / 127)), -127, 127)
        int8.append((f"t{k}", as_u(s8.astype(np.int8))))
        int6.append((f"t{k}", as_u(requant_int6(w))))
        int6sd.append((f"t{k}", as_u(requant_int6_sdclip(w))))
    return int8, int6, int6sd, "synthetic Laplace (checkpoint not found)"


def h0_bytes(u: np.ndarray) -> float:
    c = np.bincount(u, minlength=256)
    c = c[c > 0].astype(np.float64)
    return float(-(c * np.log2(c / c.sum())).sum() / 8)


# ---------------------------------------------------------------------------------------
# coders: (encode(bytes-like u8 array) -> bytes, decode(bytes, n) -> object)
# ---------------------------------------------------------------------------------------
def coders():
    zc = zstandard.ZstdCompressor(level=22)
    zd = zstandard.ZstdDecompressor()
    return {
        "rans": (lambda a: _C.rans_encode(a), lambda b, n: _C.rans_decode(b, n)),
        "zstd-22": (lambda a: zc.compress(a.tobytes()),
                    lambda b, n: zd.decompress(b, max_output_size=n)),
        "brotli-11": (lambda a: brotli.compress(a.tobytes(), quality=11),
                      lambda b, n: brotli.decompress(b)),
        "lzma-9": (lambda a: lzma.compress(a.tobytes(), preset=9),
                   lambda b, n: lzma.decompress(b)),
    }


def timed(fn, reps: int):
    """Best-of-reps (wall seconds, thread CPU seconds) and the last result."""
    best_wall = best_cpu = float("inf")
    out = None
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.thread_time()
        out = fn()
        best_cpu = min(best_cpu, time.thread_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - t0)
    return best_wall, best_cpu, out


def bench_set(streams, reps: int, enc_reps: dict[str, int]):
    n_sym = sum(len(u) for _, u in streams)
    h0 = sum(h0_bytes(u) for _, u in streams)
    res = {"symbols": n_sym, "streams": len(streams), "h0_bytes": round(h0, 1), "coders": {}}
    for name, (enc, dec) in coders().items():
        ew, ec, blobs = timed(lambda: [enc(u) for _, u in streams], enc_reps.get(name, 1))
        dw, dc, outs = timed(lambda: [dec(b, len(u)) for b, (_, u) in zip(blobs, streams)],
                             reps)
        for o, (_, u) in zip(outs, streams):  # a benchmark of a wrong decoder is worthless
            assert np.array_equal(np.frombuffer(bytes(o) if not isinstance(o, np.ndarray)
                                                else o, np.uint8), u), name
        size = sum(len(b) for b in blobs)
        res["coders"][name] = {
            "bytes": size,
            "over_h0_pct": round(100 * (size / h0 - 1), 4),
            "enc_MBps_wall": round(n_sym / ew / 1e6, 1),
            "enc_MBps_cpu": round(n_sym / ec / 1e6, 1),
            "dec_MBps_wall": round(n_sym / dw / 1e6, 1),
            "dec_MBps_cpu": round(n_sym / dc / 1e6, 1),
        }
    c = res["coders"]
    res["rans_vs_zstd_decode_speed"] = round(c["rans"]["dec_MBps_cpu"] / c["zstd-22"]["dec_MBps_cpu"], 2)
    blobs = [_C.rans_encode(u) for _, u in streams]
    res["rans_table_bytes"] = sum(_C.rans_table_info(b)["table_bytes"] for b in blobs)
    big = [(len(b), h0_bytes(u)) for b, (_, u) in zip(blobs, streams) if len(u) >= 100_000]
    res["rans_max_over_h0_pct_streams_ge_100k"] = (
        round(max(100 * (size / h - 1) for size, h in big), 4) if big else None)
    # Near-empty streams (the baseline's late attn.proj: ~0.01-0.1 bit/symbol, H0 of a few
    # hundred bytes over 100k+ symbols) pay a fixed 10-60 bytes of table + state flush, a
    # large *percentage* of almost nothing. Report the percentage bound on streams that
    # carry information (>= 0.5 bit/symbol) and the absolute overhead of the rest.
    lens = [len(u) for _, u in streams if len(u) >= 100_000]
    real = [(size, h) for (size, h), n in zip(big, lens) if 8 * h / n >= 0.5]
    res["rans_max_over_h0_pct_streams_ge_100k_ge_half_bit"] = (
        round(max(100 * (size / h - 1) for size, h in real), 4) if real else None)
    tiny = [(size, h) for (size, h), n in zip(big, lens) if 8 * h / n < 0.5]
    res["rans_max_over_h0_bytes_streams_ge_100k_lt_half_bit"] = (
        round(max(size - h for size, h in tiny), 1) if tiny else None)
    return res


def numpy_unpack6(packed: np.ndarray, count: int) -> np.ndarray:
    """Vectorized numpy baseline: 3 bytes -> 4 sign-extended 6-bit symbols."""
    g = packed[: (count // 4) * 3].reshape(-1, 3).astype(np.uint32)
    v = g[:, 0] | (g[:, 1] << 8) | (g[:, 2] << 16)
    out = np.empty((len(v), 4), np.uint8)
    for k in range(4):
        out[:, k] = (v >> (6 * k)) & 0x3F
    s = out.reshape(-1).view(np.int8)
    return ((s ^ 0x20) - 0x20).astype(np.int8)  # sign-extend bit 5 (wraps in int8)


def bench_unpack(u_all: np.ndarray, reps: int):
    s = (u_all.astype(np.int16) - 128).astype(np.int8)
    s = s[: len(s) // 4 * 4]
    packed = _C.pack_bits(s, 6)
    fw, fc, out = timed(lambda: _C.unpack_bits(packed, 6, len(s)), reps)
    assert np.array_equal(out, s)
    nw, nc, out_np = timed(lambda: numpy_unpack6(packed, len(s)), max(3, reps // 3))
    assert np.array_equal(out_np, s)
    pw, _, _ = timed(lambda: _C.pack_bits(s, 6), max(3, reps // 3))
    return {
        "symbols": len(s),
        "unpack_GBps_wall": round(len(s) / fw / 1e9, 3),
        "unpack_GBps_cpu": round(len(s) / fc / 1e9, 3),
        "numpy_unpack_GBps_cpu": round(len(s) / nc / 1e9, 3),
        "speedup_vs_numpy": round(nc / fc, 1),
        "pack_GBps_wall": round(len(s) / pw / 1e9, 3),
    }


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--ckpt", type=Path, default=DEFAULT_CKPT,
                    help="baseline .ptz (default: the shared 7x384; synthetic Laplace tensors when absent)")
    ap.add_argument("--reps", type=int, default=7, help="decode repetitions (best-of)")


def main(argv=None) -> int:
    """Script entry point: the same command as `golfpack bench entropy` (one-line errors, exit 2)."""
    from golfpack.cli import main as gp_main

    return gp_main(["bench", "entropy", *(sys.argv[1:] if argv is None else argv)])


def run(args) -> int:
    from golfpack.errors import GolfpackError

    if args.reps < 1:
        raise GolfpackError(f"--reps must be >= 1, got {args.reps}")
    if args.ckpt.exists():
        int8, int6, int6sd, source = load_checkpoint_streams(args.ckpt)
    else:
        int8, int6, int6sd, source = synthetic_streams()
    concat = [("int6-concat", np.concatenate([u for _, u in int6sd]))]
    enc_reps = {"rans": 3}
    result = {
        "source": source,
        "cpu": os.uname().machine,
        "sets": {
            "int8": bench_set(int8, args.reps, enc_reps),
            "int6-absmax": bench_set(int6, args.reps, enc_reps),
            "int6-sdclip": bench_set(int6sd, args.reps, enc_reps),
            "int6-concat": bench_set(concat, args.reps, enc_reps),
        },
        "int6_unpack": bench_unpack(concat[0][1], args.reps * 3),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"source: {source}")
    hdr = (f"{'set':12} {'coder':10} {'bytes':>10} {'over H0':>9} {'enc MB/s':>9} "
           f"{'dec MB/s':>9} {'dec cpu':>9}")
    print(hdr)
    print("-" * len(hdr))
    for set_name, r in result["sets"].items():
        for cname, c in r["coders"].items():
            print(f"{set_name:12} {cname:10} {c['bytes']:>10} {c['over_h0_pct']:>8.3f}% "
                  f"{c['enc_MBps_wall']:>9.1f} {c['dec_MBps_wall']:>9.1f} {c['dec_MBps_cpu']:>9.1f}")
        print(f"{set_name:12} H0 = {r['h0_bytes']:.0f} bytes over {r['streams']} streams, "
              f"{r['symbols']} symbols; rANS tables {r['rans_table_bytes']} bytes; "
              f"rANS/zstd decode speed x{r['rans_vs_zstd_decode_speed']}; rANS worst stream "
              f"(>=100k symbols) {r['rans_max_over_h0_pct_streams_ge_100k']}% over its H0; "
              f"among those with >= 0.5 bit/symbol {r['rans_max_over_h0_pct_streams_ge_100k_ge_half_bit']}%, "
              f"near-empty ones (< 0.5 bit/symbol) at most {r['rans_max_over_h0_bytes_streams_ge_100k_lt_half_bit']} bytes over")
    u = result["int6_unpack"]
    print(f"int6 unpack: {u['unpack_GBps_wall']} GB/s wall, {u['unpack_GBps_cpu']} GB/s cpu "
          f"(numpy {u['numpy_unpack_GBps_cpu']} GB/s, x{u['speedup_vs_numpy']}); "
          f"pack {u['pack_GBps_wall']} GB/s; {u['symbols']} symbols")
    return 0


if __name__ == "__main__":
    sys.exit(main())
