"""The `golfpack` command: one entry point, one subcommand per job.

Each stage of the pipeline owns its subcommands in its own `cli.py` and
registers them through `add_subcommands(subparsers)`; this file only wires them
together and turns every user error into one line on stderr and a non-zero exit.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from golfpack.errors import GolfpackError

# Modules that contribute subcommands, in the order of the data flow.
_COMMAND_MODULES = (
    "golfpack.codec.cli",  # encode, decode, inspect
    "golfpack.codec.rd",  # rd (rate-distortion sweep)
    "golfpack.data.cli",  # data tokenize
    "golfpack.train.cli",  # train
    "golfpack.evaluate.cli",  # eval
    "golfpack.bench.cli",  # bench entropy | decode | eval | peers
    "golfpack.export.cli",  # export | submit | check (record folders)
    "golfpack.demo",  # demo (the README's main command)
    "golfpack.recipes.cli",  # recipe list | show | run (the seed systems end to end)
)


class _Parser(argparse.ArgumentParser):
    """An argument error is one line naming the flag, like every other golfpack error (exit 2).

    argparse would print the whole usage first; --help still shows it. Subcommand parsers are made
    with this class too (add_subparsers uses the parent's class)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="golfpack",
        description="Artifact codec and evaluator for Parameter Golf language models.",
    )
    from golfpack import __version__

    parser.add_argument("--version", action="version", version=f"golfpack {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:  # a stage not built yet must not break the others
            if e.name == name:
                continue
            raise
        mod.add_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except GolfpackError as e:
        print(f"golfpack {args.command}: error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"golfpack {args.command}: error: file not found: {e.filename or e}", file=sys.stderr)
        return 2
    except IsADirectoryError as e:
        print(f"golfpack {args.command}: error: is a directory: {e.filename or e}", file=sys.stderr)
        return 2
    except PermissionError as e:
        print(f"golfpack {args.command}: error: permission denied: {e.filename or e}", file=sys.stderr)
        return 2
    except OSError as e:  # any other OS failure (a full disk, a name too long, a path under a file): one line
        from golfpack.output import oserror_line

        print(f"golfpack {args.command}: error: {oserror_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"golfpack {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
