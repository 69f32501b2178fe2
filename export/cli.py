"""`golfpack export | submit | check`: record folders for the challenge (golfpack.export)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from golfpack.errors import GolfpackError
from golfpack.evaluate.limits import EVAL_LIMITS as LIM
from golfpack.evaluate.limits import int_flag


def _add_run_options(p) -> None:
    p.add_argument("--eval", default="sliding", choices=("sliding", "doc-aware", "plain"),
                   help="the script's evaluation mode (default sliding)")
    p.add_argument("--seq-len", type=int_flag("--seq-len", 1, LIM["seq_len"]), default=None, metavar="L",
                   help="default VAL_SEQ_LEN of the script (1024; with --ttt: the TTT context)")
    p.add_argument("--stride", type=int_flag("--stride", 1, LIM["seq_len"]), default=None, metavar="S",
                   help="default EVAL_STRIDE (64 for sliding; with --ttt: the TTT chunk)")
    p.add_argument("--ttt", default=None, choices=("lora", "phased", "sgd", "q"),
                   help="score-first test-time training in the script (the runtime has lora)")
    p.add_argument("--ttt-config", default=None, metavar="TTT.json", help="TTTConfig overrides (evaluate/ttt_config.py)")
    p.add_argument("--train-script", default=None, metavar="FILE",
                   help="keep this training script as train_gpt.py and append the eval side (its bytes count)")
    p.add_argument("--no-native", dest="native", action="store_false",
                   help="leave the C rANS loop out of the script (about 800 bytes; it then decodes with numpy only)")
    p.add_argument("--force", action="store_true", help="replace the record files of a non-empty output folder")
    p.add_argument("--json", action="store_true", help="print submission.json's content")


def _train_script(args) -> bytes | None:
    if args.train_script is None:
        return None
    p = Path(args.train_script)
    if not p.is_file():
        raise GolfpackError(f"--train-script not found: {p}")
    return p.read_bytes()


def _report(args, sub: dict, out: Path) -> None:
    if args.json:
        print(json.dumps(sub))
        return
    line = (f"wrote {out}: train_gpt.py {sub['bytes_code']:,} + model.gp {sub['bytes_model']:,} = "
            f"{sub['bytes_total']:,} bytes")
    plan = (sub.get("golfpack") or {}).get("planner") or {}
    if plan.get("budget"):
        line += f" (budget {plan['budget']:,}; code bytes reserved {plan.get('code_bytes', 0):,})"
    if sub.get("val_bpb") is not None:
        line += f"; val_loss {sub['val_loss']:.8f} val_bpb {sub['val_bpb']:.8f}"
    print(line)


def cmd_export(args) -> int:
    from golfpack.export.record import plan_record, write_record

    src = Path(args.src)
    if not src.is_file():
        raise GolfpackError(f"artifact not found: {src}")
    data, script, flags, st = plan_record(src.read_bytes(), eval_mode=args.eval, ttt=args.ttt,
                                          ttt_config=args.ttt_config, seq_len=args.seq_len, stride=args.stride,
                                          train_script=_train_script(args), native=args.native)
    sub = write_record(args.output, data, script, flags, st, force=args.force)
    plan = sub["golfpack"]["planner"] or {}
    if plan.get("budget") and sub["bytes_total"] > plan["budget"] and not args.json:
        print(f"warning: {sub['bytes_total']:,} bytes exceed the {plan['budget']:,}-byte budget the artifact was "
              f"planned for (encode with --code-bytes auto{':lora' if args.ttt else ''}, or use golfpack submit)",
              file=sys.stderr)
    _report(args, sub, Path(args.output))
    return 0


def cmd_submit(args) -> int:
    from golfpack.checkpoint import read_checkpoint
    from golfpack.codec import spec
    from golfpack.codec.cli import _calibration, parse_bytes, planner_config_from_args, runtime_coders, coders_from_args
    from golfpack.codec.container import MANIFEST_LZMA, parse_artifact
    from golfpack.codec.planner import build_items, plan
    from golfpack.export import needs as _needs
    from golfpack.export.plan import reserve
    from golfpack.export.record import plan_record, update_submission, write_record
    from golfpack.export.run import run_record
    from golfpack.progress import staged

    if args.code_bytes is not None:
        raise GolfpackError("submit reserves the exact code bytes itself; drop --code-bytes")
    if (args.val is None) != (args.tokenizer is None):
        raise GolfpackError("--val and --tokenizer go together")
    out = Path(args.output)
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise GolfpackError(f"output folder {out} is not empty (pass --force to replace its record files)")
    budget = parse_bytes(args.budget, "--budget")
    train = _train_script(args)
    quiet = args.quiet or args.json
    say = (lambda m: None) if quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    ck = read_checkpoint(Path(args.src))
    cfg = planner_config_from_args(args, True, runtime_coders(coders_from_args(args)))
    cfg.manifest_coding = MANIFEST_LZMA
    opts = dict(eval_mode=args.eval, ttt=args.ttt, ttt_config=args.ttt_config, seq_len=args.seq_len,
                stride=args.stride, train_script=train, native=args.native)
    res0 = reserve(ck, cfg.coders, bool(cfg.lqer_ranks), **opts)
    say(f"code bytes reserved: {res0.code_bytes:,} (script for {', '.join(sorted(res0.flags))})")
    cal, _ = _calibration(args, ck, need=True)
    if args.method == "gptq" and cal is None:
        raise GolfpackError("--method gptq needs calibration: --calib SHARD or --calib self")
    rules = spec.parse_rules(args.bits)
    items = build_items(ck, cal, cfg, rules, staged("candidates", not quiet))
    got = plan(ck, budget, cal, cfg, rules, res0.code_bytes, items=items)
    flags = res0.flags
    # Second pass: the artifact's own needs may give a smaller script; plan again with its size,
    # and keep that plan only if it needs nothing more, so the reservation stays exact.
    art = parse_artifact(got.artifact)
    own = _needs.for_artifact(art, res0.settings.config or art.config, args.eval, args.ttt, args.native)
    res1 = reserve(ck, cfg.coders, bool(cfg.lqer_ranks), flags=own, **opts)
    reserved = res0.code_bytes
    if res1.code_bytes < res0.code_bytes:
        again = plan(ck, budget, cal, cfg, rules, res1.code_bytes, items=items)
        if _needs.for_artifact(parse_artifact(again.artifact), res0.settings.config or art.config, args.eval,
                               args.ttt, args.native) <= own:
            got, flags, reserved = again, own, res1.code_bytes
            say(f"code bytes of the artifact's own needs: {res1.code_bytes:,}; planned again")
    data, script, flags, st = plan_record(got.artifact, flags=flags, **opts)
    if len(data) != len(got.artifact) or len(script) != reserved:
        raise GolfpackError(f"the record ({len(script):,} + {len(data):,} bytes) is not the plan "
                            f"({reserved:,} + {len(got.artifact):,}); a golfpack bug")
    sub = write_record(out, data, script, flags, st, force=args.force,
                       extra={"budget": budget, "predicted_dloss": got.report.get("predicted_dloss")})
    if args.val is not None:
        say("scoring the record once (python train_gpt.py) ...")
        r = run_record(out, args.val, args.tokenizer, max_tokens=args.max_tokens,
                       env={"EVAL_DEVICE": args.device} if args.device else None)
        if r.val_bpb is None:
            err = (r.stderr.strip().splitlines() or ["no output"])[-1]
            raise GolfpackError(f"the exported script failed: {err}")
        sub = update_submission(out, val_loss=r.val_loss, val_bpb=r.val_bpb,
                                golfpack={**sub["golfpack"], "scored_tokens": args.max_tokens or "all"})
    _report(args, sub, out)
    return 0


def cmd_check(args) -> int:
    from golfpack.export.check import check_record, format_rows

    rows = check_record(args.dir, val=args.val, tokenizer=args.tokenizer, train=args.train or (), cap=args.cap,
                        prefix=args.prefix)
    if args.json:
        print(json.dumps([{"check": r.name, "status": r.status, "detail": r.detail} for r in rows]))
    else:
        print(format_rows(rows))
    return 1 if any(r.ok is False for r in rows) else 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    from golfpack.codec.cli import add_coder_arguments, add_planner_arguments

    p = sub.add_parser("export", help="artifact -> record folder (train_gpt.py that runs without golfpack)",
                       description="Write a record folder in the challenge's layout: a self-extracting train_gpt.py "
                                   "that decodes the artifact and scores it with torch, numpy and sentencepiece "
                                   "only, the artifact, submission.json (bytes_total = code + model) and a README.")
    p.add_argument("src", help="golfpack artifact")
    p.add_argument("-o", "--output", required=True, help="record folder to write")
    _add_run_options(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("submit", help="checkpoint -> planned artifact + record folder (+ its score)",
                       description="Plan and encode SRC so that the exported train_gpt.py + artifact fit --budget "
                                   "exactly, write the record folder, and with --val/--tokenizer run the script "
                                   "once to fill val_loss / val_bpb in submission.json.")
    p.add_argument("src", help="source checkpoint")
    p.add_argument("-o", "--output", required=True, help="record folder to write")
    p.add_argument("--budget", required=True, metavar="BYTES", help="code + model bytes (e.g. 16000000)")
    p.add_argument("--val", default=None, metavar="SHARD", help="validation shard to score the record on")
    p.add_argument("--tokenizer", default=None, metavar="SP.model", help="SentencePiece model of the shard")
    p.add_argument("--max-tokens", type=int_flag("--max-tokens", 1, LIM["max_tokens"]), default=None, metavar="N",
                   help="score only the first N targets")
    p.add_argument("--device", default=None,
                   help="where calibration, GPTQ, tuning and the record's scoring run (cpu or cuda; EVAL_DEVICE of "
                        "that run)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    _add_run_options(p)
    add_planner_arguments(p)
    add_coder_arguments(p)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("check", help="audit a record folder: bytes, score-before-update, validation leakage",
                       description="One table, exit status 1 on any FAIL: total bytes <= the cap recomputed from the "
                                   "files; score-before-update (rerun on a prefix with the tokens after t changed); "
                                   "no 64-token window of a validation document in the training shards.")
    p.add_argument("dir", help="record folder")
    p.add_argument("--train", nargs="+", default=None, metavar="SHARD", help="training shards to audit for leakage")
    p.add_argument("--val", default=None, metavar="SHARD", help="validation shard")
    p.add_argument("--tokenizer", default=None, metavar="SP.model", help="needed for the score-before-update rerun")
    p.add_argument("--cap", type=int_flag("--cap", 1, LIM["cap"]), default=16_000_000,
                   help="byte cap (default 16,000,000)")
    p.add_argument("--prefix", type=int_flag("--prefix", 1, LIM["max_tokens"]), default=4096, metavar="N",
                   help="targets of the rerun (default 4096)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=cmd_check)
