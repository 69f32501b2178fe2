"""The packed-rows arena (csrc/py/arena.h, issue 19): the batch decoders' outputs are views into one
allocation per call. Each view must behave like the separate array it replaced: its own bytes
(no overlap), writable, C-contiguous, the right values; the allocation lives while any view (or a
tensor built on one) does and is released with the last; a broken stream is still its own error,
and a corrupt artifact still gives one clear error (and leaks nothing)."""
from __future__ import annotations

import gc
import json
import zlib

import numpy as np
import pytest
import torch

from golfpack import _C
from golfpack.codec.container import parse_artifact
from golfpack.errors import FormatError
from tests.test_rans import laplace_int

SHAPES = [(40, 512, 6), (7, 31, 4), (0, 9, 5), (64, 1536, 8), (3, 100, 7), (1, 40000, 6), (9, 64, 2)]


def _symbols(rng, rows, cols, bits):
    q = laplace_int(rng, rows * cols, 2.0 ** (bits - 2), bits).reshape(rows, cols).astype(np.int8)
    return q, (q.astype(np.int16) + 128).astype(np.uint8).ravel()


def _jobs(coder: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    jobs, want = [], []
    for rows, cols, bits in SHAPES:
        q, u = _symbols(rng, rows, cols, bits)
        stream = _C.rans_x32_encode(u) if coder == "rans_x32" else _C.rans_encode(u, 12, 8)
        jobs.append((stream, rows, cols, bits))
        want.append(_C.qpack_rows(q, bits))
    return jobs, want


DECODERS = {"rans": _C.rans_decode_rows, "rans_x32": _C.rans_x32_decode_rows}


def _live():
    gc.collect()
    return _C.packed_arena_stats()


@pytest.mark.parametrize("coder", sorted(DECODERS))
def test_views_are_independent_writable_arrays_with_the_right_bytes(coder):
    jobs, want = _jobs(coder)
    base_live = _live()[0]
    got = DECODERS[coder](jobs)
    assert _live()[0] == base_live + 1  # one allocation for the whole call
    for g, w in zip(got, want):
        assert isinstance(g, np.ndarray) and g.dtype == np.uint8 and g.shape == w.shape
        assert g.flags.c_contiguous and g.flags.writeable and np.array_equal(g, w)
        assert g.ctypes.data % 64 == 0 or g.size == 0
    spans = sorted((g.ctypes.data, g.ctypes.data + g.nbytes) for g in got if g.size)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # no two views share a byte
    for k, g in enumerate(got):  # writing one view changes no other
        g[...] = 0xA5
        assert all((h == 0xA5).all() for h in got[:k + 1])
        assert all(np.array_equal(h, w) for h, w in zip(got[k + 1:], want[k + 1:]))
    # a second call gets its own arena: the first call's views are untouched by it
    again = DECODERS[coder](jobs)
    assert all(np.array_equal(a, w) for a, w in zip(again, want))
    assert all(g.size == 0 or (g == 0xA5).all() for g in got)


@pytest.mark.parametrize("coder", sorted(DECODERS))
def test_arena_lives_while_any_view_does_and_is_freed_with_the_last(coder):
    jobs, want = _jobs(coder, 1)
    n0, b0 = _live()
    got = DECODERS[coder](jobs)
    n1, b1 = _live()
    assert n1 == n0 + 1 and b1 - b0 >= sum(w.nbytes for w in want)
    keep = torch.from_numpy(got[3])  # a tensor on one view (what load_packed's layers hold)
    del got
    assert _live() == (n1, b1)  # still alive through the tensor
    assert torch.equal(keep, torch.from_numpy(want[3]))
    keep += 0  # still writable memory
    del keep
    assert _live() == (n0, b0)


@pytest.mark.parametrize("coder", sorted(DECODERS))
def test_a_broken_stream_is_its_own_error_and_the_rest_share_the_arena(coder):
    jobs, want = _jobs(coder, 2)
    bad = list(jobs[0])
    bad[0] = bad[0][:-3]
    jobs[0] = tuple(bad)
    n0 = _live()[0]
    got = DECODERS[coder](jobs)
    assert isinstance(got[0], str) and got[0].startswith("rANS stream: ")
    for g, w in zip(got[1:], want[1:]):
        assert np.array_equal(g, w)
    del got, g
    assert _live()[0] == n0


def test_all_failed_or_empty_calls_allocate_nothing():
    n0 = _live()
    assert _C.rans_x32_decode_rows([]) == []
    [msg] = _C.rans_x32_decode_rows([(b"\x00\x01", 4, 4, 6)])
    assert isinstance(msg, str)
    [e] = _C.rans_x32_decode_rows([(_C.rans_x32_encode(np.zeros(0, np.uint8)), 0, 7, 6)])
    assert e.shape == (0, 16) and e.flags.writeable
    assert _live() == n0


@pytest.fixture(scope="module")
def fast_artifact(tmp_path_factory):
    from planner_standin import save_safetensors, tiny_model

    from golfpack.cli import main

    d = tmp_path_factory.mktemp("arena")
    src = save_safetensors(tiny_model(0, model_dim=128, vocab_size=128), d / "tiny.safetensors")
    out = d / "fast.gp"
    assert main(["encode", str(src), "-o", str(out), "--bits", "6", "--method", "rtn", "--calib", "none",
                 "--min-numel", "256", "--quiet", "--jobs", "1", "--fast-decode"]) == 0
    return out


def test_load_packed_layers_hold_views_and_release_them_with_the_model(fast_artifact, one_torch_thread):
    from golfpack.evaluate.packed_model import load_packed

    n0 = _live()
    model = load_packed(fast_artifact)
    assert _live()[0] >= n0[0] + 1
    packed = [m.packed for m in model.modules() if hasattr(m, "packed") and isinstance(m.packed, torch.Tensor)]
    assert packed and len({p.data_ptr() for p in packed}) == len(packed)
    idx = torch.zeros(1, 8, dtype=torch.long)
    with torch.no_grad():
        a = model(idx)
    again = load_packed(fast_artifact, fused=False)  # the per-tensor path: separate arrays
    with torch.no_grad():
        assert torch.equal(a, again(idx))
    del model, packed, again
    assert _live() == n0


def _manifest(data: bytes) -> dict:
    import struct

    import zstandard

    stored = struct.unpack_from("<I", data, 16)[0]
    return json.loads(zstandard.ZstdDecompressor().decompress(data[28:28 + stored]))


def test_corrupt_rans_x32_stream_is_one_clear_error_and_leaks_no_arena(fast_artifact, tmp_path):
    from golfpack.evaluate.packed_model import load_packed
    from tests.test_container import _rebuild

    data = fast_artifact.read_bytes()
    man, art = _manifest(data), parse_artifact(data)
    payload = bytearray(data[art.header_bytes:])
    t = next(d for d in man["tensors"] if d["streams"].get("symbols", {}).get("coder") == "rans_x32")
    s = t["streams"]["symbols"]
    payload[s["offset"] + s["length"] - 5] ^= 0x40  # inside the words; CRC fixed so rANS must catch it
    s["crc32"] = zlib.crc32(payload[s["offset"]:s["offset"] + s["length"]])
    p = tmp_path / "bad.gp"
    p.write_bytes(_rebuild(man, bytes(payload)))
    n0 = _live()
    with pytest.raises(FormatError, match=f"tensor '{t['name']}': symbols stream: rANS stream: .*\\[X"):
        load_packed(p)
    assert _live() == n0


def test_file_bytes_reads_large_files_into_a_huge_page_buffer_that_is_released(tmp_path):
    from golfpack.evaluate.packed_model import _HUGE, _file_bytes

    data = np.random.default_rng(5).integers(0, 256, _HUGE + 12345, dtype=np.uint8).tobytes()
    p = tmp_path / "big.bin"
    p.write_bytes(data)
    n0 = _live()
    buf = _file_bytes(p)
    assert isinstance(buf, memoryview) and len(buf) == len(data) and buf == data
    assert _live()[0] == n0[0] + 1
    del buf
    assert _live() == n0
    small = tmp_path / "small.bin"
    small.write_bytes(data[:1000])
    assert _file_bytes(small) == data[:1000]  # below 2 MiB: a plain read


def test_a_large_artifact_loads_and_keeps_no_read_buffer(tmp_path, one_torch_thread):
    from planner_standin import save_safetensors, tiny_model

    from golfpack.cli import main
    from golfpack.evaluate.packed_model import _HUGE, load_packed

    src = save_safetensors(tiny_model(0, model_dim=512, vocab_size=512), tmp_path / "m.safetensors")
    out = tmp_path / "big.gp"
    assert main(["encode", str(src), "-o", str(out), "--bits", "8", "--method", "rtn", "--calib", "none",
                 "--min-numel", "256", "--quiet", "--jobs", "1", "--coders", "raw,rans"]) == 0
    assert out.stat().st_size > _HUGE
    n0 = _live()
    model = load_packed(out)
    assert _live()[0] == n0[0] + 1  # the packed rows' arena only: the file's buffer is gone
    with torch.no_grad():
        a = model(torch.zeros(1, 8, dtype=torch.long))
    with torch.no_grad():
        assert torch.equal(a, load_packed(out, fused=False)(torch.zeros(1, 8, dtype=torch.long)))
    del model
    assert _live() == n0


def test_a_released_arena_is_reused_by_the_next_call_with_fresh_contents():
    # (arena.h keeps one released mapping for the next call of about its size: the next call's
    # views must hold that call's values, whatever the previous views were overwritten with)
    rng = np.random.default_rng(9)
    big = [_symbols(rng, 512, 1536, 6) for _ in range(3)]  # >= 2 MiB of packed rows: a mapping
    jobs = [(_C.rans_x32_encode(u), 512, 1536, 6) for _, u in big]
    want = [_C.qpack_rows(q, 6) for q, _ in big]
    n0 = _live()
    for _ in range(3):
        got = _C.rans_x32_decode_rows(jobs)
        assert all(np.array_equal(g, w) for g, w in zip(got, want))
        for g in got:
            g[...] = 0x5A
        del g
        del got
        assert _live() == n0
