"""The README's main job, end to end, on stdlib text only (no ../shared needed).

Same commands as the README, with smaller sizes (few docs, 3 training steps) so
it stays a quick smoke test of the whole chain: tokenizer -> shards -> train ->
encode -> inspect -> decode -> eval (dense and packed-capable paths).
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def gp(*args, cwd):
    p = subprocess.run([sys.executable, "-m", "golfpack", *map(str, args)], cwd=cwd, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, f"golfpack {' '.join(map(str, args))}:\n{p.stderr}"
    return p.stdout


@pytest.mark.slow
def test_readme_main_job_on_stdlib_text(tmp_path):
    cfg = json.loads((REPO / "examples" / "tiny.json").read_text())
    cfg["train"].update(steps=3, batch_tokens=2048, warmdown_steps=1, log_every=1)
    (tmp_path / "tiny.json").write_text(json.dumps(cfg))
    gp("data", "train-tokenizer", "--stdlib", "--vocab", "1024", "--out", "sp1024.model",
       "--max-input-bytes", "1000000", cwd=tmp_path)
    gp("data", "tokenize", "--stdlib", "--tokenizer", "sp1024.model", "--out", "data", "--val-docs", "5",
       "--max-docs", "60", cwd=tmp_path)
    gp("train", "--config", "tiny.json", "--data", "data/stdlib_train_sp1024.bin", "--out", "ckpt",
       "--device", "cpu", "--threads", "1", "--quiet", cwd=tmp_path)
    enc = json.loads(gp("encode", "ckpt", "-o", "tiny.gp", "--lossless", "--json", cwd=tmp_path))
    assert enc["artifact_bytes"] == (tmp_path / "tiny.gp").stat().st_size and enc["has_config"]
    ins = json.loads(gp("inspect", "tiny.gp", "--verify", "--json", cwd=tmp_path))
    assert ins["verified"] and ins["config"]["num_layers"] == cfg["num_layers"]
    gp("decode", "tiny.gp", "-o", "tiny.safetensors", cwd=tmp_path)
    common = ["--val", "data/stdlib_val_sp1024.bin", "--tokenizer", "sp1024.model", "--seq-len", "256",
              "--max-tokens", "1024", "--json", "--threads", "1"]
    art = json.loads(gp("eval", "tiny.gp", *common, cwd=tmp_path))
    ckpt = json.loads(gp("eval", "ckpt", *common, cwd=tmp_path))
    assert art["tokens"] == ckpt["tokens"] == 1024
    assert art["val_bpb"] == ckpt["val_bpb"]  # lossless: the artifact scores exactly like its source
    assert 0 < art["val_bpb"] < 20
