"""Deliberate mutations of the issue-20 guards: each one removed, its tests run, the file restored.

    python benchmarks/mutations.py [--only NAME,...] [--markdown OUT.md] [--native --pybind11-dir DIR]

Every mutation is an exact text replacement in one source file (it must match exactly once, so a
refactor that moves the guard makes this script fail loudly instead of testing nothing). The named
test files run with `-m "not slow"` under a timeout; a mutation is *caught* when at least one test
fails (or the run times out: a hang). The source file is written back byte for byte afterwards,
also on Ctrl-C. Run it on a checkout nobody else is using: the mutant is live while its tests run.

`--native` adds the mutations of golfpack._C (csrc/): those are made in a copy of CMakeLists.txt and
csrc/ under a temporary folder, built there with cmake (-O1, no CUDA; `--pybind11-dir` is pybind11's
cmake folder, `python -m pybind11 --cmakedir`), and the tests run with that .so loaded as golfpack._C in
every process, subprocesses included (a sitecustomize.py on PYTHONPATH); the checkout is not touched.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = "tests/test_hostile_inputs.py"


@dataclass
class Mutation:
    name: str
    path: str  # file in the repository
    where: str  # function or guard, for the table
    old: str
    new: str
    tests: tuple[str, ...]
    note: str = ""
    native: bool = False  # a csrc/ mutation: built out of tree (--native)


MUTATIONS = [
    Mutation("sgd_step_noop", "evaluate/ttt.py", "SGD TTT runner: opt.step()",
             "            opt.step()\n            step += 1", "            pass\n            step += 1",
             ("tests/test_ttt_effects.py", "tests/test_ttt.py")),
    Mutation("view_overlap", "src/golfpack/torch_reader.py", "check_tensor: _overlaps()",
             "    if _overlaps(sizes, strides):", "    if False:", (HOSTILE,)),
    Mutation("storage_bounds", "src/golfpack/torch_reader.py", "check_tensor: extent > storage",
             "    if extent > have:", "    if False:", (HOSTILE,)),
    Mutation("ptz_cap", "src/golfpack/torch_reader.py", "decompress_to_file: streaming cap",
             "        if total > cap:", "        if False:", (HOSTILE,)),
    Mutation("ptz_zip_magic", "src/golfpack/torch_reader.py", "decompress_to_file: first bytes must be a zip",
             "        if total == 0 and chunk and bytes(chunk[:4]) != ZIP_MAGIC[: len(chunk[:4])]:", "        if False:",
             (HOSTILE,)),
    Mutation("zip_stored_only", "src/golfpack/torch_reader.py", "check_zip: entries STORED",
             "        if info.compress_type != zipfile.ZIP_STORED:", "        if False:", (HOSTILE,)),
    Mutation("weights_only_off", "src/golfpack/torch_reader.py", "_load_zip_file: weights_only=True",
             "weights_only=True, mmap=True", "weights_only=False, mmap=True", (HOSTILE,)),
    Mutation("torch_warnings_shown", "src/golfpack/torch_reader.py", "_load_zip_file: torch's warnings silenced",
             '            warnings.simplefilter("ignore")\n', "            pass\n", (HOSTILE,)),
    Mutation("empty_checkpoint", "src/golfpack/checkpoint.py", "_from_state_dict: all-empty refused",
             "    if total == 0:\n        raise FormatError(f\"{path}: every tensor is empty",
             "    if False:\n        raise FormatError(f\"{path}: every tensor is empty", (HOSTILE,)),
    Mutation("gptconfig_limits_skipped", "model/config.py", "GPTConfig.validate: limit_problems",
             "        over = limit_problems(self.to_dict())", "        over = []",
             (HOSTILE, "tests/test_model_config.py")),
    Mutation("limit_problems_empty", "model/config.py", "limit_problems returns nothing",
             "    bad = []\n    for k in _INT_LIMITED:", "    return []\n    bad = []\n    for k in _INT_LIMITED:",
             (HOSTILE, "tests/test_model_config.py")),
    Mutation("shard_confinement", "src/golfpack/input_files.py", "confined_file: realpath inside the folder",
             "    if real.parent != Path(os.path.realpath(folder)):", "    if False:", (HOSTILE,)),
    Mutation("regular_file_only", "src/golfpack/input_files.py", "open_regular: S_ISREG",
             "        if not stat.S_ISREG(st.st_mode):\n            raise FormatError(f\"{path}: {what} must be",
             "        if False:\n            raise FormatError(f\"{path}: {what} must be", (HOSTILE,),
             "a FIFO input then blocks: the run may end by timeout"),
    Mutation("temp_no_o_excl", "src/golfpack/output.py", "_create_temp: O_EXCL",
             "os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW", "os.O_CREAT | os.O_NOFOLLOW", (HOSTILE,)),
    Mutation("temp_no_o_nofollow", "src/golfpack/output.py", "_create_temp: O_NOFOLLOW",
             "os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW", "os.O_CREAT | os.O_EXCL", (HOSTILE,),
             "equivalent: O_CREAT | O_EXCL already fails on any existing name, a symlink included"),
    Mutation("output_is_input", "src/golfpack/output.py", "check_output_path: output is an input",
             "        if _same_file(src, out) or os.path.abspath(src) == os.path.abspath(out):", "        if False:",
             (HOSTILE,)),
    Mutation("header_object_count", "src/golfpack/safetensors_io.py", "read_header: max_objects",
             "max_objects=MAX_TENSORS + 2,", "max_objects=None,", (HOSTILE,)),
    Mutation("index_member_count", "src/golfpack/safetensors_io.py", "load_sharded: max_members",
             "max_members=MAX_TENSORS + MAX_META_MEMBERS)", "max_members=None)", (HOSTILE,)),
    Mutation("json_depth", "src/golfpack/safe_json.py", "loads_bounded: depth before json.loads",
             "    if depth > max_depth:\n        found", "    if False:\n        found", ("tests/test_hostile_json.py",)),
    Mutation("flag_upper_bound", "evaluate/limits.py", "int_flag: upper bound",
             "        if not lo <= v <= hi:", "        if not lo <= v:", ("tests/test_eval_cli.py",)),
    Mutation("flag_stride_vs_seq", "evaluate/cli.py", "check_geometry: stride <= seq-len",
             "    if stride is not None and stride > seq_len:", "    if False:", ("tests/test_eval_cli.py",)),
    Mutation("ttt_upper_bounds", "evaluate/ttt_config.py", "TTTConfig.validate: integer upper bounds",
             " or (hi is not None and v > hi):", ":", ("tests/test_eval_cli.py", "tests/test_ttt.py")),
    Mutation("threads_clamp", "csrc/core/common.h", "clamp_threads: at most the hardware threads",
             "  if (t > hardware_threads()) t = hardware_threads();\n", "", ("tests/test_native_limits.py",),
             native=True),
    Mutation("qrow_stride_k_limit", "csrc/py/qmatmul_py.cpp", "row_stride: K <= 2^56 before K * bits",
             '  if (K > kMaxRowSymbols)\n    throw py::value_error("K = " + std::to_string(K) + " exceeds the packed-row limit of 2^56 symbols");\n',
             "", ("tests/test_native_limits.py",), native=True),
    Mutation("stream_tiling", "codec/container.py", "parse: streams tile the payload (S6)",
             '        _req("S6", off == pos,', '        _req("S6", True,',
             ("tests/test_container.py", "tests/test_hostile_artifacts.py")),
]


_SITECUSTOMIZE = """
import os
_so = os.environ.get("GOLFPACK_C_SO")
if _so:
    import importlib.util, sys
    _spec = importlib.util.spec_from_file_location("golfpack._C", _so)
    _mod = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
    sys.modules["golfpack._C"] = _mod
"""


def build_native(m: Mutation, work: Path, pybind11_dir: str) -> tuple[Path, dict]:
    """Build golfpack._C from a mutated copy of csrc/ in `work`; (the .so, env that loads it everywhere)."""
    import shutil

    src, build, site = work / "src", work / "build", work / "site"
    shutil.copytree(ROOT / "csrc", src / "csrc")
    shutil.copy(ROOT / "CMakeLists.txt", src / "CMakeLists.txt")
    target = src / m.path
    target.write_text(target.read_text().replace(m.old, m.new))
    subprocess.run(["cmake", "-S", src, "-B", build, "-DGOLFPACK_CUDA=OFF", f"-Dpybind11_DIR={pybind11_dir}",
                    f"-DPython_EXECUTABLE={sys.executable}", "-DCMAKE_BUILD_TYPE=Release",
                    "-DCMAKE_CXX_FLAGS_RELEASE=-O1"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", build, "-j2", "--target", "_C"], check=True, capture_output=True)
    so = next(build.glob("_C*.so"))
    site.mkdir()
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    env = dict(os.environ, GOLFPACK_C_SO=str(so), PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    return so, env


def run_tests(tests: tuple[str, ...], timeout: int, env: dict | None = None) -> tuple[list[str], str, float]:
    """(failed test ids, summary line, seconds) of pytest over `tests`."""
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", "-rf", *tests]
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return ["(timed out: a hang)"], f"timeout after {timeout} s", time.perf_counter() - t0
    out = p.stdout + p.stderr
    failed = sorted(set(re.findall(r"^FAILED (\S+)", out, re.M)))
    failed += sorted(set(re.findall(r"^ERROR (\S+)", out, re.M)))
    summary = next((ln for ln in reversed(out.strip().splitlines()) if " in " in ln and ("passed" in ln or "failed" in ln)), "")
    if p.returncode not in (0, 1) and not failed:
        failed = [f"(pytest exit {p.returncode})"]
    return failed, summary.strip("= "), time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=None, help="comma list of mutation names")
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--timeout", type=int, default=300, help="seconds per mutation's test run")
    ap.add_argument("--native", action="store_true", help="also the csrc/ mutations (each built out of tree)")
    ap.add_argument("--pybind11-dir", default=None, help="pybind11's cmake folder (python -m pybind11 --cmakedir)")
    a = ap.parse_args()
    muts = [m for m in MUTATIONS if (a.only is None or m.name in a.only.split(",")) and (a.native or not m.native)]
    rows = []
    for m in muts:
        path = ROOT / m.path
        original = path.read_bytes()
        text = original.decode()
        if text.count(m.old) != 1:
            print(f"FAIL {m.name}: the guard text occurs {text.count(m.old)} times in {m.path}", file=sys.stderr)
            return 2
        if m.native:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="golfpack-mutant-") as work:
                _, env = build_native(m, Path(work), a.pybind11_dir or subprocess.run(
                    [sys.executable, "-m", "pybind11", "--cmakedir"], capture_output=True, text=True).stdout.strip())
                failed, summary, secs = run_tests(m.tests, a.timeout, env)
            rows.append((m, failed, summary, secs))
            print(f"{'caught ' if failed else 'SURVIVED'} {m.name} ({secs:.0f} s): {len(failed)} failing: "
                  f"{', '.join(f.split('::')[-1] for f in failed[:4])}", file=sys.stderr, flush=True)
            continue
        try:
            path.write_text(text.replace(m.old, m.new))
            failed, summary, secs = run_tests(m.tests, a.timeout)
        finally:
            path.write_bytes(original)
        rows.append((m, failed, summary, secs))
        print(f"{'caught ' if failed else 'SURVIVED'} {m.name} ({secs:.0f} s): {len(failed)} failing: "
              f"{', '.join(f.split('::')[-1] for f in failed[:4])}{' ...' if len(failed) > 4 else ''}",
              file=sys.stderr, flush=True)
    md = ["| mutation | file: guard | tests run | failing tests | caught |", "|---|---|---|---|---|"]
    for m, failed, summary, secs in rows:
        shown = ", ".join(f"`{f.split('::')[-1]}`" for f in failed[:5]) + (f" (+{len(failed) - 5} more)" if len(failed) > 5 else "")
        md.append(f"| {m.name} | `{m.path}`: {m.where} | {', '.join(Path(t).name for t in m.tests)} | "
                  f"{len(failed)}: {shown or '-'}{' (' + m.note + ')' if m.note else ''} | {'yes' if failed else '**no**'} |")
    text = "\n".join(md)
    print(text)
    if a.markdown:
        Path(a.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
