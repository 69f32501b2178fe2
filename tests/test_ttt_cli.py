"""`golfpack eval --ttt`: the CLI runs evaluate_ttt with the config file and geometry flags."""
import json

import pytest

from golfpack.cli import main
from golfpack.data.bytes import build_byte_tables
from golfpack.data.shards import write_shard
from golfpack.evaluate.ttt import TTTConfig, evaluate_ttt

from test_eval_cli import save_tiny, stream


@pytest.fixture
def setup(tmp_path, sp1024_model, one_torch_thread):
    ck = tmp_path / "tiny.pt"
    model = save_tiny(ck)
    shard = tmp_path / "val.bin"
    tok = stream(n_docs=6)
    write_shard(shard, tok)
    return ck, shard, sp1024_model, model, tok


def test_cli_ttt_matches_the_library(setup, tmp_path, capsys):
    ck, shard, sp, model, tok = setup
    cfg_path = tmp_path / "ttt.json"
    cfg_path.write_text(json.dumps({"rank": 4, "lr": 0.02, "doc_batch": 3}))
    rc = main(["eval", str(ck), "--val", str(shard), "--tokenizer", str(sp), "--seq-len", "32", "--stride", "16",
               "--ttt", "lora", "--ttt-config", str(cfg_path), "--json", "--device", "cpu", "--progress"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    d = json.loads(out)
    assert "TTT lora" in err  # the progress display
    cfg = TTTConfig.for_method("lora", {"rank": 4, "lr": 0.02, "doc_batch": 3, "context": 32, "chunk": 16})
    r = evaluate_ttt(model, tok, build_byte_tables(sp, 1024), cfg)
    assert d["val_bpb"] == pytest.approx(r.val_bpb, rel=1e-6)
    assert (d["tokens"], d["bytes"], d["mode"]) == (r.tokens, r.bytes, "ttt_lora")
    assert d["config"]["rank"] == 4 and d["seq_len"] == 32 and d["stride"] == 16


@pytest.mark.parametrize("extra, msg", [
    (["--ttt", "lora", "--stride", "10"], "multiple"),
    (["--ttt-config", "x.json"], "needs --ttt"),
    (["--ttt", "lora", "--ttt-config", "missing.json"], "not found"),
    (["--ttt", "sgd", "--sliding-variant", "rescore_tail"], "exactly once"),
])
def test_cli_ttt_errors_are_one_line(setup, capsys, extra, msg):
    ck, shard, sp, _, _ = setup
    rc = main(["eval", str(ck), "--val", str(shard), "--tokenizer", str(sp), "--seq-len", "32"] + extra)
    _, err = capsys.readouterr()
    assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1, err


def test_cli_bad_ttt_json_is_one_line(setup, tmp_path, capsys):
    ck, shard, sp, _, _ = setup
    bad = tmp_path / "bad.json"
    bad.write_text('{"rank": "eight"}')
    rc = main(["eval", str(ck), "--val", str(shard), "--tokenizer", str(sp), "--ttt", "lora", "--ttt-config", str(bad)])
    _, err = capsys.readouterr()
    assert rc == 2 and "rank" in err and str(bad) in err
