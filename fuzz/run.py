"""Run the fuzzers for a number of executions each and summarize (fuzz/README.md).

    python fuzz/run.py --runs 200000                      # every atheris target, 2e5 executions each
    python fuzz/run.py --runs 200000 --asan /work/venv-asan/bin/python   # golfpack._C built with ASan+UBSan
    python fuzz/run.py --native --runs 2000000 --targets none            # only the C++ libFuzzer harnesses

Each target runs in its own process (libFuzzer: -runs=N, -timeout=10 s per input as the hang
detector, -rss_limit_mb as the memory-bomb detector). A run counts as clean only if the engine
exits 0 after all N executions and left no crash-/timeout-/oom- file. The summary (Markdown
table + JSON) goes to stdout and to LOG_DIR/summary.{md,json}; full engine logs beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
TARGETS = ["header", "manifest", "rans", "rans_x32", "bitpack", "streams", "crc"]
NATIVE = ["rans", "bitpack"]
DONE = re.compile(r"Done (\d+) runs in (\d+) second")
COV = re.compile(r"#\d+\s+(?:DONE|pulse|NEW|REDUCE|INITED)\s+cov: (\d+)")


def gcc_runtime(name: str) -> str:
    return subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True, check=True).stdout.strip()


def run_one(label: str, cmd: list[str], env: dict, log: Path, prefix: Path) -> dict:
    t0 = time.time()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    wall = time.time() - t0
    text = log.read_text(errors="replace")
    done = DONE.findall(text)
    cov = COV.findall(text)
    findings = sorted(p.name for p in prefix.parent.glob(prefix.name + "*"))
    sanitizer = len(re.findall(r"ERROR: AddressSanitizer|runtime error:|UndefinedBehaviorSanitizer", text))
    return {"target": label, "runs": int(done[-1][0]) if done else 0, "seconds": round(wall, 1), "rc": rc,
            "findings": findings, "sanitizer_reports": sanitizer, "coverage": int(cov[-1]) if cov else None,
            "clean": rc == 0 and not findings and sanitizer == 0 and bool(done), "log": str(log)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=100_000, help="executions per target")
    ap.add_argument("--targets", default=",".join(TARGETS), help="atheris targets, comma-separated, or 'none'")
    ap.add_argument("--native", action="store_true", help="also run the C++ libFuzzer harnesses (fuzz/native/build.sh)")
    ap.add_argument("--native-runs", type=int, default=None, help="executions per native target (default --runs)")
    ap.add_argument("--python", default=sys.executable, help="interpreter with golfpack and atheris")
    ap.add_argument("--asan", metavar="PYTHON", help="interpreter of an ASan+UBSan golfpack build (tools/sanitize_tests.sh); "
                    "runs the atheris targets with the gcc sanitizer runtimes preloaded")
    ap.add_argument("--corpus", type=Path, default=HERE / "corpus")
    ap.add_argument("--logs", type=Path, default=HERE / "logs")
    ap.add_argument("--max-len", type=int, default=8192)
    ap.add_argument("--rss-limit-mb", type=int, default=3072)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-time", type=int, default=0, help="also stop each target after this many seconds (0: no limit)")
    args = ap.parse_args()

    python = args.asan or args.python
    env = dict(os.environ)
    if args.asan:
        env["LD_PRELOAD"] = f"{gcc_runtime('libasan.so')}:{gcc_runtime('libubsan.so')}"
        env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1:allocator_may_return_null=1"
        env["UBSAN_OPTIONS"] = "halt_on_error=1:abort_on_error=1:print_stacktrace=1"
    if not (args.corpus / "header").is_dir():
        subprocess.run([args.python, str(HERE / "make_corpus.py"), str(args.corpus)], check=True)
    args.logs.mkdir(parents=True, exist_ok=True)
    common = [f"-max_len={args.max_len}", "-timeout=10", f"-rss_limit_mb={args.rss_limit_mb}",
              f"-seed={args.seed}", "-print_final_stats=1"] + ([f"-max_total_time={args.max_time}"] if args.max_time else [])
    rows = []
    targets = [] if args.targets == "none" else args.targets.split(",")
    for t in targets:
        prefix = args.logs / f"finding-{t}-"
        cmd = [python, str(HERE / "fuzz.py"), t, f"-runs={args.runs}", f"-artifact_prefix={prefix}", *common,
               str(args.corpus / t)]
        rows.append(run_one(t + (" (asan)" if args.asan else ""), cmd, env, args.logs / f"{t}.log", prefix))
        print(json.dumps(rows[-1]), flush=True)
    if args.native:
        for t in NATIVE:
            exe = HERE / "native" / "build" / f"fuzz_{t}"
            if not exe.exists():
                sys.exit(f"{exe} missing: run fuzz/native/build.sh first")
            corpus = args.corpus / f"native_{t}"
            corpus.mkdir(parents=True, exist_ok=True)
            prefix = args.logs / f"finding-native_{t}-"
            n = args.native_runs or args.runs
            cmd = [str(exe), f"-runs={n}", f"-artifact_prefix={prefix}", *common, str(corpus), str(args.corpus / t)]
            rows.append(run_one(f"native {t} (libFuzzer+ASan+UBSan)", cmd, dict(os.environ), args.logs / f"native_{t}.log", prefix))
            print(json.dumps(rows[-1]), flush=True)
    lines = ["| target | executions | seconds | coverage (libFuzzer cov) | crashes/hangs/OOMs | sanitizer reports | clean |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['target']} | {r['runs']:,} | {r['seconds']} | {r['coverage']} | {len(r['findings'])} | "
                     f"{r['sanitizer_reports']} | {'yes' if r['clean'] else 'NO (rc=%d)' % r['rc']} |")
    total = sum(r["runs"] for r in rows)
    lines.append(f"| **total** | **{total:,}** | {sum(r['seconds'] for r in rows):.0f} | | "
                 f"{sum(len(r['findings']) for r in rows)} | {sum(r['sanitizer_reports'] for r in rows)} | "
                 f"{'yes' if all(r['clean'] for r in rows) else 'NO'} |")
    table = "\n".join(lines)
    print(table)
    (args.logs / "summary.md").write_text(table + "\n")
    (args.logs / "summary.json").write_text(json.dumps(rows, indent=1) + "\n")
    sys.exit(0 if rows and all(r["clean"] for r in rows) else 1)


if __name__ == "__main__":
    main()
