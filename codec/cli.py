"""`golfpack encode | decode | inspect`: the codec's subcommands."""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from golfpack.errors import GolfpackError


def _check_output(src: Path, out: Path) -> None:
    """Before any work: the output is not the input, not a folder, and its folder exists (golfpack.output)."""
    from golfpack.output import check_output_path

    check_output_path(out, [src])


def h0_bytes(symbols: np.ndarray) -> float:
    """Order-0 entropy of a symbol array, in bytes."""
    if symbols.size == 0:
        return 0.0
    counts = np.bincount(symbols.reshape(-1).astype(np.int16) + 128, minlength=256)
    p = counts[counts > 0] / symbols.size
    return float(-(p * np.log2(p)).sum() * symbols.size / 8) + 0.0  # + 0.0: no -0.0 for one-symbol tensors


# ----------------------------------------------------------------------------- encode


def parse_bytes(text: str, what: str) -> int:
    """A byte count from the command line: 16000000, 16_000_000, 1.6e7, +5 (integral, >= 0).

    The one parser of byte counts (--budget, --budgets, --code-bytes, the demo's budgets): Python's
    number syntax (12_000 yes; 12__000, _12, 0x10 no), read exactly as a decimal, so 1.6e7 is
    16000000 and 1.2e0 is not a whole number of bytes. Errors start with `what`."""
    from decimal import Decimal, InvalidOperation

    s = text.strip() if isinstance(text, str) else None
    d = None
    if s:
        try:
            float(s)  # the syntax check: float() takes exactly Python's literal forms (and nan/inf)
            d = Decimal(s)
        except (InvalidOperation, ValueError):
            d = None
    if d is None or not d.is_finite():
        raise GolfpackError(f"{what}: {text!r} is not a number of bytes")
    if d.adjusted() > 15:
        raise GolfpackError(f"{what}: {text!r} is far above any byte budget")
    if d < 0 or d != d.to_integral_value():
        raise GolfpackError(f"{what}: {text!r} is not a whole, non-negative number of bytes")
    return int(d)


def _calibration(args, ck, need: bool):
    """(calibration statistics, the float reference model they came from), or (None, None).

    The model is returned so callers (the measured loss check, rd's reference score) reuse it
    instead of dequantizing and building it again; calibration leaves its weights unchanged."""
    from golfpack.codec import calib as C

    which = args.calib if args.calib is not None else ("self" if need else "none")
    if which == "none":
        return None, None
    # Sampling has no KV cache (quadratic in length), so self-calibration defaults smaller.
    n = args.calib_seqs if args.calib_seqs is not None else (16 if which == "self" else 32)
    T = args.calib_len if args.calib_len is not None else (128 if which == "self" else 512)
    if n < 1 or T < 1:
        raise GolfpackError(f"--calib-seqs and --calib-len must be >= 1 (got {n}, {T})")
    if which != "self":
        from golfpack.data.shards import resolve_shards

        resolve_shards(which)  # a clear error for a missing shard, before any work
    from golfpack.model.load import from_state_dict

    try:
        model = from_state_dict(ck.state_dict(), ck.config)
    except GolfpackError as e:
        raise GolfpackError(f"calibration needs a golfpack GPT for this checkpoint ({e}); "
                            "pass --calib none to plan without it") from None
    if not args.quiet and not getattr(args, "json", False):
        src = "sampled from the model itself" if which == "self" else f"from {which}"
        print(f"calibrating on {n} x {T} tokens {src} ...", file=sys.stderr, flush=True)
    shard = None if which == "self" else which
    return C.calibrate(model, shard=shard, n_seqs=n, seq_len=T, seed=args.seed,
                       device=check_device(getattr(args, "device", None))), model


def cmd_encode(args) -> int:
    from golfpack.checkpoint import read_checkpoint
    from golfpack.codec.container import parse_artifact, write_artifact
    from golfpack.codec.encode import encode_lossless

    src, out = Path(args.src), Path(args.output)
    _check_output(src, out)
    lossy = args.budget is not None or args.bits is not None
    if args.lossless and lossy:
        raise GolfpackError("--lossless cannot be combined with --budget or --bits")
    if not args.lossless and not lossy:
        raise GolfpackError("choose an encoding mode: --lossless, --budget BYTES (planner) or --bits SPEC (fixed recipe)")
    coders = coders_from_args(args)
    t0 = time.perf_counter()
    ck = read_checkpoint(src)
    params = ck.num_params()
    src_bytes = src.stat().st_size if src.is_file() else None
    if args.lossless:
        data = encode_lossless(ck, coders=coders, jobs=args.jobs, fast_decode=args.fast_decode)
        plan_report = None
        code_bytes = 0
    else:
        data, plan_report, code_bytes = _encode_lossy(args, ck, coders)
    art = parse_artifact(data)  # self-check: what we write must parse
    write_artifact(out, data, inputs=[src])
    secs = time.perf_counter() - t0
    use = Counter(s.coder for t in art.tensors.values() for s in t.streams.values())
    report = {
        "artifact": str(out),
        "artifact_bytes": len(data),
        "code_bytes": code_bytes,
        "total_bytes": len(data) + code_bytes,
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
    if plan_report is not None:
        for k in ("budget", "within_budget", "within_tolerance", "fill", "budget_exceeds_need", "method", "predicted_dloss",
                  "predicted_dloss_first_order", "measured_dloss", "calibration", "iterations", "stage_seconds",
                  "tune", "propagate"):
            if k in plan_report:
                report[k] = plan_report[k]
        report["plan"] = plan_report["tensors"]
    if args.json:
        print(json.dumps(report))
        return 0
    ratio = f" ({len(data) / src_bytes:.4f} of the source)" if src_bytes else ""
    print(f"wrote {out}: {len(data):,} bytes{ratio}, {len(art.tensors)} tensors, {params:,} params, "
          f"{report['bits_per_param']:.3f} bits/param, streams by coder {dict(use)}, {secs:.2f} s")
    if plan_report is not None:
        _print_plan(report, plan_report)
    return 0


def apply_lqer_args(cfg, args) -> None:
    """--lqer-ranks / --lqer-bits into a PlannerConfig."""
    try:
        ranks = tuple(int(r) for r in str(args.lqer_ranks).split(",") if r.strip())
    except ValueError:
        raise GolfpackError(f"--lqer-ranks: {args.lqer_ranks!r} is not a comma list of integers") from None
    if any(r < 1 for r in ranks):
        raise GolfpackError(f"--lqer-ranks must be positive, got {args.lqer_ranks!r}")
    if not 2 <= args.lqer_bits <= 8:
        raise GolfpackError(f"--lqer-bits must be 2..8, got {args.lqer_bits}")
    cfg.lqer_ranks, cfg.lqer_bits = ranks, args.lqer_bits


AUTO_CODE_BYTES = {"auto": None, "auto:lora": "lora"}  # --code-bytes value -> the exported script's TTT


def auto_code_bytes(args) -> bool:
    v = getattr(args, "code_bytes", None)
    return v is not None and str(v).strip().lower() in AUTO_CODE_BYTES


def runtime_coders(coders) -> tuple[str, ...]:
    """The coders an exported record's script decodes: what --code-bytes auto plans with."""
    from golfpack.codec.coders import CODERS
    from golfpack.export.needs import RUNTIME_CODERS

    if tuple(coders) == CODERS:  # the default: keep the ones the script decodes
        return RUNTIME_CODERS
    bad = [c for c in coders if c not in RUNTIME_CODERS]
    if bad:
        raise GolfpackError(f"--code-bytes auto plans for the exported script, which decodes {', '.join(RUNTIME_CODERS)}; "
                            f"--coders has {', '.join(bad)}")
    return tuple(coders)


def code_bytes_from_args(args, ck=None, cfg=None) -> int:
    """--code-bytes N|auto|auto:lora (absent: 0). auto = the size of the script `golfpack export` writes
    for this plan (golfpack.export.plan.reserve: sliding eval; auto:lora with LoRA TTT)."""
    if args.code_bytes is None:
        return 0
    if auto_code_bytes(args):
        if ck is None or cfg is None:
            raise GolfpackError("--code-bytes auto needs the checkpoint and the planner's settings")
        from golfpack.export.plan import reserve

        ttt = AUTO_CODE_BYTES[str(args.code_bytes).strip().lower()]
        return reserve(ck, cfg.coders, bool(cfg.lqer_ranks), ttt=ttt).code_bytes
    return parse_bytes(args.code_bytes, "--code-bytes")


def parse_rate_mults(text: str) -> tuple[float, ...]:
    """--rate-mults: comma-separated positive finite numbers."""
    out = []
    for part in str(text).split(","):
        try:
            v = float(part)
        except ValueError:
            raise GolfpackError(f"--rate-mults: {part.strip()!r} is not a number") from None
        if not 0 < v < float("inf"):
            raise GolfpackError(f"--rate-mults: each value must be a positive finite number, got {part.strip()!r}")
        out.append(v)
    return tuple(out)


def add_coder_arguments(p: argparse.ArgumentParser) -> None:
    """--coders and --jobs, as encode and recode take them (read back by coders_from_args)."""
    p.add_argument("--coders", default=None, help="comma list of allowed coders (default: raw,rans,rans_rc,zstd,brotli)")
    p.add_argument("--jobs", type=int, default=None, help="parallel encoder threads (default: cores, max 8)")
    p.add_argument("--fast-decode", action="store_true",
                   help="store int symbol streams with the fast-decode coder rans_x32 (csrc/RANS.md section 7) "
                        "whenever it is within 0.5%% of the smallest allowed coder: ~2-3x faster symbol decode "
                        "for ~0.1%% more bytes; the exported script re-codes such streams with rans")


def coders_from_args(args) -> tuple[str, ...]:
    from golfpack.codec.coders import CODERS

    return tuple(c.strip() for c in args.coders.split(",")) if args.coders else CODERS


def planner_config_from_args(args, budgeted: bool, coders=None):
    """The PlannerConfig that encode and rd build from their shared planner options. Without a
    budget (a fixed recipe) there is no search: the base clip only, no LQER, no pruning."""
    from golfpack.codec.coders import CODERS
    from golfpack.codec.planner import PlannerConfig

    if not 0 < args.tolerance < 1:
        raise GolfpackError(f"--tolerance must be a fraction in (0, 1), got {args.tolerance}")
    if args.min_numel < 1:
        raise GolfpackError(f"--min-numel must be >= 1, got {args.min_numel}")
    cfg = PlannerConfig(method=args.method, coders=coders or CODERS, jobs=getattr(args, "jobs", None),
                        tolerance=args.tolerance, min_numel=args.min_numel,
                        fast_decode=bool(getattr(args, "fast_decode", False)))
    if args.max_bits is not None or args.min_bits is not None:
        lo, hi = args.min_bits or 2, args.max_bits or 8
        if not 2 <= lo <= hi <= 8:
            raise GolfpackError(f"--min-bits/--max-bits must satisfy 2 <= min <= max <= 8 (got {lo}, {hi})")
        cfg.bits = tuple(range(lo, hi + 1))
    apply_lqer_args(cfg, args)
    if args.no_lqer or not budgeted:
        cfg.lqer_ranks = ()
    if args.no_prune or not budgeted:
        cfg.prune_rel = ()
    if args.rate_mults is not None and budgeted:
        cfg.rate_mults = parse_rate_mults(args.rate_mults)
    if not budgeted:
        cfg.clip_mults = (1.0,)
    if getattr(args, "byte_model", None) is not None:
        cfg.byte_model = args.byte_model
    if getattr(args, "tune_epochs", None) is not None:
        if not args.tune_epochs >= 0:
            raise GolfpackError(f"--tune-epochs must be >= 0, got {args.tune_epochs}")
        cfg.tune_epochs = float(args.tune_epochs)
    if getattr(args, "tune_lr", None) is not None:
        if not args.tune_lr > 0:
            raise GolfpackError(f"--tune-lr must be > 0, got {args.tune_lr}")
        cfg.tune_lr = float(args.tune_lr)
    if getattr(args, "tune_round_lr", None) is not None:
        if not args.tune_round_lr > 0 or args.tune_round_lr > 1:
            raise GolfpackError(f"--tune-round-lr must be in (0, 1], got {args.tune_round_lr}")
        if cfg.tune_epochs <= 0:
            raise GolfpackError("--tune-round-lr needs --tune-epochs > 0")
        cfg.tune_round_lr = float(args.tune_round_lr)
    if getattr(args, "propagate", None) is not None:
        if not 0 < args.propagate <= 1:
            raise GolfpackError(f"--propagate must be in (0, 1], got {args.propagate}")
        cfg.propagate = float(args.propagate)
    cfg.device = check_device(getattr(args, "device", None))
    if args.clip:
        from golfpack.codec.quant import ClipSpec

        cfg.clip = str(ClipSpec.parse(args.clip))
    if auto_code_bytes(args):  # plan what an exported record ships: its script's coders, an LZMA manifest
        from golfpack.codec.container import MANIFEST_LZMA

        if cfg.fast_decode:
            raise GolfpackError("--fast-decode writes rans_x32 streams, which the exported script does not decode; "
                                "--code-bytes auto plans for that script: drop one of the two")
        cfg.coders = runtime_coders(cfg.coders)
        cfg.manifest_coding = MANIFEST_LZMA
    return cfg


def check_device(dev: str | None) -> str | None:
    """None (CPU) or a torch device string that exists on this machine, checked before any work."""
    if dev is None or dev == "cpu":
        return None
    import torch

    try:
        d = torch.device(dev)
    except (RuntimeError, ValueError):
        raise GolfpackError(f"--device {dev!r} is not a torch device (cpu, cuda, cuda:N)") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise GolfpackError(f"--device {dev}: no CUDA device is available on this machine")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise GolfpackError(f"--device {dev}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif d.type != "cpu":
        raise GolfpackError(f"--device {dev}: only cpu and cuda are supported")
    return str(d)


def add_planner_arguments(p) -> None:
    """Options shared by `encode` (lossy modes) and `rd`."""
    p.add_argument("--code-bytes", default=None, metavar="N|auto|auto:lora",
                   help="bytes of code counted against the budget (default 0); auto = the size of the train_gpt.py "
                        "that `golfpack export` writes for this plan (sliding eval; auto:lora with LoRA TTT); it "
                        "plans with the coders that script decodes (raw, rans, rans_rc) and an LZMA manifest")
    p.add_argument("--bits", default=None, metavar="SPEC",
                   help="per-tensor overrides, e.g. '6', 'mlp=5,attn=6,embed=8', 'attn=6:sdclip:13', 'embed=keep'; "
                        "encode without --budget: a fixed recipe (golfpack.codec.spec)")
    p.add_argument("--method", choices=("gptq", "rtn"), default="gptq", help="quantizer (default gptq)")
    p.add_argument("--clip", default=None, metavar="CLIP",
                   help="base clip of every candidate: mse (default, Hessian-weighted search), absmax, pct:P, sdclip:K")
    p.add_argument("--calib", default=None, metavar="SHARD|self|none",
                   help="calibration tokens: a training shard (never the validation set), 'self' (sampled from the "
                        "model), or 'none' (plain MSE). Default: self when planning or with gptq, else none")
    p.add_argument("--calib-seqs", type=int, default=None, metavar="N",
                   help="calibration sequences (default 32 from a shard, 16 sampled with self)")
    p.add_argument("--calib-len", type=int, default=None, metavar="T",
                   help="calibration sequence length (default 512 from a shard, 128 sampled with self)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration sampling (default 0)")
    p.add_argument("--min-bits", type=int, default=None, help="smallest bit width the planner may choose (default 2)")
    p.add_argument("--max-bits", type=int, default=None, help="largest bit width the planner may choose (default 8)")
    p.add_argument("--min-numel", type=int, default=4096, help="tensors smaller than this stay float (default 4096)")
    p.add_argument("--no-lqer", action="store_true", help="no LQER low-rank candidates")
    p.add_argument("--lqer-ranks", default="4,16", metavar="LIST", help="LQER ranks the planner tries (default 4,16)")
    p.add_argument("--lqer-bits", type=int, default=6, help="bits of the quantized LQER factors (default 6)")
    p.add_argument("--no-prune", action="store_true", help="no pruning candidates")
    p.add_argument("--rate-mults", default=None, metavar="LIST",
                   help="add rate-aware rounding candidates (golfpack.codec.rate): each hull candidate re-rounded at "
                        "its hull slope times each of these, e.g. 0.5,1,2 (default: none)")
    p.add_argument("--byte-model", choices=("order0", "rans_rc"), default=None,
                   help="how the planner prices a candidate's bytes: order0 (one rANS stream) or rans_rc (the "
                        "writer's cell model, codec.byte_model; slower) (default order0)")
    p.add_argument("--tolerance", type=float, default=0.005,
                   help="land within this fraction below the budget (default 0.005)")
    p.add_argument("--tune-epochs", type=float, default=None, metavar="E",
                   help="distill the plan's scales and float tensors toward the float model for E epochs over the "
                        "calibration tokens (golfpack.codec.tune; default 0: off; kept only if held-out KL drops)")
    p.add_argument("--tune-lr", type=float, default=None, metavar="LR", help="Adam learning rate of tuning (default 1e-3)")
    p.add_argument("--tune-round-lr", type=float, default=None, metavar="LR",
                   help="with --tune-epochs: learned rounding too, symbols may move one step toward zero; LR is the "
                        "Adam learning rate of their offsets (e.g. 0.03; default off)")
    p.add_argument("--propagate", type=float, default=None, metavar="ALPHA",
                   help="re-quantize the chosen plan, layer by layer, against the inputs the quantized model "
                        "itself feeds each linear (golfpack.codec.propagate); ALPHA in (0, 1] is how far the "
                        "target moves toward the least-squares correction (default: off)")
    p.add_argument("--tune-seqs", type=int, default=None, metavar="N",
                   help="tune on N sequences of --calib-len tokens drawn from the --calib shard with seed + 1 (an "
                        "eighth held out for the accept check); default: the calibration sequences themselves")
    if "--device" not in p._option_string_actions:  # a command may define its own (submit: one device for all)
        p.add_argument("--device", default=None, metavar="DEV",
                       help="where calibration, GPTQ and tuning run, e.g. cuda or cuda:1 (default cpu)")


def _check_tune_seqs(args, cfg) -> None:
    """--tune-seqs' conditions, checked before calibration starts."""
    n = getattr(args, "tune_seqs", None)
    if n is None:
        return
    if n < 2 or n > 1 << 20:
        raise GolfpackError(f"--tune-seqs must be in [2, 2^20] (got {n})")
    if cfg.tune_epochs <= 0:
        raise GolfpackError("--tune-seqs needs --tune-epochs > 0")
    if args.calib in (None, "self", "none"):
        raise GolfpackError("--tune-seqs draws from a training shard: pass --calib SHARD")


def _tune_sequences(args, cfg, cal):
    """The sequences --tune-seqs asks for (None: tune on the calibration sequences), drawn from the
    calibration shard with seed + 1: mostly other windows than the calibration's (same training
    text), so the fit and its held-out check see more tokens than the planner's statistics did."""
    n = getattr(args, "tune_seqs", None)
    if n is None or cal is None:
        return None
    from golfpack.codec.calib import sequences_from_shard

    which = args.calib
    T = int(cal.seqs.shape[1]) - 1
    return sequences_from_shard(which, n, T, seed=args.seed + 1)


def _encode_lossy(args, ck, coders):
    from golfpack.codec import spec
    from golfpack.codec.calib import measure_with
    from golfpack.codec.container import parse_artifact
    from golfpack.codec.planner import plan
    from golfpack.progress import staged

    budget = parse_bytes(args.budget, "--budget") if args.budget is not None else None
    if budget is not None and budget < 1:
        raise GolfpackError("--budget must be at least 1 byte")
    rules = spec.parse_rules(args.bits)
    cfg = planner_config_from_args(args, budget is not None, coders)
    code_bytes = code_bytes_from_args(args, ck, cfg)
    _check_tune_seqs(args, cfg)
    cal, model = _calibration(args, ck, need=budget is not None or args.method == "gptq")
    if args.method == "gptq" and cal is None:
        raise GolfpackError("--method gptq needs calibration: --calib SHARD or --calib self")
    log = None if args.quiet or args.json else (lambda m: print("  " + m, file=sys.stderr, flush=True))
    res = plan(ck, budget, cal, cfg, rules, code_bytes, progress=staged("candidates", not args.quiet and not args.json),
               log=log, teacher=model, tune_seqs=_tune_sequences(args, cfg, cal))
    if cal is not None:
        import time

        stages = res.report.setdefault("stage_seconds", {})
        stages["calibration"] = round(cal.seconds, 2)
        t0 = time.perf_counter()
        # the check the planner's prediction is held to: measured loss change on the calibration tokens
        sd = {k: v.float() for k, v in parse_artifact(res.artifact).state_dict().items()}
        res.report["measured_dloss"] = measure_with(model, cal.seqs, sd) - cal.base_loss
        stages["check"] = round(time.perf_counter() - t0, 2)
    return res.artifact, res.report, code_bytes


def _print_plan(report: dict, plan_report: dict) -> None:
    rows = plan_report["tensors"]
    w = max([len(r["name"]) for r in rows] + [4])
    print(f"{'name':<{w}}  {'choice':<36} {'bytes':>10} {'pred dloss':>11}")
    for r in rows:
        print(f"{r['name']:<{w}}  {r['label']:<36} {r['bytes']:>10,} {r['dloss']:>11.3e}")
    line = f"total {report['total_bytes']:,} bytes (artifact {report['artifact_bytes']:,} + code {report['code_bytes']:,})"
    if report.get("budget") is not None:
        line += f" of the {report['budget']:,}-byte budget ({report['fill']:.2%})"
        if report.get("budget_exceeds_need"):
            line += "; every tensor already has its most accurate candidate"
        elif report.get("within_tolerance") is False:
            line += "; the candidates' byte steps are too coarse to land closer"
    print(line)
    pred = f"predicted loss increase {report['predicted_dloss']:.3e} nats/token"
    if report.get("measured_dloss") is not None:
        pred += (f" (first-order term {report['predicted_dloss_first_order']:.3e}); measured on the calibration tokens "
                 f"{report['measured_dloss']:.3e}")
    print(pred)


# ----------------------------------------------------------------------------- decode


def cmd_recode(args) -> int:
    from golfpack.codec.container import parse_artifact, read_artifact, write_artifact
    from golfpack.codec.recode import recode
    import torch

    src, out = Path(args.src), Path(args.output)
    _check_output(src, out)
    coders = coders_from_args(args)
    t0 = time.perf_counter()
    art = read_artifact(src)
    data = recode(art, coders, args.jobs, fast_decode=args.fast_decode)
    new = parse_artifact(data)
    for name, t in art.tensors.items():  # self-check: the same tensors, bit for bit
        a, b = t.dequantize(), new.tensors[name].dequantize()
        if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a.reshape(-1).view(torch.uint8),
                                                                       b.reshape(-1).view(torch.uint8)):
            raise GolfpackError(f"recode changed tensor {name!r} (a bug; nothing was written)")
    write_artifact(out, data, inputs=[src])
    use = Counter(s.coder for t in new.tensors.values() for s in t.streams.values())
    report = {"artifact": str(out), "source": str(src), "source_bytes": art.file_bytes, "artifact_bytes": len(data),
              "change": len(data) / art.file_bytes - 1, "coders": dict(sorted(use.items())),
              "seconds": round(time.perf_counter() - t0, 2)}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"wrote {out}: {len(data):,} bytes ({100 * report['change']:+.2f}% vs {art.file_bytes:,}); "
              f"streams by coder {report['coders']}; {report['seconds']} s")
    return 0


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
        from golfpack.output import atomic_output

        with atomic_output(out, [src]) as f:
            np.savez(f, **arrays)
        print(f"wrote {out}: symbols and scales of {len(arrays) // 2} quantized tensors", file=sys.stderr)
        return 0
    sd = art.state_dict()
    meta = {"format": "pt", "golfpack.source": json.dumps(art.source, sort_keys=True)}
    if art.config is not None:
        meta["golfpack.config"] = json.dumps(art.config, sort_keys=True)
    size = safetensors_io.save_file(sd, out, metadata=meta, inputs=[src])
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
        meta = t.meta if isinstance(t.meta, dict) else {}
        choice = meta.get("choice") if isinstance(meta.get("choice"), dict) else None
        rows.append({
            "name": name,
            "shape": list(t.shape),
            "dtype": t.dtype,
            "scheme": t.kind,
            "bits": t.bits,
            "group": t.group if t.is_quantized else None,
            "lowrank_rank": t.rank if t.is_quantized else 0,
            "coder": main.coder,
            "coders": {r: s.coder for r, s in t.streams.items()},
            "bytes": t.nbytes,
            "h0_bytes": None if h0 is None else round(h0, 1),
            "bits_per_param": 8 * t.nbytes / t.numel if t.numel else None,
            "choice": choice,  # the planner's choice (method, clip, prune, LQER), when it made one
            "pred_dloss": meta.get("dloss") if isinstance(meta.get("dloss"), (int, float)) else None,
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


def _choice_label(choice: dict | None) -> str:
    """A planner choice (tensor meta) as text; 'keep' where the tensor was stored exactly."""
    if not choice:
        return "keep"
    from golfpack.codec.candidates import Choice

    try:
        return Choice(**choice).label()
    except TypeError:  # meta is free-form: a foreign writer's keys are shown as they are
        return json.dumps(choice, sort_keys=True)[:32]


def cmd_inspect(args) -> int:
    rep = inspect_artifact(Path(args.src), verify=args.verify)
    if args.json:
        print(json.dumps(rep))
        return 0
    w = max([len(r["name"]) for r in rep["tensors"]] + [4])
    planned = any(r["choice"] for r in rep["tensors"])
    extra = f"  {'planner choice':<32} {'pred dloss':>10}" if planned else ""
    print(f"{'name':<{w}}  {'shape':>12}  {'scheme':<15} {'bits':>4}  {'coder':<7} {'bytes':>10} {'H0 bytes':>11} "
          f"{'bits/param':>10}{extra}")
    for r in rep["tensors"]:
        shape = "x".join(map(str, r["shape"])) or "scalar"
        h0 = f"{r['h0_bytes']:,.0f}" if r["h0_bytes"] is not None else "-"
        bpp = f"{r['bits_per_param']:.3f}" if r["bits_per_param"] is not None else "-"
        line = f"{r['name']:<{w}}  {shape:>12}  {r['scheme']:<15} {r['bits']:>4}  {r['coder']:<7} {r['bytes']:>10,} {h0:>11} {bpp:>10}"
        if planned:
            dl = f"{r['pred_dloss']:.2e}" if r["pred_dloss"] is not None else "-"
            line += f"  {_choice_label(r['choice']):<32} {dl:>10}"
        print(line)
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
    p.add_argument("--budget", default=None, metavar="BYTES",
                   help="lossy: plan bits / clip / LQER / pruning per tensor so that artifact + code bytes <= BYTES "
                        "(e.g. 16000000 or 16e6) and within --tolerance of it")
    add_planner_arguments(p)
    add_coder_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (artifact_bytes, code_bytes, total_bytes, bits_per_param, plan, ...)")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="golfpack artifact -> safetensors (or symbols .npz)",
                       description="Decode an artifact to the dequantized float state dict (.safetensors, names as in "
                                   "the source, model config in the metadata), or with --symbols to each quantized "
                                   "tensor's integer symbols and scales (.npz).")
    p.add_argument("src", help="artifact")
    p.add_argument("-o", "--output", required=True, help="output .safetensors (or .npz with --symbols)")
    p.add_argument("--symbols", action="store_true", help="write <name>.symbols (int8) and <name>.scales arrays to an .npz")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("recode", help="re-entropy-code an artifact (same tensors, best allowed coders)",
                       description="Decode every stream of an artifact and code it again with the smallest of the "
                                   "allowed coders. The tensors stay bit-identical (checked before writing). Use it to "
                                   "give an older artifact the newest coders, or --coders raw,rans for the fastest decode.")
    p.add_argument("src", help="artifact")
    p.add_argument("-o", "--output", required=True, help="artifact path to write")
    add_coder_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_recode)

    p = sub.add_parser("inspect", help="per-tensor report of an artifact",
                       description="Per tensor: name, shape, bits, coder, bytes, order-0 entropy of its symbols, "
                                   "bits/param; totals.")
    p.add_argument("src", help="artifact")
    p.add_argument("--verify", action="store_true", help="check every checksum and decode every stream")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_inspect)
