"""Fast decode: an artifact, in process, to inference-ready packed weights (issue 8).

    golfpack bench decode ART [--reps 5] [--threads 1] [--json]

One rep = golfpack.evaluate.packed_model.load_packed(ART): read the file, parse and check the
manifest, CRC every stream, decode the rANS symbols straight into PackedLinear's packed rows,
widen the scales, decode the remaining (float) tensors and build the GPT around them: exactly
what `golfpack eval` runs on. Measured in the same run, interleaved rep by rep so that load on
a shared machine hits all alike:

  fused     the default path (rANS -> packed rows in one native call; the widest SIMD loop the
            CPU has: AVX-512, else AVX2)
  avx2      the same with the AVX2 loops (only on an AVX-512 CPU: the loop before AVX-512)
  scalar    the same with the rANS/pack inner loops forced to scalar (only on an AVX2 CPU)
  unfused   the per-tensor path (decode int8 symbols, then qpack_rows): the pre-issue-8 baseline

Each gets the median wall time and the median CPU time of the process (all threads), and the
median CPU time per stage (exclusive: a stage nested in another is not counted twice). The packed
weights of every configuration are checked identical. `kernel` times the native calls alone on
the artifact's symbol streams (v1 rans, rans_rc and rans_x32 each, under "auto" (what a load runs)
and each ISA; MB = 10^6 symbols per second of thread CPU time), and `crc` the
stream checksums with zlib vs golfpack._C.crc32.

JSON keys: artifact_bytes, symbols, decode_ms_median (fused, wall), decode_cpu_ms_median,
rest_cpu_ms_median (fused: CPU time less the crc+rans+pack stage, per rep), threads, reps, isa,
stages_cpu_ms, configs {name: {...}}, ratios, kernel, crc.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
import zlib
from collections import defaultdict
from pathlib import Path

from golfpack.errors import GolfpackError


class StageTimer:
    """timer(stage) context managers with exclusive times: entering a nested stage pauses the outer.

    `clock` is time.process_time by default: CPU time of the process (all threads). On a shared
    machine wall time mostly measures the other tenants; CPU time is what the decode costs."""

    def __init__(self, clock=time.process_time):
        self.clock = clock
        self.ms: dict[str, float] = defaultdict(float)
        self._stack: list[list] = []

    @contextlib.contextmanager
    def __call__(self, stage: str):
        now = self.clock()
        if self._stack:
            outer = self._stack[-1]
            self.ms[outer[0]] += (now - outer[1]) * 1e3
        self._stack.append([stage, now])
        try:
            yield
        finally:
            now = self.clock()
            name, t0 = self._stack.pop()
            self.ms[name] += (now - t0) * 1e3
            if self._stack:
                self._stack[-1][1] = now


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("artifact", help="golfpack artifact (benchmarks/make_decode_artifact.py writes a ~15 MB one)")
    ap.add_argument("--reps", type=int, default=5, help="timed reps per configuration (median; default 5)")
    ap.add_argument("--threads", type=int, default=1, help="decode threads of the fused path (default 1)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unfused and scalar configurations")
    ap.add_argument("--json", action="store_true", help="print one JSON object")


def main(argv=None) -> int:
    """Script entry point: the same command as `golfpack bench decode` (one-line errors, exit 2)."""
    from golfpack.cli import main as gp_main

    return gp_main(["bench", "decode", *(sys.argv[1:] if argv is None else argv)])


def _one(path: Path, threads: int, fused: bool):
    from golfpack.evaluate.packed_model import load_packed

    timer = StageTimer()
    w0, c0 = time.perf_counter(), time.process_time()
    model = load_packed(path, threads=threads, fused=fused, timer=timer)
    wall, cpu = (time.perf_counter() - w0) * 1e3, (time.process_time() - c0) * 1e3
    return model, wall, cpu, dict(timer.ms)


SYMBOL_STAGE = "crc+rans+pack"  # the native symbol decode; the rest of a load is Python and the model


def _summary(runs: list[tuple[float, float, dict]]) -> dict:
    stages = sorted({k for _, _, st in runs for k in st})
    return {
        "decode_ms_median": statistics.median(w for w, _, _ in runs),
        "decode_cpu_ms_median": statistics.median(c for _, c, _ in runs),
        # per rep: the load's CPU time less its symbol stage (read, manifest, skeleton, layers,
        # scales, other tensors: everything issue 19 line 2's Python half owns)
        "rest_cpu_ms_median": round(statistics.median(c - st.get(SYMBOL_STAGE, 0.0) for _, c, st in runs), 2),
        "decode_ms_all": [round(w, 2) for w, _, _ in runs],
        "stages_cpu_ms": {k: round(statistics.median(st.get(k, 0.0) for _, _, st in runs), 2) for k in stages},
    }


def _best_thread_times(fns: dict, isas: list[str], reps: int) -> dict[str, float]:
    """Best thread time of each fn under each rANS ISA over `reps` rounds (rans_set_isa switched
    round by round, restored after): {f"{name}_{isa}": seconds}."""
    from golfpack import _C

    prev = _C.rans_set_isa("auto")
    best: dict[str, float] = {}
    try:
        for _ in range(reps):
            for isa in isas:
                _C.rans_set_isa(isa)
                for what, fn in fns.items():
                    t = time.thread_time()
                    fn()
                    key = f"{what}_{isa}"
                    best[key] = min(best.get(key, float("inf")), time.thread_time() - t)
    finally:
        _C.rans_set_isa(prev)
    return best


def _kernel(art, reps: int) -> dict:
    """Native rows decode and plain rans_decode on the artifact's symbol streams, per ISA."""
    from golfpack import _C

    entries = [e for e in art.tensors.values() if e.packs_directly and e.streams["symbols"].coder == "rans"]
    jobs = [(e.stream_view("symbols"), e.shape[0], e.shape[1], e.streams["symbols"].type.bits) for e in entries]
    n = sum(r * c for _, r, c, _ in jobs)
    # "auto" = what a load runs (its round loops and packers; on a VBMI CPU whose auto loop is
    # AVX2, e.g. AMD Zen 5, auto packs with VBMI while a forced "avx2" keeps the AVX2 packers)
    isas = ["auto"] + simd_isas() + ["scalar"]
    out = {"streams": len(jobs), "symbols": n}
    rc = [e for e in art.tensors.values() if e.packs_directly and e.streams["symbols"].coder == "rans_rc"]
    if rc:
        out.update(_kernel_rc(rc, isas, reps))
    x32 = [e for e in art.tensors.values() if e.packs_directly and e.streams["symbols"].coder == "rans_x32"]
    if x32:
        out.update(_kernel_x32(x32, isas, reps))
    if not jobs:  # no v1 rans streams: nothing to time (and no 0/0 ratios)
        return out
    best = _best_thread_times({"rows": lambda: _C.rans_decode_rows(jobs, 1),
                               "decode": lambda: [_C.rans_decode(d, r * c) for d, r, c, _ in jobs]}, isas, reps)
    out.update({f"{k}_MBps": round(n / v / 1e6, 1) for k, v in best.items() if v > 0})
    out.update({f"{k}_cpu_ms": round(v * 1e3, 2) for k, v in best.items()})
    for isa in simd_isas():
        out[f"rows_{isa}_over_scalar"] = round(best["rows_scalar"] / best[f"rows_{isa}"], 3)
        out[f"decode_{isa}_over_scalar"] = round(best["decode_scalar"] / best[f"decode_{isa}"], 3)
    return out


def simd_isas() -> list[str]:
    """The SIMD inner loops this CPU has, widest first ('avx512', 'avx2')."""
    from golfpack import _C

    return (["avx512"] if _C.rans_cpu_has_avx512() else []) + (["avx2"] if _C.rans_cpu_has_avx2() else [])


def _kernel_rc(rc, isas, reps: int) -> dict:
    """rans_rc streams (codec/rans_rc.py) straight into packed rows, header parse included: all
    of them in one rans_ctx_decode_rows call (streams interleaved per core), and one stream per
    call (no interleaving), per ISA; best thread time of `reps`."""
    from golfpack.codec.container import _rc_packed_rows

    n_rc = sum(e.numel for e in rc)
    best = _best_thread_times({"rans_rc_rows": lambda: _rc_packed_rows(rc, 1),
                               "rans_rc_rows_one_by_one": lambda: [_rc_packed_rows([e], 1) for e in rc]}, isas, reps)
    out = {"rans_rc_streams": len(rc), "rans_rc_symbols": n_rc}
    out.update({f"{k}_cpu_ms": round(v * 1e3, 2) for k, v in best.items()})
    out.update({f"{k}_MBps": round(n_rc / v / 1e6, 1) for k, v in best.items() if v > 0})
    for isa in simd_isas():
        out[f"rans_rc_rows_{isa}_over_scalar"] = round(best["rans_rc_rows_scalar"] / best[f"rans_rc_rows_{isa}"], 3)
        out[f"rans_rc_{isa}_interleaved_over_one_by_one"] = round(
            best[f"rans_rc_rows_one_by_one_{isa}"] / best[f"rans_rc_rows_{isa}"], 3)
    return out


def _kernel_x32(entries, isas, reps: int) -> dict:
    """rans_x32 streams (csrc/RANS.md section 7): straight into packed rows (all in one
    rans_x32_decode_rows call, streams interleaved per core) and plain rans_x32_decode, per ISA;
    best thread time of `reps`."""
    from golfpack import _C

    jobs = [(e.stream_view("symbols"), e.shape[0], e.shape[1], e.streams["symbols"].type.bits) for e in entries]
    n = sum(r * c for _, r, c, _ in jobs)
    best = _best_thread_times({"rans_x32_rows": lambda: _C.rans_x32_decode_rows(jobs, 1),
                               "rans_x32_decode": lambda: [_C.rans_x32_decode(d, r * c) for d, r, c, _ in jobs]},
                              isas, reps)
    out = {"rans_x32_streams": len(jobs), "rans_x32_symbols": n}
    out.update({f"{k}_cpu_ms": round(v * 1e3, 2) for k, v in best.items()})
    out.update({f"{k}_MBps": round(n / v / 1e6, 1) for k, v in best.items() if v > 0})
    for isa in simd_isas():
        out[f"rans_x32_rows_{isa}_over_scalar"] = round(best["rans_x32_rows_scalar"] / best[f"rans_x32_rows_{isa}"], 3)
    return out


def _crc(art, reps: int) -> dict:
    from golfpack import _C

    views = [e.stream_view(r) for e in art.tensors.values() for r in e.streams]
    best = {}
    for _ in range(reps):
        for name, fn in (("zlib", zlib.crc32), ("golfpack", _C.crc32)):
            t = time.thread_time()
            for v in views:
                fn(v)
            best[name] = min(best.get(name, float("inf")), time.thread_time() - t)
    return {"bytes": sum(len(v) for v in views), "zlib_ms": round(best["zlib"] * 1e3, 2),
            "golfpack_ms": round(best["golfpack"] * 1e3, 2), "simd": bool(_C.crc32_simd)}


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].dtype == sb[k].dtype and sa[k].shape == sb[k].shape
                                          and bool((sa[k] == sb[k]).all()) for k in sa)


def run(args) -> int:
    import torch

    from golfpack import _C
    from golfpack.checkpoint import is_artifact
    from golfpack.codec.container import read_artifact

    path = Path(args.artifact)
    if not path.is_file():
        raise GolfpackError(f"{path}: no such artifact file")
    if not is_artifact(path):
        raise GolfpackError(f"{path}: not a golfpack artifact (bench decode measures artifacts only)")
    for v, what in ((args.reps, "--reps"), (args.threads, "--threads")):
        if v < 1:
            raise GolfpackError(f"{what} must be >= 1, got {v}")
    torch.set_num_threads(1)  # the headline is one core; --threads only sets the decode threads
    art = read_artifact(path)  # validates; FormatError (exit 2) on a corrupt artifact
    symbols = sum(e.numel for e in art.tensors.values() if e.packs_directly)

    simd = simd_isas()
    configs = [("fused", "auto", args.threads, True)]
    if not args.no_baseline:
        if len(simd) > 1:  # the narrower SIMD loop too (AVX2 on an AVX-512 CPU)
            configs.append((simd[1], simd[1], args.threads, True))
        if simd:
            configs.append(("scalar", "scalar", args.threads, True))
        configs.append(("unfused", "auto", 1, False))
    prev = _C.rans_isa()
    prev_setting = _C.rans_set_isa("auto")
    runs: dict[str, list] = {name: [] for name, *_ in configs}
    models = {}
    try:
        for name, isa, threads, fused in configs:  # warm-up: imports, page cache, allocator
            _C.rans_set_isa(isa)
            models[name] = _one(path, threads, fused)[0]
        for _ in range(args.reps):
            for name, isa, threads, fused in configs:
                _C.rans_set_isa(isa)
                _, wall, cpu, stages = _one(path, threads, fused)
                runs[name].append((wall, cpu, stages))
    finally:
        _C.rans_set_isa(prev_setting)
    ref = models["fused"]
    identical = all(_same_weights(ref, m) for k, m in models.items() if k != "fused")
    if not identical:
        raise GolfpackError("configurations decoded different weights (a bug): refusing to report timings")

    cfg = {name: _summary(r) for name, r in runs.items()}
    head = cfg["fused"]
    ratios = {}
    for other in [c[0] for c in configs[1:]]:
        if other in cfg:
            ratios[f"{other}_over_fused_wall"] = round(cfg[other]["decode_ms_median"] / head["decode_ms_median"], 3)
            ratios[f"{other}_over_fused_cpu"] = round(cfg[other]["decode_cpu_ms_median"] / head["decode_cpu_ms_median"], 3)
    result = {
        "artifact": str(path), "artifact_bytes": path.stat().st_size, "symbols": symbols,
        "decode_ms_median": round(head["decode_ms_median"], 2),
        "decode_cpu_ms_median": round(head["decode_cpu_ms_median"], 2),
        "rest_cpu_ms_median": head["rest_cpu_ms_median"],
        "threads": args.threads, "reps": args.reps, "isa": prev, "stages_cpu_ms": head["stages_cpu_ms"],
        "configs": cfg, "ratios": ratios, "weights_identical": identical,
        "kernel": _kernel(art, max(args.reps, 3)) if not args.no_baseline else None,
        "crc": _crc(art, max(args.reps, 3)) if not args.no_baseline else None,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{path}: {result['artifact_bytes']:,} bytes, {symbols:,} symbols decoded into packed rows; "
          f"rANS ISA {prev}, {args.threads} decode thread(s), median of {args.reps}")
    print(f"{'config':<8} {'wall ms':>9} {'cpu ms':>9} {'rest ms':>9}  stages (cpu ms, median)")
    for name, c in cfg.items():
        st = ", ".join(f"{k} {v:.1f}" for k, v in c["stages_cpu_ms"].items())
        print(f"{name:<8} {c['decode_ms_median']:>9.1f} {c['decode_cpu_ms_median']:>9.1f} "
              f"{c['rest_cpu_ms_median']:>9.1f}  {st}")
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}x")
    if result["kernel"]:
        print("kernel:", ", ".join(f"{k} {v}" for k, v in result["kernel"].items()))
        print("crc:", ", ".join(f"{k} {v}" for k, v in result["crc"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
