"""`golfpack recipe list | show NAME | run NAME`: the seed systems as ready-to-run recipes."""
from __future__ import annotations

import argparse
import json
import sys

from golfpack.errors import GolfpackError


def add_subcommands(sub) -> None:
    from golfpack.recipes.runner import __doc__ as run_doc

    p = sub.add_parser("recipe", help="the five seed systems (PR 596, 1683, 2163, 1123, 595) end to end",
                       description="Seed recipes: each competitor system of ../shared/seeds in golfpack's "
                                   "config vocabulary (model, train, codec, eval/TTT).")
    rs = p.add_subparsers(dest="recipe_command", metavar="list|show|run")
    rs.required = True
    q = rs.add_parser("list", help="recipe names with their PR numbers")
    q.set_defaults(func=_cmd_list)
    q = rs.add_parser("show", help="one recipe as JSON (every setting and every stated difference)")
    q.add_argument("name")
    q.add_argument("--scale", default="full", help="tiny or full (default full)")
    q.set_defaults(func=_cmd_show)
    q = rs.add_parser("run", help="train, encode (seed recipe and planner at equal bytes), evaluate, table",
                      description=run_doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("name")
    q.add_argument("--scale", default="tiny", help="tiny (default: a few hundred k params, seconds) or full")
    q.add_argument("--train", nargs="+", default=None, metavar="SHARD", help="training shard(s)")
    q.add_argument("--val", default=None, metavar="SHARD", help="validation shard")
    q.add_argument("--tokenizer", default=None, metavar="SP", help="SentencePiece model; the vocab follows it")
    q.add_argument("--minutes", type=float, default=None, help="training wallclock budget (overrides the steps)")
    q.add_argument("--steps", type=int, default=None, help="training steps (0: the freshly initialised model)")
    q.add_argument("--checkpoint", default=None, metavar="SRC", help="skip training: encode this checkpoint")
    q.add_argument("--out", default="golfpack-recipe", help="output folder (default ./golfpack-recipe)")
    q.add_argument("--eval-tokens", type=int, default=None, help="val targets scored (tiny 4096, full 65536)")
    q.add_argument("--planner", default="default", help="planner candidate set: default or fast (the demo's)")
    q.add_argument("--device", default="cpu", help="cpu or cuda (training, calibration, GPTQ, eval)")
    q.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1 at tiny scale)")
    q.add_argument("--quiet", action="store_true", help="no progress on stderr")
    q.add_argument("--json", action="store_true", help="print results.json instead of the table")
    q.set_defaults(func=_cmd_run)


def _cmd_list(args) -> int:
    from golfpack.recipes import all_recipes

    for r in all_recipes():
        print(f"{r.name:<8} PR {r.pr:<5} {r.title}")
    return 0


def _cmd_show(args) -> int:
    from golfpack import recipes

    r = recipes.get(args.name).at_scale(args.scale)
    print(json.dumps(r.to_dict(), indent=1))
    return 0


def _cmd_run(args) -> int:
    from golfpack.recipes.runner import RunOptions, format_table, run_recipe

    if args.device not in ("cpu", "cuda") and not str(args.device).startswith("cuda:"):
        raise GolfpackError(f"--device must be cpu or cuda, got {args.device!r}")
    o = RunOptions(scale=args.scale, train=args.train, val=args.val, tokenizer=args.tokenizer,
                   minutes=args.minutes, steps=args.steps, checkpoint=args.checkpoint, out=args.out,
                   eval_tokens=args.eval_tokens, planner=args.planner, device=args.device,
                   threads=args.threads, quiet=args.quiet)
    res = run_recipe(args.name, o)
    import os

    if int(os.environ.get("RANK", "0") or 0) == 0:
        print(json.dumps(res) if args.json else format_table(res))
    sys.stdout.flush()
    return 0
