"""`golfpack encode | decode | inspect`: the codec's subcommands."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from golfpack.errors import GolfpackError


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_output(src: Path, out: Path) -> None:
    if _same_file(src, out) or src.resolve() == out.resolve():
        raise GolfpackError(f"output {out} would overwrite the input; choose another path")
    if out.is_dir():
        raise GolfpackError(f"output {out} is a directory; give a file path")
    if not out.parent.exists():
        raise GolfpackError(f"output directory {out.parent} does not exist")


def h0_bytes(symbols: np.ndarray) -> float:
    """Order-0 entropy of a symbol array, in bytes."""
    if symbols.size == 0:
        return 0.0
    counts = np.bincount(symbols.reshape(-1).astype(np.int16) + 128, minlength=256)
    p = counts[counts > 0] / symbols.size
    return float(-(p * np.log2(p)).sum() * symbols.size / 8)


# ----------------------------------------------------------------------------- encode


def cmd_encode(args) -> int:
    from golfpack.checkpoint import read_checkpoint
    from golfpack.codec.coders import CODERS
    from golfpack.codec.container import parse_artifact, write_artifact
    from golfpack.codec.encode import encode_lossless

    src, out = Path(args.src), Path(args.output)
    _check_output(src, out)
    if not args.lossless:
        raise GolfpackError("choose an encoding mode: --lossless (lossy quantization modes are not available in this version)")
    coders = tuple(c.strip() for c in args.coders.split(",")) if args.coders else CODERS
    t0 = time.perf_counter()
    ck = read_checkpoint(src)
    data = encode_lossless(ck, coders=coders, jobs=args.jobs)
    art = parse_artifact(data)  # self-check: what we write must parse
    write_artifact(out, data)
    secs = time.perf_counter() - t0
    params = ck.num_params()
    use = Counter(s.coder for t in art.tensors.values() for s in t.streams.values())
    src_bytes = src.stat().st_size if src.is_file() else None
    report = {
        "artifact": str(out),
        "artifact_bytes": len(data),
        "header_bytes": art.header_bytes,
        "source": str(src),
        "source_format": ck.source_format,
        "source_bytes": src_bytes,
        "tensors": len(art.tensors),
        "params": params,
        "bits_per_param": 8 * len(data) / params if params else None,
        "coders": dict(sorted(use.items())),
        "has_config": ck.config is not None,
        "seconds": round(secs, 3),
    }
    if args.json:
        print(json.dumps(report))
    else:
        ratio = f" ({len(data) / src_bytes:.4f} of the source)" if src_bytes else ""
        print(f"wrote {out}: {len(data):,} bytes{ratio}, {len(art.tensors)} tensors, {params:,} params, "
              f"{report['bits_per_param']:.3f} bits/param, streams by coder {dict(use)}, {secs:.2f} s")
    return 0


# ----------------------------------------------------------------------------- decode


def cmd_decode(args) -> int:
    from golfpack import safetensors_io
    from golfpack.codec.container import read_artifact

    src, out = Path(args.src), Path(args.output)
    _check_output(src, out)
    art = read_artifact(src)
    if args.symbols:
        arrays = {}
        for name, t in art.tensors.items():
            if t.is_quantized:
                arrays[f"{name}.symbols"] = t.symbols()
                arrays[f"{name}.scales"] = t.scales().float().numpy()
        tmp = out.with_name(out.name + ".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, out)
        print(f"wrote {out}: symbols and scales of {len(arrays) // 2} quantized tensors", file=sys.stderr)
        return 0
    sd = art.state_dict()
    meta = {"format": "pt", "golfpack.source": json.dumps(art.source, sort_keys=True)}
    if art.config is not None:
        meta["golfpack.config"] = json.dumps(art.config, sort_keys=True)
    size = safetensors_io.save_file(sd, out, metadata=meta)
    print(f"wrote {out}: {len(sd)} tensors, {size:,} bytes", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- inspect


def inspect_artifact(path: Path, verify: bool = False) -> dict:
    from golfpack.codec.container import FORMAT_VERSION, read_artifact

    art = read_artifact(path)
    rows = []
    tot_h0 = 0.0
    tot_params = 0
    for name, t in art.tensors.items():
        h0 = None
        if t.is_quantized:
            sym = t.symbols()
            h0 = h0_bytes(sym)
            tot_h0 += h0
        elif verify:
            t.float_data()  # decodes the stream: checks its CRC and size
        tot_params += t.numel
        main = t.streams["symbols" if t.is_quantized else "data"]
        rows.append({
            "name": name,
            "shape": list(t.shape),
            "dtype": t.dtype,
            "scheme": t.kind,
            "bits": t.bits,
            "coder": main.coder,
            "coders": {r: s.coder for r, s in t.streams.items()},
            "bytes": t.nbytes,
            "h0_bytes": None if h0 is None else round(h0, 1),
            "bits_per_param": 8 * t.nbytes / t.numel if t.numel else None,
        })
    if verify:
        art.verify()
        for t in art.tensors.values():
            if t.is_quantized:
                t.scales()
    payload = sum(r["bytes"] for r in rows)
    return {
        "artifact": str(path),
        "format_version": FORMAT_VERSION,
        "artifact_bytes": art.file_bytes,
        "header_bytes": art.header_bytes,
        "payload_bytes": payload,
        "tensors": rows,
        "totals": {
            "tensors": len(rows),
            "params": tot_params,
            "quantized_h0_bytes": round(tot_h0, 1),
            "quantized_bytes": sum(r["bytes"] for r in rows if r["scheme"] != "float"),
            "float_bytes": sum(r["bytes"] for r in rows if r["scheme"] == "float"),
            "bits_per_param": 8 * art.file_bytes / tot_params if tot_params else None,
        },
        "config": art.config,
        "source": art.source,
        "verified": bool(verify),
    }


def cmd_inspect(args) -> int:
    rep = inspect_artifact(Path(args.src), verify=args.verify)
    if args.json:
        print(json.dumps(rep))
        return 0
    w = max([len(r["name"]) for r in rep["tensors"]] + [4])
    print(f"{'name':<{w}}  {'shape':>12}  {'scheme':<15} {'bits':>4}  {'coder':<7} {'bytes':>10} {'H0 bytes':>11} {'bits/param':>10}")
    for r in rep["tensors"]:
        shape = "x".join(map(str, r["shape"])) or "scalar"
        h0 = f"{r['h0_bytes']:,.0f}" if r["h0_bytes"] is not None else "-"
        bpp = f"{r['bits_per_param']:.3f}" if r["bits_per_param"] is not None else "-"
        print(f"{r['name']:<{w}}  {shape:>12}  {r['scheme']:<15} {r['bits']:>4}  {r['coder']:<7} {r['bytes']:>10,} {h0:>11} {bpp:>10}")
    t = rep["totals"]
    print(f"\n{t['tensors']} tensors, {t['params']:,} params; artifact {rep['artifact_bytes']:,} bytes "
          f"(header+manifest {rep['header_bytes']:,}, quantized {t['quantized_bytes']:,} vs H0 {t['quantized_h0_bytes']:,.0f}, "
          f"float {t['float_bytes']:,}); {t['bits_per_param']:.3f} bits/param")
    if rep["verified"]:
        print("verified: every checksum matches and every stream decodes")
    return 0


# ----------------------------------------------------------------------------- registration


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="checkpoint -> golfpack artifact",
                       description="Encode a checkpoint (.pt, .safetensors, sharded index .json, baseline .ptz, "
                                   "or a trainer output dir) into a golfpack artifact.")
    p.add_argument("src", help="source checkpoint")
    p.add_argument("-o", "--output", required=True, help="artifact path to write")
    p.add_argument("--lossless", action="store_true",
                   help="store source integer symbols exactly and float tensors bit-exactly")
    p.add_argument("--coders", default=None, help="comma list of allowed coders (default: raw,rans,zstd,brotli)")
    p.add_argument("--jobs", type=int, default=None, help="parallel encoder threads (default: cores, max 8)")
    p.add_argument("--json", action="store_true", help="print one JSON object (keys: artifact_bytes, params, ...)")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="golfpack artifact -> safetensors (or symbols .npz)",
                       description="Decode an artifact to the dequantized float state dict (.safetensors, names as in "
                                   "the source, model config in the metadata), or with --symbols to each quantized "
                                   "tensor's integer symbols and scales (.npz).")
    p.add_argument("src", help="artifact")
    p.add_argument("-o", "--output", required=True, help="output .safetensors (or .npz with --symbols)")
    p.add_argument("--symbols", action="store_true", help="write <name>.symbols (int8) and <name>.scales arrays to an .npz")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("inspect", help="per-tensor report of an artifact",
                       description="Per tensor: name, shape, bits, coder, bytes, order-0 entropy of its symbols, "
                                   "bits/param; totals.")
    p.add_argument("src", help="artifact")
    p.add_argument("--verify", action="store_true", help="check every checksum and decode every stream")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_inspect)
