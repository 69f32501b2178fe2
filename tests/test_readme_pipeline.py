"""The README's main job, end to end: its quick start is exactly one install command and
`golfpack demo`, and the demo (at --quick sizes, stdlib text only, no ../shared needed) runs the
whole chain through the real command line: tokenizer -> shards -> train -> encode (planner with
calibration) -> decode -> eval (plain, sliding, LoRA TTT) -> RD plot.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    """The commands of the README's first ```bash block (the quick start), comments dropped."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README has no bash block"
    return [ln.split("#")[0].strip() for ln in block.group(1).splitlines() if ln.split("#")[0].strip()]


def test_readme_quick_start_is_install_plus_demo():
    cmds = quick_start_commands()
    assert len(cmds) == 2, cmds
    assert cmds[0].startswith("pip install")
    assert cmds[1] == "golfpack demo"


@pytest.mark.slow
def test_readme_main_job_runs_from_the_command_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "golfpack", "demo", "--quick", "--out", "demo", "--json"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout)
    out = tmp_path / "demo"
    for f in ("sp1024.model", "data/stdlib_train_sp1024.bin", "data/stdlib_val_sp1024.bin", "ckpt/model.safetensors",
              "ckpt/config.json", "model.gp", "rd.png", "results.json", "results.md"):
        assert (out / f).is_file(), f
    assert r["artifact_bytes"] == (out / "model.gp").stat().st_size <= r["budget"] < r["lossless_bytes"]
    modes = [(e["what"], e["mode"]) for e in r["evals"]]
    assert ("float checkpoint", "plain") in modes and ("artifact", "plain") in modes
    assert any(m.startswith("sliding") for w, m in modes if w == "artifact")
    assert r["ttt"] is not None or any(m.startswith("LoRA TTT") for _, m in modes)
    plain = {e["what"]: e for e in r["evals"] if e["mode"] == "plain"}
    assert plain["artifact"]["tokens"] == plain["float checkpoint"]["tokens"] == r["eval_tokens"]
    assert r["within_0.01"] == (abs(plain["artifact"]["val_bpb"] - plain["float checkpoint"]["val_bpb"]) <= 0.01)
    assert len(r["rd"]) >= 2 and all(x["total_bytes"] <= x["budget"] for x in r["rd"])
    # progress bars went to stderr, the result to stdout
    assert "eval artifact plain" in p.stderr or "%" in p.stderr
    # the artifact scores the same through `golfpack eval` as inside the demo
    e = subprocess.run([sys.executable, "-m", "golfpack", "eval", "demo/model.gp", "--val", r["val_shard"],
                        "--tokenizer", r["tokenizer"], "--seq-len", str(r["seq_len"]), "--max-tokens",
                        str(r["eval_tokens"]), "--batch", "8", "--threads", "1", "--json"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert e.returncode == 0, e.stderr
    assert json.loads(e.stdout)["val_bpb"] == pytest.approx(plain["artifact"]["val_bpb"], abs=1e-9)
