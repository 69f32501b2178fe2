"""golfpack.evaluate.evaluate against brute-force references on a tiny stand-in model."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from golfpack.data.bytes import count_bytes
from golfpack.errors import GolfpackError
from golfpack.evaluate import evaluate
from golfpack.evaluate.windows import document_spans

from eval_standin import BOS, TinyLM, TinyLMLogitsOnly, doc_stream, tiny_tables

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TABLES = tiny_tables()
MODEL = TinyLM(seed=0).eval()


def ce_sum(model, piece: np.ndarray) -> tuple[float, int]:
    """Loss sum (float64) and target count of one standalone row: input piece[:-1], targets piece[1:]."""
    x = torch.as_tensor(piece[:-1].astype(np.int64))[None]
    y = torch.as_tensor(piece[1:].astype(np.int64))
    with torch.no_grad():
        logits = model(x)[0].float()
    ce = F.cross_entropy(logits, y, reduction="none").double()
    return float(ce.sum()), int(y.numel())


def reference(loss_sum: float, toks: int, nbytes: int) -> tuple[float, float]:
    loss = loss_sum / toks
    return loss, loss / math.log(2) * toks / nbytes


def test_plain_matches_a_direct_computation():
    tok = doc_stream(40, seed=1)
    L = 32
    n_win = (tok.size - 1) // L
    total = 0.0
    for w in range(n_win):
        total += ce_sum(MODEL, tok[w * L : w * L + L + 1])[0]
    cut = tok[: n_win * L + 1]
    nbytes = count_bytes(cut[:-1], cut[1:], TABLES)
    loss, bpb = reference(total, n_win * L, nbytes)
    r = evaluate(MODEL, tok, TABLES, seq_len=L, batch=3)
    assert r.tokens == n_win * L and r.bytes == nbytes and r.segments == n_win
    assert r.val_loss == pytest.approx(loss, rel=1e-6)
    assert r.val_bpb == pytest.approx(bpb, rel=1e-6)
    assert r.mode == "plain" and r.autocast == "fp32"


@pytest.mark.parametrize("variant", ["exact_once", "rescore_tail"])
def test_sliding_matches_brute_force_per_window(variant):
    tok = doc_stream(25, seed=2)
    L, S = 24, 8
    T = tok.size - 1
    total, toks, nbytes = 0.0, 0, 0
    for ws in range(0, T, S):
        if variant == "exact_once" and ws > 0 and not ws + L - S < T:
            continue
        wlen = min(L, T - ws)
        piece = tok[ws : ws + wlen + 1]
        x = torch.as_tensor(piece[:-1].astype(np.int64))[None]
        with torch.no_grad():
            ce = F.cross_entropy(MODEL(x)[0], torch.as_tensor(piece[1:].astype(np.int64)), reduction="none")
        s = 0 if ws == 0 else (L - S if variant == "exact_once" else max(wlen - S, 0))
        total += float(ce[s:].double().sum())
        toks += wlen - s
        nbytes += count_bytes(piece[s:-1], piece[s + 1 :], TABLES)
    loss, bpb = reference(total, toks, nbytes)
    for m in (MODEL, TinyLMLogitsOnly(MODEL)):  # hidden-slicing path and logits-slicing path
        r = evaluate(m, tok, TABLES, seq_len=L, stride=S, variant=variant, batch=5)
        assert (r.tokens, r.bytes) == (toks, nbytes)
        assert r.val_loss == pytest.approx(loss, rel=1e-6)
        assert r.val_bpb == pytest.approx(bpb, rel=1e-6)
    if variant == "exact_once":
        assert toks == T and nbytes == count_bytes(tok[:-1], tok[1:], TABLES)
    else:
        assert toks > T


@pytest.mark.parametrize("stride", [None, 5])
@pytest.mark.parametrize("lead", [0, 3])
def test_doc_aware_equals_each_document_on_its_own(stride, lead):
    tok = doc_stream(30, seed=3, lead=lead, max_doc=45)
    L = 16
    starts, counts = document_spans(tok, BOS)
    total = 0.0
    for s, c in zip(starts, counts):
        doc = tok[s : s + c + 1]  # BOS .. next BOS (its final target)
        if stride is None:
            for p in range(0, c, L):
                total += ce_sum(MODEL, doc[p : p + L + 1])[0]
        else:
            # the document alone, sliding exactly once: the same as a non-doc-aware run on it
            total += evaluate(MODEL, doc, TABLES, seq_len=L, stride=stride).val_loss * c
    nbytes = count_bytes(tok[:-1], tok[1:], TABLES)
    loss, bpb = reference(total, tok.size - 1, nbytes)
    r = evaluate(MODEL, tok, TABLES, seq_len=L, stride=stride, doc_aware=True, batch=4)
    assert (r.tokens, r.bytes) == (tok.size - 1, nbytes)
    assert r.val_loss == pytest.approx(loss, rel=1e-6)
    assert r.val_bpb == pytest.approx(bpb, rel=1e-6)
    assert r.mode == ("doc" if stride is None else "doc_sliding")


def test_doc_aware_differs_from_cross_document_attention():
    # Guard against the test above passing trivially: crossing documents changes the loss.
    tok = doc_stream(30, seed=4, max_doc=10)
    a = evaluate(MODEL, tok, TABLES, seq_len=64, doc_aware=True)
    b = evaluate(MODEL, tok, TABLES, seq_len=64, stride=64)
    assert a.tokens == b.tokens and a.bytes == b.bytes
    assert abs(a.val_loss - b.val_loss) > 1e-4


def test_batch_size_does_not_change_the_result():
    tok = doc_stream(30, seed=5)
    rs = [evaluate(MODEL, tok, TABLES, seq_len=16, stride=4, batch=b) for b in (1, 3, 64)]
    for r in rs[1:]:
        assert (r.tokens, r.bytes) == (rs[0].tokens, rs[0].bytes)
        assert r.val_loss == pytest.approx(rs[0].val_loss, rel=1e-9)


@settings(max_examples=40)
@given(seed=st.integers(0, 1000), lead=st.integers(0, 4), L=st.integers(2, 20))
def test_bytes_use_the_previous_token_at_window_starts(seed, lead, L):
    # Dense BOS and space pieces make the space byte at a row start depend on the token
    # just before the row; every mode that scores all targets must count the whole stream.
    tok = doc_stream(15, seed=seed, lead=lead, max_doc=6)
    want = count_bytes(tok[:-1], tok[1:], TABLES)
    for kw in (dict(stride=max(1, L // 2)), dict(stride=L), dict(doc_aware=True)):
        r = evaluate(MODEL, tok, TABLES, seq_len=L, **kw)
        assert r.bytes == want and r.tokens == tok.size - 1, kw
    n_win = (tok.size - 1) // L
    if n_win:
        cut = tok[: n_win * L + 1]
        assert evaluate(MODEL, tok, TABLES, seq_len=L).bytes == count_bytes(cut[:-1], cut[1:], TABLES)


def test_max_tokens_scores_the_same_targets_in_every_mode():
    tok = doc_stream(60, seed=6)
    m, L = 160, 32  # m a multiple of L, so plain's truncation keeps all m targets too
    kws = [dict(), dict(stride=8), dict(stride=8, variant="rescore_tail"), dict(doc_aware=True),
           dict(doc_aware=True, stride=8)]
    rs = [evaluate(MODEL, tok, TABLES, seq_len=L, max_tokens=m, **kw) for kw in kws]
    cut = tok[: m + 1]
    want = count_bytes(cut[:-1], cut[1:], TABLES)
    for kw, r in zip(kws, rs):
        if kw.get("variant") == "rescore_tail":
            assert r.tokens > m  # its tail is counted more than once, by definition
            continue
        assert (r.tokens, r.bytes) == (m, want), kw
    # plain with m not a multiple of L scores floor(m/L)*L targets
    assert evaluate(MODEL, tok, TABLES, seq_len=L, max_tokens=m + 7).tokens == m


def test_bf16_autocast_runs_and_stays_close():
    tok = doc_stream(20, seed=7)
    a = evaluate(MODEL, tok, TABLES, seq_len=32)
    b = evaluate(MODEL, tok, TABLES, seq_len=32, autocast_dtype=torch.bfloat16)
    assert b.autocast == "bfloat16" and (a.tokens, a.bytes) == (b.tokens, b.bytes)
    assert b.val_loss == pytest.approx(a.val_loss, rel=2e-2)


def test_model_mode_is_restored():
    m = TinyLM(seed=1)
    m.train()
    evaluate(m, doc_stream(5, seed=8), TABLES, seq_len=8)
    assert m.training


def test_errors_are_golfpack_errors():
    tok = doc_stream(5, seed=9)
    with pytest.raises(GolfpackError, match="outside the vocabulary"):
        evaluate(MODEL, np.append(tok, 40).astype(np.uint16), TABLES, seq_len=8)
    with pytest.raises(GolfpackError, match="vocabular"):
        evaluate(TinyLM(vocab_size=48), tok, TABLES, seq_len=8)
    with pytest.raises(GolfpackError, match="fewer than"):
        evaluate(MODEL, tok[:10], TABLES, seq_len=64)
    with pytest.raises(GolfpackError, match="at least 2"):
        evaluate(MODEL, tok[:1], TABLES, seq_len=8, doc_aware=True)
    with pytest.raises(GolfpackError, match="max_tokens"):
        evaluate(MODEL, tok, TABLES, seq_len=8, max_tokens=0)
    with pytest.raises(GolfpackError, match="variant"):
        evaluate(MODEL, tok, TABLES, seq_len=8, stride=4, variant="both")
    with pytest.raises(GolfpackError, match="0 bytes"):
        evaluate(MODEL, np.array([BOS, BOS, BOS], np.uint16), TABLES, seq_len=2)


def test_a_model_that_does_not_return_logits_is_reported():
    class Pair(torch.nn.Module):
        def forward(self, idx):
            return MODEL(idx), None

    with pytest.raises(GolfpackError, match="expected logits"):
        evaluate(Pair(), doc_stream(5, seed=10), TABLES, seq_len=8, stride=4)
