"""Every hostile-input case of tests/hostile_corpus.py as its own `golfpack` process: exit code, the
one error line, wall seconds and peak RSS (issue 20).

    python benchmarks/hostile_inputs.py [--scale test|issue] [--only NAME,...] [--markdown OUT.md]

`--scale issue` builds the issue's sizes (2 GiB .ptz bombs, an 8.5 GiB one against the real 8 GiB
cap, 10^6 tensors in a safetensors header); `test` the suite's small ones. The peak RSS of each child
comes from os.wait4 in a small launcher process: a child that Popen starts straight from this
process (vfork + exec) inherits this process's own high-water RSS (torch imported, bomb buffers), so
its ru_maxrss would never read below it. The launcher forks from ~10 MB. The baseline row is the same command on a valid 4-element
checkpoint: what importing torch and golfpack costs before any input is read. A case passes when it
exits 2 with one stderr line naming its file and matching the corpus's regex, with no traceback, and
its peak stays within 256 MB of the baseline (none of these inputs holds a legitimate tensor
larger than a few bytes, so the issue's bound 2x largest tensor + 256 MB is baseline + 256 MB).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import hostile_corpus as H  # noqa: E402

BOUND_MB = 256


# Runs `golfpack ARGV` as its own child, waits for it and prints "EXIT MAXRSS_KB" on stdout. The
# child's stdout goes to /dev/null, its stderr is the launcher's (captured below).
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1)
    os.execv(sys.executable, [sys.executable, "-m", "golfpack.cli", *sys.argv[1:]])
_, status, ru = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), ru.ru_maxrss)
"""


def run(argv: list[str], env: dict) -> tuple[int, str, float, float]:
    """(exit code, stderr, wall s, peak RSS MB) of `golfpack ARGV` in a child process."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", _LAUNCHER, *argv], capture_output=True, env=env, text=True)
    wall = time.perf_counter() - t0
    rc, kb = (int(x) for x in p.stdout.split())
    return rc, p.stderr, wall, kb / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=("test", "issue"), default="issue")
    ap.add_argument("--only", default=None, help="comma list of case names")
    ap.add_argument("--markdown", default=None)
    a = ap.parse_args()
    scale = H.ISSUE_SCALE if a.scale == "issue" else H.TEST_SCALE
    cases = H.cases()
    if a.only:
        want = set(a.only.split(","))
        cases = [c for c in cases if c.name in want]
    rows, failures = [], 0
    with tempfile.TemporaryDirectory() as d0:
        base_dir = Path(d0) / "baseline"
        base_dir.mkdir()
        src = H._valid_st(base_dir / "ok.safetensors")
        rc, err, wall, base_mb = run(H._encode(src, base_dir), dict(os.environ))
        rows.append(("baseline (valid 4-element checkpoint)", "-", rc, "(encodes)", wall, base_mb, 0.0, True))
        for c in cases:
            d = Path(d0) / c.name
            d.mkdir()
            if c.lowers_cap and scale.get("cap") is not None:
                # the suite lowers the cap in-process; a child process has the real 8 GiB one
                print(f"skip {c.name}: past the real cap only at --scale issue", file=sys.stderr)
                continue
            argv, hostile = c.build(d, scale)
            rc, err, wall, mb = run(argv, dict(os.environ))
            lines = err.strip().splitlines()
            ok = (rc == 2 and len(lines) == 1 and "Traceback" not in err and str(hostile) in lines[0]
                  and re.search(c.expect, lines[0]) is not None and mb <= base_mb + BOUND_MB)
            failures += not ok
            msg = lines[0] if lines else ""
            msg = msg.replace(str(d) + "/", "")
            rows.append((c.name, c.klass, rc, msg[:150], wall, mb, mb - base_mb, ok))
            print(f"{'ok  ' if ok else 'FAIL'} {c.name}: exit {rc}, {mb:.0f} MB, {wall:.1f} s: {msg[:120]}",
                  file=sys.stderr, flush=True)
            for p in sorted(d.rglob("*"), reverse=True):  # free the bombs' disk as we go
                if p.is_file() or p.is_symlink() or p.is_fifo():
                    p.unlink()
    md = ["| case | class | exit | the one line (paths shortened) | s | peak RSS MB | above baseline MB | ok |",
          "|---|---|---:|---|---:|---:|---:|---|"]
    for name, klass, rc, msg, wall, mb, delta, ok in rows:
        md.append(f"| {name} | {klass} | {rc} | {msg.replace('|', '/')} | {wall:.1f} | {mb:.0f} | {delta:+.0f} | "
                  f"{'yes' if ok else '**no**'} |")
    text = "\n".join(md)
    print(text)
    if a.markdown:
        Path(a.markdown).write_text(text + "\n")
    print(f"{len(rows) - 1 - failures} of {len(rows) - 1} cases run pass (scale {a.scale})", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
