"""Tokenizing corpora into shards, the stdlib corpus and tokenizer training."""
import gzip
import json
import lzma

import numpy as np
import pytest

from golfpack.cli import main
from golfpack.data.corpus import corpus_kind_and_stem, iter_documents, stdlib_corpus
from golfpack.data.bytes import load_sentencepiece
from golfpack.data.shards import read_shard
from golfpack.data.tokenize import tokenize_documents
from golfpack.data.tokenizer_train import train_tokenizer
from golfpack.errors import FormatError, GolfpackError
from tests.conftest import shared_file


@pytest.fixture(scope="module")
def small_sp(tmp_path_factory):
    """A 512-piece tokenizer trained on ~300 KB of the stdlib corpus (no shared data needed)."""
    p = tmp_path_factory.mktemp("tok") / "sp.model"
    train_tokenizer(stdlib_corpus(), p, vocab_size=512, max_bytes=300_000)
    return p


DOCS = ["First document.", "Second one\nwith two lines", "", "caf\u00e9 \U0001F600", "last doc here"]


def _expected(sp, docs):
    out = []
    for d in docs:
        out += [sp.bos_id(), *sp.encode(d, out_type=int)]
    return np.array(out, dtype=np.uint16)


def test_c4_sample_reproduces_c4_val_shard_byte_identically(tmp_path, c4_val_shard, sp1024_model):
    corpus = shared_file("corpora/c4_sample.jsonl.xz")
    rc = main(["data", "tokenize", str(corpus), "--tokenizer", str(sp1024_model),
               "--out", str(tmp_path), "--val-docs", "all", "--json"])
    assert rc == 0
    out = tmp_path / "c4_sample_val_sp1024.bin"
    assert out.read_bytes() == c4_val_shard.read_bytes()
    assert not (tmp_path / "c4_sample_train_sp1024.bin").exists()


@pytest.mark.slow
def test_enwiki_split_reproduces_shared_shards(tmp_path, sp1024_model):
    corpus = shared_file("corpora/enwiki.jsonl.xz")
    train, val = shared_file("shards/enwiki_train_sp1024.bin"), shared_file("shards/enwiki_val_sp1024.bin")
    assert main(["data", "tokenize", str(corpus), "--tokenizer", str(sp1024_model),
                 "--out", str(tmp_path), "--val-frac", "0.1"]) == 0
    assert (tmp_path / "enwiki_val_sp1024.bin").read_bytes() == val.read_bytes()
    assert (tmp_path / "enwiki_train_sp1024.bin").read_bytes() == train.read_bytes()


@pytest.mark.parametrize("val_docs", [0, 1, 2, 5, 9, "all"])
def test_split_takes_last_docs_as_val(tmp_path, small_sp, val_docs):
    sp = load_sentencepiece(small_sp)
    res = tokenize_documents(iter(DOCS), sp, tmp_path, "toy", val_docs=val_docs)
    n_val = len(DOCS) if val_docs == "all" else min(val_docs, len(DOCS))
    cut = len(DOCS) - n_val
    for split, docs in (("train", DOCS[:cut]), ("val", DOCS[cut:])):
        path = tmp_path / f"toy_{split}_sp512.bin"
        assert res[split]["docs"] == len(docs)
        if not docs:
            assert res[split]["path"] is None and not path.exists()
            continue
        want = _expected(sp, docs)
        np.testing.assert_array_equal(read_shard(path), want)
        assert res[split]["tokens"] == want.size
        assert res[split]["text_bytes"] == sum(len(d.encode()) for d in docs)


def test_corpus_formats(tmp_path, small_sp):
    sp = load_sentencepiece(small_sp)
    docs = ["alpha beta", "gamma", "delta epsilon zeta"]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"body": d}) + "\n" for d in docs))
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps({"text": d}) + "\n" for d in docs))
    with lzma.open(tmp_path / "c.txt.xz", "wt") as f:
        f.write("\n".join(docs) + "\n\n")
    assert list(iter_documents(tmp_path / "a.jsonl", text_key="body")) == docs
    assert list(iter_documents(tmp_path / "b.jsonl.gz")) == docs
    assert list(iter_documents(tmp_path / "c.txt.xz", max_docs=2)) == docs[:2]
    assert corpus_kind_and_stem("x/c4_sample.jsonl.xz") == ("jsonl", "c4_sample")
    out = tmp_path / "out"
    assert main(["data", "tokenize", str(tmp_path / "b.jsonl.gz"), "--tokenizer", str(small_sp),
                 "--out", str(out), "--max-docs", "2"]) == 0
    np.testing.assert_array_equal(read_shard(out / "b_train_sp512.bin"), _expected(sp, docs[:2]))


def test_corpus_errors(tmp_path, small_sp, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(FormatError, match=r"bad.jsonl:2: invalid JSON"):
        list(iter_documents(bad))
    bad.write_text('{"text": "ok"}\n{"txt": "x"}\n')
    with pytest.raises(FormatError, match=r":2: no 'text' field"):
        list(iter_documents(bad))
    bad.write_text('{"text": 5}\n')
    with pytest.raises(FormatError, match="not a string"):
        list(iter_documents(bad))
    corrupt = tmp_path / "c.jsonl.xz"
    corrupt.write_bytes(b"\xfd7zXZ\x00garbage")
    with pytest.raises(FormatError, match="decompress"):
        list(iter_documents(corrupt))
    with pytest.raises(GolfpackError, match="unknown corpus format"):
        corpus_kind_and_stem("data.csv")
    # through the CLI: one line on stderr, exit 2, no partial shard left behind
    out = tmp_path / "out"
    bad.write_text('{"text": "ok"}\n{oops\n')
    rc = main(["data", "tokenize", str(bad), "--tokenizer", str(small_sp), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "invalid JSON" in err and err.count("\n") == 1
    assert not any(out.iterdir())
    assert main(["data", "tokenize", "--tokenizer", str(small_sp), "--out", str(out)]) == 2
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert main(["data", "tokenize", str(empty), "--tokenizer", str(small_sp), "--out", str(out)]) == 2


def test_stdlib_corpus_is_deterministic_and_capped():
    a = list(stdlib_corpus(max_docs=5))
    assert a == list(stdlib_corpus(max_docs=5)) and len(a) == 5 and all(a)
    capped = list(stdlib_corpus(max_bytes=50_000))
    assert sum(len(d.encode()) for d in capped[:-1]) < 50_000 <= sum(len(d.encode()) for d in capped)


def test_train_tokenizer_cli_is_deterministic_with_challenge_ids(tmp_path):
    args = ["data", "train-tokenizer", "--stdlib", "--vocab", "600", "--max-input-bytes", "200000"]
    assert main(args + ["--out", str(tmp_path / "a.model")]) == 0
    assert main(args + ["--out", str(tmp_path / "b.model")]) == 0
    assert (tmp_path / "a.model").read_bytes() == (tmp_path / "b.model").read_bytes()
    sp = load_sentencepiece(tmp_path / "a.model")
    assert sp.get_piece_size() == 600
    assert (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()) == (0, 1, 2, 3)
    assert all(sp.is_byte(i) for i in range(4, 260))
    text = "def f(x):\n    return x \u00e9\U0001F600"
    assert sp.decode(sp.encode(text)) == sp.normalize(text).replace("\u2581", " ")
    assert main(["data", "train-tokenizer", "--stdlib", "--vocab", "10", "--out", str(tmp_path / "c.model")]) == 2


def test_stdlib_tokenize_cli(tmp_path, small_sp, capsys):
    assert main(["data", "tokenize", "--stdlib", "--max-docs", "3", "--val-docs", "1",
                 "--tokenizer", str(small_sp), "--out", str(tmp_path), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["train"]["docs"] == 2 and res["val"]["docs"] == 1
    t = read_shard(tmp_path / "stdlib_val_sp512.bin")
    assert t.size == res["val"]["tokens"] and int(t[0]) == 1 and int((t == 1).sum()) == 1
    assert main(["data", "inspect", str(tmp_path), "--tokenizer", str(small_sp), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sum(r["docs"] for r in rows) == 3
    val_row = [r for r in rows if r["path"].endswith("stdlib_val_sp512.bin")][0]
    assert val_row["bpb_bytes"] == res["val"]["bpb_bytes"]
