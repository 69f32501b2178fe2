"""Byte tables: the challenge's bpb byte count, checked against independent counts."""
import lzma
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from golfpack.data.bytes import build_byte_tables, count_bytes, count_stream_bytes, load_sentencepiece
from golfpack.data.shards import read_shard
from golfpack.errors import GolfpackError
from tests.conftest import shared_file


@pytest.fixture(scope="module")
def sp():
    return load_sentencepiece(shared_file("tokenizers/fineweb_1024_bpe.model"))


@pytest.fixture(scope="module")
def tables(sp):
    return build_byte_tables(sp)


def test_c4_plain_eval_bytes_match_readme(c4_val_shard, tables):
    # shared/data/README.md: (883059-1)//512 = 1724 windows, 882,688 targets, 2,199,205 bytes.
    t = read_shard(c4_val_shard)
    L = 512
    n = (t.size - 1) // L * L
    assert n == 882_688
    prev, tgt = t[:n].reshape(-1, L), t[1 : n + 1].reshape(-1, L)
    assert count_bytes(prev, tgt, tables) == 2_199_205
    per = count_bytes(prev, tgt, tables, per_token=True)
    assert per.dtype == np.int64 and per.shape == (1724, L) and int(per.sum()) == 2_199_205


def test_table_classes(sp, tables):
    assert tables.vocab_size == 1024
    for i in (0, 1, 2, 3):  # pad, bos, eos, unk
        assert tables.is_boundary[i] and tables.base_bytes[i] == 0 and not tables.has_leading_space[i]
    for i in range(4, 260):  # byte-fallback pieces
        assert sp.is_byte(i) and tables.base_bytes[i] == 1 and not tables.is_boundary[i]
    assert not tables.is_boundary[260:].any()
    for i in range(260, 1024):
        piece = sp.id_to_piece(i)
        assert tables.has_leading_space[i] == piece.startswith("\u2581")
        assert tables.base_bytes[i] == len(piece.removeprefix("\u2581").encode())


def _piece_bytes(sp, ids) -> bytes:
    """Independent count: the UTF-8 bytes the pieces spell, "▁" as a space, byte pieces as their byte."""
    out = bytearray()
    for i in ids:
        if sp.is_byte(i):
            out.append(int(sp.id_to_piece(i)[3:5], 16))  # "<0xAB>"
        elif not (sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i)):
            out += sp.id_to_piece(i).replace("\u2581", " ").encode()
    return bytes(out)


def _check_doc(sp, tables, text):
    ids = sp.encode(text, out_type=int)
    counted = count_stream_bytes([sp.bos_id(), *ids], tables)
    spelled = _piece_bytes(sp, ids)
    # Rule: the bpb count is the bytes the pieces spell, minus a space at the very
    # start of the document (a "▁" piece right after BOS gets no space byte).
    lead = bool(ids) and sp.id_to_piece(ids[0]).startswith("\u2581")
    assert counted == len(spelled) - lead
    # With sp1024 (nmt_nfkc strips leading whitespace, no dummy prefix) that never
    # happens, and the count is exactly the UTF-8 length of the normalized text.
    assert not lead
    normalized = sp.normalize(text).replace("\u2581", " ")
    assert counted == len(normalized.encode("utf-8")) == len(sp.decode(ids).encode("utf-8"))


def test_count_equals_normalized_text_bytes_on_c4(sp, tables):
    path = shared_file("corpora/c4_sample.jsonl.xz")
    with lzma.open(path, "rt", encoding="utf-8") as f:
        for k, line in enumerate(f):
            if k == 200:
                break
            _check_doc(sp, tables, json.loads(line)["text"])


@given(st.text(max_size=200))
def test_count_equals_normalized_text_bytes_on_any_text(sp, tables, text):
    _check_doc(sp, tables, text)


def test_documents_joined_by_bos_count_independently(sp, tables):
    docs = ["Hello world.", "  Second doc\twith tabs", "caf\u00e9 \U0001F600 end"]
    stream = []
    for d in docs:
        stream += [sp.bos_id(), *sp.encode(d, out_type=int)]
    want = sum(len(sp.normalize(d).replace("\u2581", " ").encode()) for d in docs)
    assert count_stream_bytes(stream, tables) == want


def test_padding_and_errors(sp):
    t = build_byte_tables(sp, vocab_size=1030)
    assert t.vocab_size == 1030 and t.is_boundary[1024:].all() and not t.base_bytes[1024:].any()
    # a space piece after a padded (boundary) id gets no space byte
    space_piece = int(np.flatnonzero(t.has_leading_space)[0])
    assert count_bytes([1027], [space_piece], t) == t.base_bytes[space_piece]
    with pytest.raises(GolfpackError, match="smaller"):
        build_byte_tables(sp, vocab_size=1000)
    with pytest.raises(GolfpackError, match="out of range"):
        count_bytes([1], [1030], t)
    with pytest.raises(GolfpackError, match="shapes differ"):
        count_bytes([1, 2], [3], t)
    with pytest.raises(GolfpackError, match="integers"):
        count_bytes(np.array([1.0]), np.array([2.0]), t)


def test_bad_tokenizer_path(tmp_path):
    with pytest.raises(GolfpackError, match="not found"):
        build_byte_tables(tmp_path / "nope.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(GolfpackError, match="not a SentencePiece model"):
        build_byte_tables(bad)
