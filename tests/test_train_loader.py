"""Training batches: contiguous, every token a target once per pass, independent of world size."""
import numpy as np
import pytest
import torch

from golfpack.data.shards import write_shard
from golfpack.errors import GolfpackError
from golfpack.train.loader import DistributedBatches, TokenStream


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def shards(tmp_path):
    # three shards (one empty) whose concatenation is 0..999 (mod 2^16 not needed)
    write_shard(tmp_path / "d_0.bin", np.arange(0, 300))
    write_shard(tmp_path / "d_1.bin", np.arange(300, 300))
    write_shard(tmp_path / "d_2.bin", np.arange(300, 1000))
    return str(tmp_path / "d_*.bin")


def test_stream_wraps_across_files(shards):
    s = TokenStream(shards)
    assert s.total == 1000
    np.testing.assert_array_equal(s.window(5, 4), [0, 1, 2, 3, 4])
    s.skip(290)
    np.testing.assert_array_equal(s.window(12, 12), np.arange(294, 306))
    s.skip(1000 - 306 - 3)
    np.testing.assert_array_equal(s.window(6, 6), [997, 998, 999, 0, 1, 2])


def test_batches_are_contiguous_and_targets_cover_stream(shards):
    b = DistributedBatches(shards, batch_tokens=64, seq_len=16)
    ys = []
    for step in range(3):
        (x, y), = b.next()
        assert x.shape == (4, 16) and x.dtype == torch.int64
        flat_x, flat_y = x.reshape(-1).numpy(), y.reshape(-1).numpy()
        np.testing.assert_array_equal(flat_x, np.arange(64 * step, 64 * step + 64))
        np.testing.assert_array_equal(flat_y, flat_x + 1)
        ys.append(flat_y)
    np.testing.assert_array_equal(np.concatenate(ys), np.arange(1, 193))  # each token a target once


@pytest.mark.parametrize("world,accum", [(2, 1), (4, 1), (2, 2), (1, 4)])
def test_rank_slices_reassemble_the_single_process_batch(shards, world, accum):
    single = DistributedBatches(shards, batch_tokens=128, seq_len=8)
    ranks = [DistributedBatches(shards, batch_tokens=128, seq_len=8, rank=r, world_size=world, grad_accum=accum)
             for r in range(world)]
    for _ in range(10):  # crosses the end of the data: wraps identically
        (x1, y1), = single.next()
        parts = [mb for rk in ranks for mb in rk.next()]
        assert len(parts) == world * accum
        torch.testing.assert_close(torch.cat([p[0] for p in parts]), x1)
        torch.testing.assert_close(torch.cat([p[1] for p in parts]), y1)


def test_seed_offset_is_deterministic_and_global_rng_untouched(shards):
    torch.manual_seed(123)
    np.random.seed(7)
    state_t, state_np = torch.get_rng_state(), np.random.get_state()[1].copy()
    a = DistributedBatches(shards, batch_tokens=32, seq_len=8, seed=5).next()[0][0]
    b = DistributedBatches(shards, batch_tokens=32, seq_len=8, seed=5).next()[0][0]
    c = DistributedBatches(shards, batch_tokens=32, seq_len=8, seed=6).next()[0][0]
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state_t) and (np.random.get_state()[1] == state_np).all()


def test_bad_batch_shapes(shards):
    with pytest.raises(GolfpackError, match="multiple of seq_len"):
        DistributedBatches(shards, batch_tokens=100, seq_len=16)
    with pytest.raises(GolfpackError, match="split evenly"):
        DistributedBatches(shards, batch_tokens=48, seq_len=16, world_size=2)
