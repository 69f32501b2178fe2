"""`golfpack eval` end to end on a tiny GPT checkpoint, the real tokenizer and a synthetic shard."""
import json
import math

import numpy as np
import pytest
import torch

from golfpack.cli import main
from golfpack.data.bytes import build_byte_tables
from golfpack.data.shards import write_shard
from golfpack.evaluate import evaluate
from golfpack.model import GPT, GPTConfig

TINY = dict(vocab_size=1024, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1)


def save_tiny(path, **over):
    torch.manual_seed(0)
    cfg = GPTConfig(**{**TINY, **over})
    model = GPT(cfg)
    with torch.no_grad():  # the zero-init projections would make every layer a no-op
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    torch.save({"config": cfg.to_dict(), "state_dict": model.state_dict()}, path)
    return model


def stream(n_docs=12, seed=0, hi=1024):
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(n_docs):
        parts += [[1], rng.integers(4, hi, int(rng.integers(5, 90)))]
    return np.concatenate(parts).astype(np.uint16)


@pytest.fixture
def setup(tmp_path, sp1024_model):
    ck = tmp_path / "tiny.pt"
    model = save_tiny(ck)
    shard = tmp_path / "val.bin"
    tok = stream()
    write_shard(shard, tok)
    return ck, shard, sp1024_model, model, tok


def run_json(capsys, argv):
    rc = main(argv + ["--json", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out)


@pytest.mark.parametrize("extra,kw", [
    ([], {}),
    (["--stride", "8"], dict(stride=8)),
    (["--stride", "8", "--sliding-variant", "rescore_tail"], dict(stride=8, variant="rescore_tail")),
    (["--doc-aware"], dict(doc_aware=True)),
    (["--doc-aware", "--stride", "16", "--max-tokens", "300"], dict(doc_aware=True, stride=16, max_tokens=300)),
])
def test_cli_matches_the_library(setup, capsys, extra, kw):
    ck, shard, sp, model, tok = setup
    d = run_json(capsys, ["eval", str(ck), "--val", str(shard), "--tokenizer", str(sp), "--seq-len", "32",
                          "--batch", "3"] + extra)
    tables = build_byte_tables(sp, 1024)
    r = evaluate(model, tok, tables, seq_len=32, batch=3, **kw)
    for k in ("val_loss", "val_bpb"):
        assert d[k] == pytest.approx(getattr(r, k), rel=1e-6)
    assert (d["tokens"], d["bytes"]) == (r.tokens, r.bytes)
    assert set(d) >= {"val_loss", "val_bpb", "tokens", "bytes", "seconds", "tokens_per_s", "mode", "seq_len",
                      "stride", "device", "source"}
    assert d["source"] == str(ck) and d["device"] == "cpu" and d["seq_len"] == 32
    assert math.isfinite(d["val_bpb"]) and d["val_bpb"] > 0


def test_cli_human_table(setup, capsys):
    ck, shard, sp, _, _ = setup
    rc = main(["eval", str(ck), "--val", str(shard), "--tokenizer", str(sp), "--seq-len", "32", "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "val_bpb" in out and "tokens" in out and "plain, seq_len 32" in out


def test_cli_errors(setup, tmp_path, capsys):
    ck, shard, sp, _, tok = setup
    base = ["eval", str(ck), "--val", str(shard), "--tokenizer", str(sp), "--seq-len", "32", "--device", "cpu"]

    def err(argv):
        rc = main(argv)
        e = capsys.readouterr().err
        assert rc == 2 and e.startswith("golfpack eval: error:") and e.count("\n") == 1, e
        return e

    assert "not found" in err(["eval", str(tmp_path / "nope.pt")] + base[2:])
    assert "tokenizer" in err(base[:4] + ["--tokenizer", str(tmp_path / "nope.model")] + base[6:])
    assert "nope.bin" in err(base[:2] + ["--val", str(tmp_path / "nope.bin")] + base[4:])
    small = tmp_path / "small.pt"
    save_tiny(small, vocab_size=512)
    assert "512" in err(["eval", str(small)] + base[2:])  # tokenizer has 1024 pieces, model 512
    big = tmp_path / "big.bin"
    write_shard(big, np.append(tok, 2000).astype(np.uint16))
    assert "2000" in err(base[:2] + ["--val", str(big)] + base[4:])
    assert "stride" in err(base + ["--stride", "64"])
    assert "fewer than" in err(base[:-4] + ["--seq-len", "100000"])
