"""golfpack demo: option errors and helpers (the full --quick run is tests/test_readme_pipeline.py)."""
import pytest

from golfpack.cli import main as gp_main


@pytest.mark.parametrize("argv,msg", [
    (["--threads", "0"], "--threads"),
    (["--seq-len", "4"], "--seq-len"),
    (["--stride", "999"], "--stride"),
    (["--eval-tokens", "10"], "--eval-tokens"),
    (["--tokenizer", "/nonexistent/sp.model"], "tokenizer not found"),
    (["--data", "/nonexistent/corpus.jsonl"], "not found"),
    (["--checkpoint", "/nonexistent/ckpt"], "--checkpoint needs --tokenizer"),
])
def test_demo_bad_options_are_one_line(tmp_path, capsys, argv, msg):
    if "--data" in argv:  # data is read after the tokenizer: give one so the data error is the first
        argv = argv + ["--tokenizer", str(_tiny_tokenizer(tmp_path))]
    rc = gp_main(["demo", "--out", str(tmp_path / "o"), "--quiet", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1


def test_budget_parsing():
    from golfpack.demo import _budget_bytes
    from golfpack.errors import GolfpackError

    assert _budget_bytes("20%", 1000, "--budget") == 200
    assert _budget_bytes("1.5e3", 1000, "--budget") == 1500
    for bad in ("abc", "-5%", "x%", "0"):
        with pytest.raises(GolfpackError, match="--budget"):
            _budget_bytes(bad, 1000, "--budget")


def test_data_folder_needs_one_train_and_one_val_shard(tmp_path):
    from golfpack.demo import _find_shards
    from golfpack.errors import GolfpackError

    (tmp_path / "a_train.bin").write_bytes(b"")
    with pytest.raises(GolfpackError, match="exactly one"):
        _find_shards(tmp_path)
    (tmp_path / "a_val.bin").write_bytes(b"")
    assert _find_shards(tmp_path) == (tmp_path / "a_train.bin", tmp_path / "a_val.bin")


def _tiny_tokenizer(tmp_path):
    from golfpack.data.corpus import stdlib_corpus
    from golfpack.data.tokenizer_train import train_tokenizer

    p = tmp_path / "sp.model"
    train_tokenizer(stdlib_corpus(max_bytes=300_000), p, vocab_size=400, max_bytes=300_000)
    return p
