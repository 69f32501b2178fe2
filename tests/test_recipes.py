"""Seed recipes (issue 21): every recipe end to end at tiny scale, full-scale parameter counts,
the seed codec's per-tensor choices, NEFTune / z-loss, and the CLI's errors."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA

NAMES = ("pr596", "pr1683", "pr2163", "pr1123", "pr595")


# ----------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """(tokenizer, train shard, val shard): slices of the shared enwiki sp1024 shards when present,
    else the demo corpus (the standard library's text) tokenized with a tokenizer trained here."""
    from golfpack.data.shards import read_shard, write_shard

    d = tmp_path_factory.mktemp("recipe_data")
    tok = SHARED_DATA / "tokenizers" / "fineweb_1024_bpe.model"
    tr = SHARED_DATA / "shards" / "enwiki_train_sp1024.bin"
    va = SHARED_DATA / "shards" / "enwiki_val_sp1024.bin"
    if tok.is_file() and tr.is_file() and va.is_file():
        write_shard(d / "train.bin", np.asarray(read_shard(tr)[:120_000]))
        write_shard(d / "val.bin", np.asarray(read_shard(va)[:12_000]))
        return str(tok), str(d / "train.bin"), str(d / "val.bin")
    from golfpack.data.corpus import stdlib_corpus
    from golfpack.data.tokenize import tokenize_documents
    from golfpack.data.tokenizer_train import train_tokenizer

    tok = d / "sp.model"
    train_tokenizer(stdlib_corpus(max_bytes=300_000), tok, vocab_size=1024, max_bytes=300_000)
    res = tokenize_documents(stdlib_corpus(max_bytes=600_000), tok, d, "stdlib", val_docs=6)
    return str(tok), res["train"]["path"], res["val"]["path"]


# ----------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_recipe_runs_end_to_end_tiny(name, tiny_data, tmp_path):
    """train -> seed encode -> planner at the seed's bytes -> eval + TTT -> table, in seconds."""
    from golfpack.recipes.runner import RunOptions, run_recipe

    tok, tr, va = tiny_data
    out = tmp_path / name
    n = torch.get_num_threads()
    try:
        r = run_recipe(name, RunOptions(scale="tiny", train=[tr], val=va, tokenizer=tok, out=str(out),
                                        eval_tokens=1024, planner="fast", quiet=True))
    finally:
        torch.set_num_threads(n)
    assert 100_000 <= r["params"] <= 1_000_000, r["params"]  # "a few hundred k"
    assert r["vocab_size"] == 1024  # --tokenizer overrides the seed's (sp8192 for pr2163)
    seed, planner = r["rows"]
    assert seed["encoding"] == "seed recipe" and planner["encoding"] == "golfpack planner"
    assert seed["code_bytes"] == planner["code_bytes"] > 0
    assert planner["budget"] == seed["total_bytes"]  # equal bytes: the seed's total is the budget
    assert planner["total_bytes"] <= seed["total_bytes"]
    for row in (seed, planner):
        assert row["total_bytes"] == row["artifact_bytes"] + row["code_bytes"]
        assert math.isclose(row["bits_per_param"], 8 * row["total_bytes"] / r["params"])
        for k in ("bpb_float", "bpb_quant", "bpb_ttt"):
            assert row[k] is not None and 0 < row[k] < 20, (k, row[k])
    assert r["train"]["steps"] == 20
    assert set(r["stage_seconds"]) >= {"train", "calibrate", "encode_seed", "encode_planner", "eval_float",
                                       "ttt_seed", "ttt_planner"}
    saved = json.loads((out / "results.json").read_text())
    assert saved["rows"][0]["total_bytes"] == seed["total_bytes"]
    md = (out / "results.md").read_text()
    assert "| seed recipe |" in md and "| golfpack planner |" in md


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _recipe_rank(rank, world, port, out):
    import os

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from golfpack.recipes.runner import RunOptions, run_recipe

    r = run_recipe("pr596", RunOptions(scale="tiny", steps=2, out=out, eval_tokens=512, planner="fast",
                                       quiet=True))
    (__import__("pathlib").Path(out) / f"rank{rank}.json").write_text(json.dumps(r))


@pytest.mark.slow
def test_recipe_run_under_two_gloo_ranks(tmp_path):
    """`recipe run` under torchrun (two gloo ranks) on the demo data: rank 0 alone makes the
    tokenizer and shards (two ranks writing the same files raced; a 2-rank run hung), training is
    distributed, both ranks encode the same artifacts and score them the same."""
    import torch.multiprocessing as mp

    out = tmp_path / "run"
    mp.spawn(_recipe_rank, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    r0, r1 = (json.loads((out / f"rank{k}.json").read_text()) for k in (0, 1))
    assert "data" in r0["stage_seconds"] and "data" not in r1["stage_seconds"]
    assert r0["tokenizer"] == r1["tokenizer"] and r0["train_shards"] == r1["train_shards"]
    assert json.loads((out / "ckpt" / "train_log.json").read_text())["world_size"] == 2
    for a, b in zip(r0["rows"], r1["rows"]):
        assert a["total_bytes"] == b["total_bytes"] and a["bpb_quant"] == b["bpb_quant"]
    assert (out / "results.json").is_file()


# ----------------------------------------------------------------------------- full scale


def implied_params(m: dict) -> int:
    """Parameter count of a GPTConfig dict, from the architecture alone (model/gpt.py's tensor list),
    computed independently of the model code."""
    V, L, D, H, KV = m["vocab_size"], m["num_layers"], m["model_dim"], m["num_heads"], m["num_kv_heads"]
    kvd = KV * (D // H)
    hid = int(m.get("mlp_mult", 2.0) * D)
    block = 2 * D * D + 2 * D * kvd + H + 2 * D * hid + 4 * D  # q,o + k,v + q_gain + fc,proj + scales, resid_mix
    if m.get("gated_attention"):
        gin = m.get("attn_gate_dim") or D
        block += H * gin + H
    n = L * block + V * D
    if not m.get("tie_embeddings", True):
        n += V * D
    virt = L
    if m.get("recur_start") is not None and m.get("recur_repeats", 1) > 1:
        virt += (m["recur_end"] - m["recur_start"] + 1) * (m["recur_repeats"] - 1)
    if m.get("unet_skips", True):
        n += (virt // 2) * D
    if m.get("bigram_buckets"):
        bd = m.get("bigram_dim", 128)
        n += m["bigram_buckets"] * bd + (D * bd if bd != D else 0) + 1
    if m.get("smear_gate"):
        n += D
    if m.get("ve_layers"):
        vd = m.get("ve_dim", 128)
        n += V * vd + (vd * kvd if vd != kvd else 0) + 1 + len(m["ve_layers"])
    if m.get("value_residual"):
        n += L - 1
    return n


# The architecture's count at full scale (the seeds state artifact sizes, not parameter counts).
FULL_PARAMS = {"pr596": 26_829_913, "pr1683": 31_728_864, "pr2163": 35_942_096, "pr1123": 26_993_766,
               "pr595": 24_730_705}


@pytest.mark.parametrize("name", NAMES)
def test_full_scale_param_count(name):
    from golfpack import recipes
    from golfpack.model import GPT

    r = recipes.get(name).at_scale("full")
    with torch.device("meta"):  # no allocation: 25-36M parameters would be ~130 MB each
        model = GPT(r.model_config())
    assert model.num_params() == implied_params(r.model) == FULL_PARAMS[name]
    # the seed's stated artifact size over this count is a plausible quantized rate (int4..int6 + coding)
    bpp = 8 * r.seed_artifact_bytes / model.num_params()
    assert 3.0 <= bpp <= 5.5, bpp


def test_tiny_keeps_every_technique_flag():
    from golfpack import recipes

    flags = ("bigram_buckets", "smear_gate", "xsa", "value_residual", "ve_layers", "recur_repeats",
             "parallel_residual_start", "gated_attention", "ln_scale", "activation", "rope_dims")
    for r in recipes.all_recipes():
        t = r.at_scale("tiny")
        for f in flags:
            full_on = bool(r.model.get(f)) and r.model.get(f) not in (1, "relu2")
            assert not full_on or bool(t.model.get(f)), (r.name, f)
        assert t.train["steps"] == 20 and t.codec.bits == r.codec.bits and t.eval.ttt == r.eval.ttt


# ----------------------------------------------------------------------------- seed codec


def _tiny_ck(name, tmp_path, vocab=1024):
    from golfpack import recipes
    from golfpack.checkpoint import read_checkpoint
    from golfpack.train.trainer import build_model, save_checkpoint

    r = recipes.get(name).at_scale("tiny", vocab_size=vocab)
    cfg = r.model_config()
    m = build_model(cfg, 0)
    with torch.no_grad():  # zero-init projections would make every quantizer exact
        for p in m.parameters():
            if p.dim() >= 2:
                p.add_(0.02 * torch.randn_like(p))
    save_checkpoint(tmp_path / name, m, cfg, {})
    return r, read_checkpoint(tmp_path / name)


def test_seed_codec_follows_the_recipe(tmp_path, one_torch_thread):
    from golfpack.codec.container import parse_artifact
    from golfpack.recipes.seed_codec import encode_seed

    r, ck = _tiny_ck("pr596", tmp_path)  # int6 everywhere, 4% pruning, zstd only
    res = encode_seed(ck, r.codec, None, 0)
    art = parse_artifact(res.artifact)
    quant = [t for t in art.tensors.values() if t.is_quantized]
    assert quant and all(t.bits == 6 for t in quant)
    assert "tok_emb.weight" in {n for n, t in art.tensors.items() if t.is_quantized}
    coders = {s.coder for t in art.tensors.values() for s in t.streams.values()}
    assert coders <= {"zstd"}, coders
    rows = {x["name"]: x for x in res.report["tensors"]}
    assert all(abs(rows[t.name]["choice"].get("prune", 0) - 0.04) < 1e-9 for t in quant)
    w = ck.floats["blocks.0.mlp.fc.weight"]
    zeros = float((art.tensors["blocks.0.mlp.fc.weight"].symbols() == 0).mean())
    assert zeros >= 0.04  # at least the pruned fraction is zero

    r, ck = _tiny_ck("pr595", tmp_path)  # MLP int5, attention int6, embeddings fp16
    art = parse_artifact(encode_seed(ck, r.codec, None, 0).artifact)
    assert art.tensors["blocks.1.mlp.fc.weight"].bits == 5 and art.tensors["blocks.1.attn.c_q.weight"].bits == 6
    emb = art.tensors["tok_emb.weight"]
    assert not emb.is_quantized and emb.streams["data"].type.kind == "float16"
    assert not art.tensors["bigram.embed.weight"].is_quantized
    del w


def test_seed_codec_lqer_top3_and_gptq(tmp_path, one_torch_thread):
    from golfpack.codec.calib import calibrate
    from golfpack.codec.container import parse_artifact
    from golfpack.model.load import from_state_dict
    from golfpack.recipes.seed_codec import encode_seed

    r, ck = _tiny_ck("pr2163", tmp_path)
    seqs_src = torch.randint(0, 1024, (4000,), generator=torch.Generator().manual_seed(0)).numpy().astype(np.uint16)
    from golfpack.data.shards import write_shard

    write_shard(tmp_path / "cal.bin", seqs_src)
    cal = calibrate(from_state_dict(ck.state_dict(), ck.config), shard=tmp_path / "cal.bin", n_seqs=4, seq_len=64)
    res = encode_seed(ck, r.codec, cal, 0)
    art = parse_artifact(res.artifact)
    low = [n for n, t in art.tensors.items() if t.is_quantized and t.rank]
    assert len(low) == 3 and all(art.tensors[n].rank == 4 for n in low)
    rows = {x["name"]: x for x in res.report["tensors"]}
    # the three with LQER are those of largest predicted loss increase before it
    assert all(rows[n]["choice"]["method"] == "gptq" for n in low)
    assert art.tensors["tok_emb.weight"].bits == 7
    assert art.tensors["blocks.0.attn.attn_gate.weight"].bits == 8
    assert art.tensors["blocks.0.mlp.fc.weight"].bits == 6
    with pytest.raises(Exception, match="GPTQ"):
        encode_seed(ck, r.codec, None, 0)


# ----------------------------------------------------------------------------- NEFTune, z-loss


def test_neftune_noise_only_in_training_mode():
    from golfpack.model import GPT, GPTConfig
    from golfpack.train.regularizers import attach_neftune

    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=64, num_layers=1, model_dim=32, num_heads=2, num_kv_heads=1))
    x = torch.randint(0, 64, (2, 16))
    clean = m.tok_emb(x).detach()
    h = attach_neftune(m, 5.0, seed=0)
    m.train()
    noisy = m.tok_emb(x).detach()
    bound = 5.0 / math.sqrt(16 * 32)
    diff = (noisy - clean).abs()
    assert float(diff.max()) <= bound + 1e-7 and float(diff.max()) > 0.5 * bound
    m.eval()
    assert torch.equal(m.tok_emb(x), clean)
    h.remove()
    m.train()
    assert torch.equal(m.tok_emb(x), clean)


def test_z_loss_adds_the_squared_log_normalizer():
    import torch.nn.functional as F

    from golfpack.model import GPT, GPTConfig
    from golfpack.train.regularizers import loss_with_z

    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=64, num_layers=1, model_dim=32, num_heads=2, num_kv_heads=1))
    with torch.no_grad():
        m.tok_emb.weight.normal_(0, 1.0)  # logits far from 0: the z term is visibly nonzero
    x, y = torch.randint(0, 64, (2, 16)), torch.randint(0, 64, (2, 16))
    logits = m(x)
    lse = torch.logsumexp(logits.reshape(-1, 64), -1)
    ce = F.cross_entropy(logits.reshape(-1, 64), y.reshape(-1))
    got = loss_with_z(m, x, y, 1e-2)
    assert torch.allclose(got, ce + 1e-2 * lse.pow(2).mean())
    assert float((got - ce).detach()) > 1e-4
    assert torch.allclose(loss_with_z(m, x, y, 0.0), m(x, y))


def test_train_config_validates_regularizers():
    from golfpack.errors import GolfpackError
    from golfpack.train.config import TrainConfig

    with pytest.raises(GolfpackError, match="neftune_alpha"):
        TrainConfig(neftune_alpha=-1.0)
    with pytest.raises(GolfpackError, match="z_loss"):
        TrainConfig(z_loss=-1e-4)


# ----------------------------------------------------------------------------- CLI


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "golfpack", *args], capture_output=True, text=True, timeout=120)


def test_cli_list_show_and_errors(tmp_path):
    p = _cli("recipe", "list")
    assert p.returncode == 0
    for name, pr in zip(NAMES, (596, 1683, 2163, 1123, 595)):
        assert f"{name}" in p.stdout and f"PR {pr}" in p.stdout
    p = _cli("recipe", "show", "pr2163")
    d = json.loads(p.stdout)
    assert d["train"]["neftune_alpha"] == 5.0 and d["train"]["z_loss"] == 1e-4
    assert d["codec"]["lqer_rank"] == 4 and d["eval"]["ttt"] == "phased" and d["differences"]
    for args, msg in [(("recipe", "show", "pr9999"), "unknown recipe"),
                      (("recipe", "run", "nope"), "unknown recipe"),
                      (("recipe", "run", "pr596", "--scale", "huge"), "--scale"),
                      (("recipe", "run", "pr596", "--train", str(tmp_path / "x.bin")), "--train and --val"),
                      (("recipe", "run", "pr596", "--minutes", "-1"), "--minutes"),
                      (("recipe", "run", "pr596", "--checkpoint", str(tmp_path / "nope")), "checkpoint not found")]:
        p = _cli(*args, "--out", str(tmp_path / "o")) if args[1] == "run" else _cli(*args)
        assert p.returncode == 2, (args, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and msg in lines[0] and "Traceback" not in p.stderr, (args, p.stderr)
