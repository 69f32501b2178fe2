"""golfpack export: the record's train_gpt.py runs with golfpack hidden and scores like golfpack eval.

A small version of issue 22's acceptance run: a tiny GPT (random weights, sp1024 vocabulary),
encoded by the planner's fixed recipe, exported; the script runs in a fresh interpreter where
`import golfpack` fails, on a prefix of c4_val, and must print the val_bpb golfpack eval --packed
computes on the same tokens (plain, sliding, LoRA TTT) within 1e-6.
"""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from golfpack.cli import main as golfpack_main
from golfpack.export.record import plan_record, write_record
from golfpack.export.run import run_record

MAX_TOKENS = 1024
CFG = dict(vocab_size=1024, num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2, mlp_mult=2.0)


@pytest.fixture(scope="module")
def data(request):
    from conftest import shared_file

    return shared_file("shards/c4_val_sp1024.bin"), shared_file("tokenizers/fineweb_1024_bpe.model")


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory):
    from golfpack import safetensors_io
    from golfpack.model import GPT, GPTConfig

    d = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    cfg = GPTConfig(**CFG)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05) if p.dim() > 1 else p.uniform_(0.5, 1.5)
    ck = d / "ckpt"
    ck.mkdir()
    safetensors_io.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, ck / "model.safetensors")
    (ck / "config.json").write_text(cfg.to_json())
    art = d / "tiny.gp"
    assert golfpack_main(["encode", str(ck), "-o", str(art), "--bits", "attn=6,mlp=4,embed=8", "--method", "rtn",
                          "--calib", "none", "--coders", "raw,rans,rans_rc", "--quiet"]) == 0
    return art


@pytest.fixture(scope="module")
def planned_artifact(tiny_artifact, tmp_path_factory):
    """The same tiny GPT through the byte-budget planner (what `golfpack encode --budget` ships:
    mixed widths, entropy-coded (ecsq) candidates, float16 control tensors), from its decoded
    float weights so no shared file is needed."""
    from conftest import shared_file

    d = tmp_path_factory.mktemp("planned")
    src = d / "dense.safetensors"
    assert golfpack_main(["decode", str(tiny_artifact), "-o", str(src)]) == 0
    art = d / "planned.gp"
    calib = shared_file("shards/enwiki_train_sp1024.bin")
    assert golfpack_main(["encode", str(src), "-o", str(art), "--budget", "90000", "--calib", str(calib),
                          "--calib-seqs", "4", "--calib-len", "128", "--quiet"]) == 0
    return art


def test_planner_artifact_scores_like_golfpack_eval_without_golfpack(planned_artifact, data, tmp_path):
    _export(planned_artifact, tmp_path / "rec", eval_mode="sliding")
    r = run_record(tmp_path / "rec", *data, max_tokens=MAX_TOKENS, hide_golfpack=True, env={"EVAL_THREADS": 1})
    assert r.returncode == 0, r.stderr
    assert abs(r.val_bpb - _reference(planned_artifact, data, "sliding")) < 1e-6


def _reference(art, data, mode, ttt=False):
    from golfpack.data.bytes import build_byte_tables
    from golfpack.data.shards import read_shards
    from golfpack.evaluate.bpb import evaluate
    from golfpack.evaluate.packed_model import load_packed
    from golfpack.evaluate.ttt import TTTConfig, evaluate_ttt

    val, sp = data
    model = load_packed(art)
    tables = build_byte_tables(sp, vocab_size=1024)
    tokens = read_shards([str(val)])
    if ttt:
        return evaluate_ttt(model, tokens, tables, TTTConfig.for_method("lora", {"context": 256, "chunk": 64}),
                            max_tokens=MAX_TOKENS).val_bpb
    kw = dict(seq_len=256, stride=None if mode == "plain" else 64, doc_aware=mode == "doc-aware")
    return evaluate(model, tokens, tables, max_tokens=MAX_TOKENS, **kw).val_bpb


def _export(art, out, **kw):
    data, script, flags, st = plan_record(art.read_bytes(), seq_len=256, stride=64, **kw)
    write_record(out, data, script, flags, st)
    return script, flags


@pytest.mark.parametrize("mode", ["plain", "sliding", "doc-aware"])
def test_script_scores_like_golfpack_eval_without_golfpack(tiny_artifact, data, tmp_path, mode):
    _export(tiny_artifact, tmp_path / "rec", eval_mode=mode)
    r = run_record(tmp_path / "rec", *data, max_tokens=MAX_TOKENS, hide_golfpack=True, env={"EVAL_THREADS": 1})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("val_loss:")
    assert abs(r.val_bpb - _reference(tiny_artifact, data, mode)) < 1e-6


def test_lora_ttt_scores_like_golfpack_eval(tiny_artifact, data, tmp_path):
    _, flags = _export(tiny_artifact, tmp_path / "rec", ttt="lora")
    assert "lora" in flags
    r = run_record(tmp_path / "rec", *data, max_tokens=MAX_TOKENS, hide_golfpack=True, env={"EVAL_THREADS": 1})
    assert r.returncode == 0, r.stderr
    assert abs(r.val_bpb - _reference(tiny_artifact, data, "sliding", ttt=True)) < 1e-6


TTT_OVER = {"sgd": {"sgd_chunk_tokens": 300, "sgd_epochs": 2},
            "q": {"sgd_chunk_tokens": 300},
            "phased": {"doc_batch": 1, "prefix_docs": 2, "phases": 2, "sgd_batch": 2}}


@pytest.mark.parametrize("method", ["sgd", "q", "phased"])
def test_full_parameter_ttt_scores_like_golfpack_eval(tiny_artifact, data, tmp_path, method):
    from golfpack.data.bytes import build_byte_tables
    from golfpack.data.shards import read_shards
    from golfpack.evaluate.packed_model import load_packed
    from golfpack.evaluate.ttt import TTTConfig, evaluate_ttt

    over = TTT_OVER[method]
    cfg_p = tmp_path / "ttt.json"
    cfg_p.write_text(json.dumps(over))
    _, flags = _export(tiny_artifact, tmp_path / "rec", ttt=method, ttt_config=str(cfg_p))
    assert "sgd" in flags
    r = run_record(tmp_path / "rec", *data, max_tokens=MAX_TOKENS, hide_golfpack=True, env={"EVAL_THREADS": 1})
    assert r.returncode == 0, r.stderr
    ref = evaluate_ttt(load_packed(tiny_artifact), read_shards([str(data[0])]), build_byte_tables(data[1], vocab_size=1024),
                       TTTConfig.for_method(method, {**over, "context": 256, "chunk": 64}), max_tokens=MAX_TOKENS)
    assert ref.documents_adapted > 0
    assert abs(r.val_bpb - ref.val_bpb) < 1e-6


def test_hidden_golfpack_is_really_hidden(tmp_path):
    (tmp_path / "train_gpt.py").write_text("import golfpack\n")
    val = tmp_path / "v.bin"
    val.write_bytes(b"")
    sp = tmp_path / "sp.model"
    sp.write_bytes(b"")
    r = run_record(tmp_path, val, sp, hide_golfpack=True)
    assert r.returncode != 0 and "No module named 'golfpack'" in r.stderr


def test_torchrun_two_processes_equal_one(tiny_artifact, data, tmp_path):
    _export(tiny_artifact, tmp_path / "rec", eval_mode="sliding")
    one = run_record(tmp_path / "rec", *data, max_tokens=MAX_TOKENS, env={"EVAL_THREADS": 1})
    two = run_record(tmp_path / "rec", *data, max_tokens=MAX_TOKENS, env={"EVAL_THREADS": 1}, torchrun=2)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.val_bpb == one.val_bpb


# ------------------------------------------------------------------ hostile input: one line, exit 2

def _one_error_line(r):
    assert r.returncode == 2 and r.val_bpb is None
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train_gpt.py: error: "), r.stderr
    return lines[0]


def test_missing_artifact(tiny_artifact, data, tmp_path):
    _export(tiny_artifact, tmp_path / "rec")
    (tmp_path / "rec" / "model.gp").unlink()
    assert "cannot read the artifact" in _one_error_line(run_record(tmp_path / "rec", *data, max_tokens=64))


def test_corrupt_artifact(tiny_artifact, data, tmp_path):
    _export(tiny_artifact, tmp_path / "rec")
    p = tmp_path / "rec" / "model.gp"
    b = bytearray(p.read_bytes())
    b[-100] ^= 0x40
    p.write_bytes(bytes(b))
    assert "corrupt" in _one_error_line(run_record(tmp_path / "rec", *data, max_tokens=64))


def test_wrong_tokenizer(tiny_artifact, data, tmp_path):
    from conftest import shared_file

    _export(tiny_artifact, tmp_path / "rec")
    r = run_record(tmp_path / "rec", data[0], shared_file("tokenizers/fineweb_8192_bpe.model"), max_tokens=64)
    assert "do not belong together" in _one_error_line(r)


def test_not_a_tokenizer_and_no_shards(tiny_artifact, data, tmp_path):
    _export(tiny_artifact, tmp_path / "rec")
    bogus = tmp_path / "bogus.model"
    bogus.write_bytes(b"not a sentencepiece model")
    assert "not a SentencePiece model" in _one_error_line(run_record(tmp_path / "rec", data[0], bogus, max_tokens=64))
    shard = tmp_path / "short.bin"
    shard.write_bytes(b"\x00" * 100)
    assert "not a token shard" in _one_error_line(run_record(tmp_path / "rec", shard, data[1], max_tokens=64))


def test_export_cli_writes_the_layout(tiny_artifact, tmp_path, capsys):
    out = tmp_path / "rec"
    assert golfpack_main(["export", str(tiny_artifact), "-o", str(out), "--ttt", "lora", "--json"]) == 0
    sub = json.loads(capsys.readouterr().out)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "model.gp", "submission.json", "train_gpt.py"]
    assert sub["bytes_code"] == (out / "train_gpt.py").stat().st_size
    assert sub["bytes_model"] == (out / "model.gp").stat().st_size
    assert sub["bytes_total"] == sub["bytes_code"] + sub["bytes_model"]
    assert golfpack_main(["export", str(tiny_artifact), "-o", str(out)]) == 2  # not empty: refused
    assert golfpack_main(["export", str(tiny_artifact), "-o", str(tmp_path / "x"), "--ttt-config", "x.json"]) == 2


def test_train_script_is_kept_and_counted(tiny_artifact, data, tmp_path):
    user = b"print('training would run here')\n"
    script, _ = _export(tiny_artifact, tmp_path / "rec", train_script=user)
    assert script.startswith(user)
    r = run_record(tmp_path / "rec", *data, max_tokens=256)
    assert r.returncode == 0 and r.stdout.startswith("training would run here"), r.stderr
