"""Run a record's script the way the challenge does: a fresh process, data through the environment.

`run_record` links the validation shard into a temporary DATA_PATH as `fineweb_val_000000.bin`,
runs `python train_gpt.py` from an empty folder and parses its last line. With `hide_golfpack`,
an import hook makes `import golfpack` fail in that process, so a script that leaned on an
installed golfpack would fail there as it would on the challenge's machines.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from golfpack.errors import GolfpackError

LAST_LINE = re.compile(r"^val_loss:(\S+) val_bpb:(\S+)$")
# Runs the script as __main__ with golfpack unimportable (and nothing of golfpack preloaded).
_HIDDEN = (
    "import sys,runpy\n"
    "class _NoGolfpack:\n"
    "    def find_spec(self,name,path=None,target=None):\n"
    "        if name=='golfpack' or name.startswith('golfpack.'):\n"
    "            raise ModuleNotFoundError(f'No module named {name!r} (hidden by golfpack check)')\n"
    "sys.meta_path.insert(0,_NoGolfpack())\n"
    "p=sys.argv[1]; sys.argv=sys.argv[1:]\n"
    "runpy.run_path(p,run_name='__main__')\n"
)


@dataclass
class Run:
    val_loss: float | None
    val_bpb: float | None
    returncode: int
    stdout: str
    stderr: str


def run_record(folder, val, tokenizer, *, max_tokens: int | None = None, env: dict | None = None,
               python: str | None = None, hide_golfpack: bool = False, timeout: float | None = None,
               torchrun: int | None = None) -> Run:
    """Run DIR/train_gpt.py on one validation shard; the scores of its last line (None if it failed)."""
    folder, val, tokenizer = Path(folder).resolve(), Path(val).resolve(), Path(tokenizer).resolve()
    script = folder / "train_gpt.py"
    for p, what in ((script, "record script"), (val, "validation shard"), (tokenizer, "tokenizer")):
        if not p.is_file():
            raise GolfpackError(f"{what} not found: {p}")
    with tempfile.TemporaryDirectory(prefix="golfpack-run-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        (data / "fineweb_val_000000.bin").symlink_to(val)
        work = Path(tmp) / "work"
        work.mkdir()
        e = {k: v for k, v in os.environ.items() if not k.startswith(("GOLFPACK", "EVAL_", "VAL_"))}
        e.pop("PYTHONPATH", None)
        e.update(DATA_PATH=str(data), TOKENIZER_PATH=str(tokenizer))
        if max_tokens is not None:
            e["EVAL_MAX_TOKENS"] = str(int(max_tokens))
        e.update({k: str(v) for k, v in (env or {}).items()})
        py = python or sys.executable
        if torchrun:
            cmd = [py, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={int(torchrun)}", str(script)]
        elif hide_golfpack:
            cmd = [py, "-c", _HIDDEN, str(script)]
        else:
            cmd = [py, str(script)]
        try:
            p = subprocess.run(cmd, cwd=work, env=e, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise GolfpackError(f"{script} ran past {timeout} s") from None
    m = None
    lines = p.stdout.strip().splitlines()
    if p.returncode == 0 and lines:
        m = LAST_LINE.match(lines[-1].strip())
    if m is None:
        return Run(None, None, p.returncode, p.stdout, p.stderr)
    return Run(float(m.group(1)), float(m.group(2)), p.returncode, p.stdout, p.stderr)
