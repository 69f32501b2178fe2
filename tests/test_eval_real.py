"""The real 7x384 baseline checkpoint on c4_val (skipped when ../shared is absent).

Reference (shared/data/README.md, three independent fp32 CPU runs): plain eval at
seq 512 scores 882,688 tokens / 2,199,205 bytes, loss 3.363521, bpb 1.947647.
"""
import json
import math

import numpy as np
import pytest
import torch

from golfpack.cli import main
from golfpack.data.bytes import build_byte_tables, count_bytes
from golfpack.data.shards import read_shard
from golfpack.evaluate import evaluate
from golfpack.model import load


def test_prefix_matches_the_models_own_loss(baseline_ptz, sp1024_model, c4_val_shard):
    # An independent path: the model's forward(idx, targets, reduction='none') on plain windows.
    model = load(baseline_ptz)
    tables = build_byte_tables(sp1024_model, model.config.vocab_size)
    tok = np.asarray(read_shard(c4_val_shard)[: 2 * 128 + 1]).astype(np.int64)
    x = torch.as_tensor(tok[:-1]).view(2, 128)
    y = torch.as_tensor(tok[1:]).view(2, 128)
    with torch.no_grad():
        losses = model(x, y, reduction="none").double()
    loss = float(losses.sum()) / y.numel()
    nbytes = count_bytes(tok[:-1], tok[1:], tables)
    r = evaluate(model, read_shard(c4_val_shard), tables, seq_len=128, max_tokens=2 * 128, batch=2)
    assert (r.tokens, r.bytes) == (256, nbytes)
    assert r.val_loss == pytest.approx(loss, rel=1e-6)
    assert r.val_bpb == pytest.approx(loss / math.log(2) * 256 / nbytes, rel=1e-6)


@pytest.mark.slow
def test_full_plain_eval_reproduces_the_reference(baseline_ptz, sp1024_model, c4_val_shard, capsys):
    rc = main(["eval", str(baseline_ptz), "--val", str(c4_val_shard), "--tokenizer", str(sp1024_model),
               "--seq-len", "512", "--json", "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0
    d = json.loads(out)
    assert (d["tokens"], d["bytes"]) == (882_688, 2_199_205)
    assert abs(d["val_loss"] - 3.363521) < 5e-5
    assert abs(d["val_bpb"] - 1.947647) < 5e-4


def test_lossless_artifact_scores_exactly_like_the_checkpoint(tmp_path, baseline_ptz, sp1024_model, c4_val_shard):
    """Issue 4: eval through a lossless golfpack artifact == direct checkpoint eval (here bit-identical,
    on a 4-window prefix; the full-shard comparison is in benchmarks/RESULTS.md)."""
    from golfpack.checkpoint import read_checkpoint
    from golfpack.codec.container import write_artifact
    from golfpack.codec.encode import encode_lossless

    art = tmp_path / "baseline.gp"
    write_artifact(art, encode_lossless(read_checkpoint(baseline_ptz)))
    tables = build_byte_tables(sp1024_model, 1024)
    tokens = read_shard(c4_val_shard)
    direct = evaluate(load(baseline_ptz), tokens, tables, seq_len=512, max_tokens=4 * 512, batch=4)
    packed = evaluate(load(art), tokens, tables, seq_len=512, max_tokens=4 * 512, batch=4)
    assert packed.tokens == direct.tokens == 2048 and packed.bytes == direct.bytes
    assert packed.val_loss == direct.val_loss and packed.val_bpb == direct.val_bpb
