"""Shard reader/writer: round trips, strict size/magic/version checks, atomic writes."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from golfpack.data.shards import (
    HEADER_BYTES,
    SHARD_MAGIC,
    ShardWriter,
    read_shard,
    read_shards,
    resolve_shards,
    shard_num_tokens,
    write_shard,
)
from golfpack.errors import FormatError, GolfpackError


@given(arrays(np.uint16, st.integers(0, 3000)), st.booleans())
def test_round_trip(tmp_path_factory, tokens, mmap):
    p = tmp_path_factory.mktemp("s") / "a.bin"
    n = write_shard(p, tokens)
    assert n == p.stat().st_size == HEADER_BYTES + 2 * tokens.size
    got = read_shard(p, mmap=mmap)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, tokens)


def test_header_layout_is_challenge_layout(tmp_path):
    p = tmp_path / "a.bin"
    write_shard(p, [1, 2, 65535])
    raw = p.read_bytes()
    hdr = np.frombuffer(raw[:HEADER_BYTES], dtype="<i4")
    assert hdr[0] == 20240520 and hdr[1] == 1 and hdr[2] == 3 and not hdr[3:].any()
    assert raw[HEADER_BYTES:] == bytes([1, 0, 2, 0, 255, 255])


def _shard_bytes(n_tokens, magic=SHARD_MAGIC, version=1, count=None):
    hdr = np.zeros(256, dtype="<i4")
    hdr[0], hdr[1], hdr[2] = magic, version, n_tokens if count is None else count
    return hdr.tobytes() + np.arange(n_tokens, dtype="<u2").tobytes()


@pytest.mark.parametrize("delta", [-2, -1, 1, 2, 1000])
def test_size_mismatch_names_expected_and_actual(tmp_path, delta):
    p = tmp_path / "bad.bin"
    raw = _shard_bytes(10)
    raw = raw[:delta] if delta < 0 else raw + b"\0" * delta
    p.write_bytes(raw)
    with pytest.raises(FormatError) as e:
        read_shard(p)
    msg = str(e.value)
    assert str(HEADER_BYTES + 20) in msg and str(len(raw)) in msg


def test_bad_magic_version_and_short_file(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(_shard_bytes(4, magic=12345))
    with pytest.raises(FormatError, match="magic"):
        read_shard(p)
    p.write_bytes(_shard_bytes(4, version=2))
    with pytest.raises(FormatError, match="version 2"):
        read_shard(p)
    p.write_bytes(b"\x01\x02")
    with pytest.raises(FormatError, match="shorter than"):
        read_shard(p)
    p.write_bytes(_shard_bytes(0, count=-5))
    with pytest.raises(FormatError, match="negative"):
        shard_num_tokens(p)
    with pytest.raises(GolfpackError, match="directory"):
        read_shard(tmp_path)


def test_write_rejects_bad_tokens_and_leaves_existing_file(tmp_path):
    p = tmp_path / "a.bin"
    write_shard(p, [5, 6])
    before = p.read_bytes()
    for bad in ([70000], [-1], np.array([1.5]), np.zeros((2, 2), dtype=np.int32)):
        with pytest.raises(GolfpackError):
            write_shard(p, bad)
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.bin"]  # no temp files left


def test_streaming_writer_matches_write_shard_and_aborts_cleanly(tmp_path):
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 65536, size=k) for k in (0, 7, 1000, 3)]
    with ShardWriter(tmp_path / "s.bin") as w:
        for part in parts:
            w.write(part)
    write_shard(tmp_path / "w.bin", np.concatenate(parts))
    assert (tmp_path / "s.bin").read_bytes() == (tmp_path / "w.bin").read_bytes()
    with pytest.raises(GolfpackError):
        with ShardWriter(tmp_path / "z.bin") as w:
            w.write([1, 2, 3])
            w.write([1 << 16])
    assert not (tmp_path / "z.bin").exists()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["s.bin", "w.bin"]


def test_read_shards_glob_dir_and_list(tmp_path):
    write_shard(tmp_path / "b_001.bin", [3, 4])
    write_shard(tmp_path / "b_000.bin", [1, 2])
    write_shard(tmp_path / "b_002.bin", [])
    want = [1, 2, 3, 4]
    np.testing.assert_array_equal(read_shards(str(tmp_path / "b_*.bin")), want)
    np.testing.assert_array_equal(read_shards(tmp_path), want)
    np.testing.assert_array_equal(read_shards([tmp_path / "b_001.bin", tmp_path / "b_000.bin"]), [3, 4, 1, 2])
    with pytest.raises(GolfpackError, match="no shard matches"):
        resolve_shards(str(tmp_path / "nope_*.bin"))
    with pytest.raises(GolfpackError, match="not found"):
        resolve_shards(tmp_path / "missing.bin")


def test_real_shard_header(c4_val_shard):
    t = read_shard(c4_val_shard)
    assert t.size == 883_059 and int(t[0]) == 1 and int(t.max()) < 1024
    assert int((t == 1).sum()) == 1000 and int((t == 2).sum()) == 0
