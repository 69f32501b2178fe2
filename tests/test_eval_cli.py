"""`golfpack eval` end to end on a tiny GPT checkpoint, the real tokenizer and a synthetic shard."""
import json
import math
import re

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


@pytest.mark.parametrize("extra, flag, msg", [
    (["--seq-len", "0"], "--seq-len", r"must be an integer in \[1, 1048576\], got 0"),
    (["--seq-len", "-5"], "--seq-len", r"got -5"),
    (["--seq-len", str(10**12)], "--seq-len", r"got 1000000000000"),
    (["--seq-len", "nan"], "--seq-len", r"got 'nan'"),
    (["--seq-len", "inf"], "--seq-len", r"got 'inf'"),
    (["--seq-len", "1e3"], "--seq-len", r"got '1e3'"),
    (["--stride", "0"], "--stride", r"got 0"),
    (["--stride", "64"], "--stride", r"--stride 64 exceeds --seq-len 32"),
    (["--stride", str(10**12)], "--stride", r"got 1000000000000"),
    (["--batch", "0"], "--batch", r"must be an integer in \[1, 4096\], got 0"),
    (["--batch", str(10**12)], "--batch", r"got 1000000000000"),
    (["--batch", "4096", "--seq-len", "8192"], "--batch", r"33554432 tokens per forward pass, over the limit 16777216"),
    (["--max-tokens", "0"], "--max-tokens", r"got 0"),
    (["--max-tokens", "-1"], "--max-tokens", r"got -1"),
    (["--max-tokens", str(10**12)], "--max-tokens", r"in \[1, 68719476736\], got 1000000000000"),
    (["--max-tokens", "nan"], "--max-tokens", r"got 'nan'"),
    (["--threads", str(10**12)], "--threads", r"got 1000000000000"),  # torch's int overflowed: a traceback
    (["--threads", "0"], "--threads", r"got 0"),
    (["--bos-id", "-1"], "--bos-id", r"got -1"),
    (["--bos-id", "1024"], "--bos-id", r"--bos-id 1024 is not a token of the model's 1024-token vocabulary"),
    (["--ttt", "lora", "--seq-len", str(10**12)], "--seq-len", r"got 1000000000000"),
    (["--ttt", "lora", "--stride", "64"], "--stride", r"context 32 \(--seq-len\) must be a multiple of the chunk 64"),
    (["--ttt", "sgd", "--stride", "0"], "--stride", r"got 0"),
])
def test_hostile_numbers_are_one_line_naming_the_flag_before_any_work(setup, capsys, monkeypatch, extra, flag, msg):
    """0, negative, 10^12, NaN, inf and stride > seq: exit 2, one line naming the flag, and (but for
    --bos-id, which needs the model's vocabulary) before the model or the shards are read."""
    import golfpack.data.shards as shards

    ck, shard, sp, _, _ = setup
    if flag != "--bos-id":
        def no_work(*a, **k):
            raise AssertionError("the shards were read before the flags were checked")

        monkeypatch.setattr(shards, "read_shards", no_work)
    argv = ["eval", str(ck), "--val", str(shard), "--tokenizer", str(sp), "--seq-len", "32", "--device", "cpu"]
    try:
        rc = main(argv + extra)
    except SystemExit as e:  # an argparse refusal: golfpack.cli's parser exits with one line
        rc = e.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("golfpack eval: error:") and flag in lines[0], lines[0]
    assert re.search(msg, lines[0]), lines[0]


def test_ttt_config_files_are_bounded_above(tmp_path):
    """The same bounds hold for a TTT config file: each of these ran for ever, allocated without end or
    overflowed torch before (epochs 10^12, rank 10^12, seed 2^64, lr 10^12 gives NaN weights)."""
    from golfpack.errors import GolfpackError
    from golfpack.evaluate.ttt_config import TTTConfig

    for over, msg in [({"epochs": 10**12}, "TTT epochs must be an integer in [1, 1000]"),
                      ({"sgd_epochs": 10**12}, "TTT sgd_epochs"), ({"phases": 10**6}, "TTT phases"),
                      ({"rank": 10**12}, "TTT rank must be an integer in [1, 4096]"),
                      ({"doc_batch": 10**12}, "TTT doc_batch"), ({"sgd_batch": 10**9}, "TTT sgd_batch"),
                      ({"context": 2**40, "chunk": 2**20}, "TTT context must be an integer in [1, 1048576]"),
                      ({"doc_batch": 4096, "context": 8192, "chunk": 128}, "tokens per forward pass"),
                      ({"seed": 2**64}, "TTT seed"), ({"seed": 2**5000}, "a 5001-bit integer"),
                      ({"lr": 1e12}, "TTT lr must be a finite number in [0.0, 10]"), ({"sgd_lr": 1e3}, "TTT sgd_lr"),
                      ({"weight_decay": 1e9}, "weight_decay"), ({"alpha": 1e300}, "TTT alpha"),
                      ({"temperature": 1e-30}, "TTT temperature"), ({"temperature": 1e30}, "TTT temperature"),
                      ({"eps": 10.0}, "TTT eps"), ({"max_doc_len": 10**15}, "TTT max_doc_len"),
                      ({"prefix_docs": 10**15}, "TTT prefix_docs"), ({"sgd_chunk_tokens": 10**15}, "sgd_chunk_tokens")]:
        with pytest.raises(GolfpackError, match=re.escape(msg)):
            TTTConfig.for_method("phased", over)
    # the records' own settings and the limits themselves are accepted
    TTTConfig.for_method("phased", {"epochs": 1000, "rank": 4096, "lr": 10, "temperature": 0.001, "seed": 2**63 - 1})


@pytest.mark.parametrize("argv, flag", [
    (["export", "x.gp", "-o", "rec", "--seq-len", "0"], "--seq-len"),
    (["export", "x.gp", "-o", "rec", "--stride", "inf"], "--stride"),
    (["submit", "x.pt", "-o", "rec", "--budget", "16000000", "--max-tokens", str(10**12)], "--max-tokens"),
    (["submit", "x.pt", "-o", "rec", "--budget", "16000000", "--seq-len", "nan"], "--seq-len"),
    (["check", "rec", "--cap", "-1"], "--cap"),
    (["check", "rec", "--prefix", "0"], "--prefix"),
])
def test_export_submit_and_check_numbers_are_bounded_too(argv, flag, capsys):
    """The record commands take the same numbers; refused while parsing (no file here exists)."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert e.value.code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"golfpack {argv[0]}: error: argument {flag}: must be an integer in [1, "), lines[0]
