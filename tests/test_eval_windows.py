"""Coverage rules of golfpack.evaluate.windows, checked by counting scored targets."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from golfpack.errors import GolfpackError
from golfpack.evaluate.windows import (
    Segments,
    document_spans,
    plan_batches,
    plan_segments,
    sliding_segments,
)

from eval_standin import BOS, doc_stream


def counts(segs: Segments, n_tokens: int) -> np.ndarray:
    """How many times each stream index is scored as a target (index 0 never is)."""
    return np.bincount(segs.scored_targets(), minlength=n_tokens)


def check_rows_in_stream(segs: Segments, n_tokens: int, seq_len: int) -> None:
    assert np.all(segs.length >= 1) and np.all(segs.length <= seq_len)
    assert np.all(segs.start >= 0)
    assert np.all(segs.start + segs.length <= n_tokens - 1)  # last target exists
    assert np.all((0 <= segs.score_lo) & (segs.score_lo < segs.length))


@given(n=st.integers(2, 700), L=st.integers(1, 96), data=st.data())
def test_exact_once_scores_every_target_once(n, L, data):
    S = data.draw(st.integers(1, L))
    segs = plan_segments(np.zeros(n, np.uint16), L, stride=S, variant="exact_once")
    check_rows_in_stream(segs, n, L)
    c = counts(segs, n)
    assert c[0] == 0 and np.all(c[1:] == 1)
    # Every scored target keeps at least L-S tokens of context (or all there is).
    pos = np.concatenate([np.arange(lo, ln) for lo, ln in zip(segs.score_lo, segs.length)])
    tgt = segs.scored_targets()
    assert np.all(pos + 1 >= np.minimum(tgt, L - S + 1))
    # Starts are multiples of S and every later window but the last is full.
    assert np.all(segs.start % S == 0)
    assert np.all(segs.length[:-1] == np.minimum(L, n - 1 - segs.start[:-1]))


def script_0319(T: int, L: int, S: int) -> np.ndarray:
    """The 03-19 scripts' loop, literally: every start below T, last min(S, wlen) scored."""
    out = []
    for ws in range(0, T, S):
        wlen = min(ws + L, T) - ws
        s = 0 if ws == 0 else max(wlen - S, 0)
        out.extend(range(ws + 1 + s, ws + wlen + 1))
    return np.bincount(np.array(out, dtype=np.int64), minlength=T + 1)


@given(n=st.integers(2, 700), L=st.integers(1, 96), data=st.data())
def test_rescore_tail_counts(n, L, data):
    S = data.draw(st.integers(1, L))
    T = n - 1
    segs = plan_segments(np.zeros(n, np.uint16), L, stride=S, variant="rescore_tail")
    check_rows_in_stream(segs, n, L)
    c = counts(segs, n)
    assert np.array_equal(c, script_0319(T, L, S))
    # Everything before the last S targets is scored exactly once; the tail at least once,
    # and the final target once per window that reaches the stream end.
    assert np.all(c[1 : max(T - S + 1, 1)] == 1)
    assert np.all(c[max(T - S + 1, 1) :] >= 1)
    assert c[T] == int(np.sum(segs.start + segs.length == T))
    assert len(segs) == -(-T // S)


def test_rescore_tail_rescoring_at_1024_64():
    # The field guide's figure: the final targets are scored 16 times at L=1024, S=64.
    T = 10_000
    c = counts(plan_segments(np.zeros(T + 1, np.uint16), 1024, stride=64, variant="rescore_tail"), T + 1)
    assert c[T] == 16 and c[1:T - 64 + 1].max() == 1


def test_plain_truncates():
    segs = plan_segments(np.zeros(1000, np.uint16), 100)
    c = counts(segs, 1000)
    assert len(segs) == 9 and np.all(c[1:901] == 1) and c[901:].sum() == 0


@given(n_docs=st.integers(1, 12), lead=st.integers(0, 5), L=st.integers(1, 40), seed=st.integers(0, 99),
       stride=st.one_of(st.none(), st.integers(1, 40)))
def test_doc_aware_tiles_targets_and_never_crosses_a_bos(n_docs, lead, L, seed, stride):
    stride = None if stride is None else min(stride, L)
    tok = doc_stream(n_docs, seed, lead=lead)
    n = tok.size
    segs = plan_segments(tok, L, stride=stride, doc_aware=True)
    check_rows_in_stream(segs, n, L)
    c = counts(segs, n)
    assert c[0] == 0 and np.all(c[1:] == 1)
    for s, ln in zip(segs.start, segs.length):
        window = tok[s : s + ln]
        assert not np.any(window[1:] == BOS)  # a BOS can only open a row, never sit inside one
    # Documents: each starts at a BOS (or at 0 for the lead) and ends on the next BOS or the end.
    starts, nt = document_spans(tok, BOS)
    assert starts[0] == 0 and len(starts) == n_docs + (lead > 0)
    ends = starts + nt
    assert np.all(tok[ends[:-1]] == BOS) and ends[-1] == n - 1


def test_doc_aware_hard_cut_and_sliding_inside_a_document():
    tok = np.array([BOS] + list(range(4, 4 + 10)) + [BOS, 5, 6], np.uint16)  # docs of 11 and 2 targets
    hard = plan_segments(tok, 4, doc_aware=True)
    assert hard.start.tolist() == [0, 4, 8, 11] and hard.length.tolist() == [4, 4, 3, 2]
    assert hard.score_lo.tolist() == [0, 0, 0, 0]
    slid = plan_segments(tok, 4, stride=2, doc_aware=True)
    # doc 1 (T=11): windows at 0, 2, 4, 6 (6+4-2 = 8 < 11), 8 (8+2 = 10 < 11); doc 2 at 11.
    assert slid.start.tolist() == [0, 2, 4, 6, 8, 11]
    assert slid.score_lo.tolist() == [0, 2, 2, 2, 2, 0]
    assert slid.length.tolist() == [4, 4, 4, 4, 3, 2]


def test_a_bos_as_last_token_is_only_a_target():
    tok = np.array([BOS, 7, 8, BOS], np.uint16)
    starts, nt = document_spans(tok, BOS)
    assert starts.tolist() == [0] and nt.tolist() == [3]


@given(n=st.integers(2, 400), m=st.integers(1, 400), L=st.integers(1, 50), seed=st.integers(0, 50))
def test_max_tokens_cut_gives_the_same_targets_in_every_mode(n, m, L, seed):
    tok = doc_stream(30, seed)[:n]
    n = tok.size
    cut = tok[: m + 1]
    m_eff = cut.size - 1
    want = np.arange(1, m_eff + 1)
    for kw in (dict(stride=max(1, L // 3)), dict(doc_aware=True), dict(doc_aware=True, stride=max(1, L // 2))):
        assert np.array_equal(np.sort(plan_segments(cut, L, **kw).scored_targets()), want), kw
    plain = plan_segments(cut, L).scored_targets()
    assert np.array_equal(plain, np.arange(1, (m_eff // L) * L + 1))


def test_batches_cover_every_segment_once_within_budget():
    tok = doc_stream(50, 3, max_doc=90)
    segs = plan_segments(tok, 32, doc_aware=True)
    batches = plan_batches(segs, 4 * 32)
    allrows = np.sort(np.concatenate(batches))
    assert np.array_equal(allrows, np.arange(len(segs)))
    for b in batches:
        assert len(b) * segs.length[b].max() <= 4 * 32


def test_bad_arguments():
    tok = np.zeros(10, np.uint16)
    with pytest.raises(GolfpackError, match="stride"):
        plan_segments(tok, 8, stride=9)
    with pytest.raises(GolfpackError, match="stride"):
        plan_segments(tok, 8, stride=0)
    with pytest.raises(GolfpackError, match="seq_len"):
        plan_segments(tok, 0)
    with pytest.raises(GolfpackError, match="variant"):
        sliding_segments(9, 8, 4, variant="twice")
