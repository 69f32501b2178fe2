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
