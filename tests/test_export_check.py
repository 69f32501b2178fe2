"""golfpack check: an honest export passes; planted validation documents, a TTT that trains before
it scores, and one byte over the cap each fail, naming the cause."""
import json

import numpy as np
import pytest
import torch

from golfpack.cli import main as golfpack_main
from golfpack.export.check import changed_after, check_bytes, check_causal, check_leakage, check_record
from golfpack.export.record import plan_record, write_record
from golfpack.export.script import build_script

from test_export_record import data, tiny_artifact  # noqa: F401  (fixtures)

CHEAT = """            if train:  # trains on the chunk, then scores it: what check must catch
                tm = torch.as_tensor(train_mask, device=dev)
                act = torch.zeros(nb, dtype=torch.bool, device=dev)
                act[bank.rows[tm]] = True
                wv = sc.float()
                loss = ((ce * wv).sum(1) / wv.sum(1).clamp(min=1))[tm].sum()
                for p in o.p:
                    p.grad = None
                loss.backward()
                o.step(act)
                z, ce = fwd(x, y, lo)
            sce = ce
"""


def _record(art, out, patch=None, **kw):
    data_, script, flags, st = plan_record(art.read_bytes(), seq_len=256, stride=64, **kw)
    if patch is not None:
        script = build_script(flags, st, patch=patch)
    write_record(out, data_, script, flags, st)
    return out


def _shard(path, tokens):
    head = np.zeros(256, "<i4")
    head[:3] = (20240520, 1, len(tokens))
    path.write_bytes(head.tobytes() + np.asarray(tokens, "<u2").tobytes())
    return path


def test_honest_lora_record_passes_every_check(tiny_artifact, data, tmp_path):
    from conftest import shared_file
    from golfpack.data.shards import read_shard

    rec = _record(tiny_artifact, tmp_path / "rec", ttt="lora")
    val = _shard(tmp_path / "val.bin", read_shard(data[0])[:20000])
    train = _shard(tmp_path / "train.bin", read_shard(shared_file("shards/enwiki_val_sp1024.bin"))[:50000])
    rows = check_record(rec, val=val, tokenizer=data[1], train=[train], prefix=1024)
    assert [r.status for r in rows] == ["PASS", "PASS", "PASS"], [r.detail for r in rows]
    assert golfpack_main(["check", str(rec), "--val", str(val), "--tokenizer", str(data[1]), "--train", str(train),
                          "--prefix", "512"]) == 0


def test_ttt_that_trains_before_scoring_fails(tiny_artifact, data, tmp_path):
    def cheat(src):
        assert "            sce = ce\n" in src
        return src.replace("            sce = ce\n", CHEAT)

    rec = _record(tiny_artifact, tmp_path / "rec", ttt="lora", patch=cheat)
    row = check_causal(rec, data[0], data[1], prefix=1024)  # the honest twin passes in the test above
    assert not row.ok and "train-before-score" in row.detail


def test_planted_validation_documents_fail(data, tmp_path):
    from golfpack.data.shards import read_shard
    from golfpack.evaluate.windows import document_spans

    val_tok = np.asarray(read_shard(data[0])[:30000])
    val = _shard(tmp_path / "val.bin", val_tok)
    starts, counts = document_spans(val_tok, 1)
    rng = np.random.default_rng(0)
    clean = rng.integers(4, 1000, 40000).astype(np.uint16)
    ok = check_leakage(val, [_shard(tmp_path / "clean.bin", clean)])
    assert ok.ok, ok.detail
    doc = val_tok[starts[3]:starts[3] + counts[3]]  # one whole validation document, planted mid-shard
    dirty = np.concatenate([clean[:20000], doc, clean[20000:]])
    bad = check_leakage(val, [_shard(tmp_path / "clean.bin", clean), _shard(tmp_path / "dirty.bin", dirty)])
    assert not bad.ok and "1 of" in bad.detail and "dirty.bin" in bad.detail
    part = val_tok[starts[5] + 10:starts[5] + 10 + 64]  # one 64-token window of another document
    assert not check_leakage(val, [_shard(tmp_path / "w.bin", np.concatenate([clean, part]))]).ok


def test_one_byte_over_the_cap_fails(tiny_artifact, tmp_path):
    rec = _record(tiny_artifact, tmp_path / "rec")
    total = json.loads((rec / "submission.json").read_text())["bytes_total"]
    assert check_bytes(rec, cap=total).ok
    row = check_bytes(rec, cap=total - 1)
    assert not row.ok and "1 byte(s) over the cap" in row.detail
    assert golfpack_main(["check", str(rec), "--cap", str(total - 1)]) == 1
    with open(rec / "train_gpt.py", "ab") as f:  # a byte added to the code: submission.json no longer agrees
        f.write(b"\n")
    row = check_bytes(rec, cap=total + 10)
    assert not row.ok and "submission.json says bytes_total" in row.detail


def test_changed_after_keeps_documents():
    tok = np.array([1, 5, 6, 7, 1, 8, 9, 1, 4], np.uint16)
    out = changed_after(tok, 4, 1024, 1)
    assert np.array_equal(out[:5], tok[:5]) and np.array_equal(out == 1, tok == 1)
    assert (out[5:][tok[5:] != 1] != tok[5:][tok[5:] != 1]).all()
