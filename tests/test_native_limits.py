"""golfpack._C under hostile thread counts and sizes (issue 20, item 3).

Before: `threads=10**6` for the batch decoders aborted the process (std::terminate from a
joinable std::thread when creation failed), `qgemm_f32(..., threads=2**31-1)` made the OpenMP
runtime exit the process, and `qrow_stride` wrapped to 0 or a negative stride for K >= 2^60, so
an empty packed array passed the shape check. Now every thread count is clamped to the machine
(csrc/core/common.h clamp_threads), a thread that cannot be created is a RuntimeError, and K is
bounded before any size is computed.

The calls that could kill the interpreter run in a subprocess, so a regression fails one test
with the child's exit status instead of taking pytest down.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from golfpack import _C
from golfpack.codec import rans_rc


def _child(code: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def _v1_rows_jobs(n=6, rows=40, cols=96, bits=6, seed=3):
    rng = np.random.default_rng(seed)
    lim = 1 << (bits - 1)
    jobs, want = [], []
    for _ in range(n):
        s = np.clip(np.rint(rng.laplace(size=(rows, cols)) * 3), -lim, lim - 1).astype(np.int8)
        u = (s.astype(np.int16) + 128).astype(np.uint8).ravel()
        jobs.append((_C.rans_encode(u), rows, cols, bits))
        want.append(_C.qpack_rows(s, bits))
    return jobs, want


def _rc_rows_jobs(n=4, rows=48, cols=128, bits=6, seed=5):
    rng = np.random.default_rng(seed)
    lim = 1 << (bits - 1)
    jobs, want = [], []
    for _ in range(n):
        s = np.clip(np.rint(rng.laplace(size=(rows, cols)) * np.geomspace(0.3, lim / 2, cols)), -lim, lim - 1)
        s = s.astype(np.int8)
        u = (s.astype(np.int16) + 128).astype(np.uint8)
        data = rans_rc.encode(u)
        m, payload = rans_rc.parse(data, u.size)
        jobs.append((payload, u.size, m.cols, m.row_class, m.col_class, m.table_map, m.C, m.freqs(), m.P, m.lanes,
                     bits))
        want.append(_C.qpack_rows(s, bits))
    return jobs, want


@pytest.mark.parametrize("threads", [10**6, 2**31 - 1])
def test_batch_decoders_clamp_huge_thread_counts(threads):
    jobs, want = _v1_rows_jobs()
    for got, w in zip(_C.rans_decode_rows(jobs, threads), want):
        np.testing.assert_array_equal(got, w)
    jobs, want = _rc_rows_jobs()
    for got, w in zip(_C.rans_ctx_decode_rows(jobs, threads), want):
        np.testing.assert_array_equal(got, w)


def test_batch_decoders_still_refuse_thread_counts_below_one():
    jobs, _ = _v1_rows_jobs(n=1)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        _C.rans_decode_rows(jobs, 0)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        _C.rans_decode_rows(jobs, -5)


def test_openmp_kernels_clamp_huge_thread_counts_in_a_child():
    # Large enough that the kernels open a parallel region (flops >= 2e5) on both kernel paths.
    r = _child("""
        import numpy as np
        from golfpack import _C
        rng = np.random.default_rng(0)
        s = rng.integers(-8, 8, size=(96, 256), dtype=np.int8)
        p = _C.qpack_rows(s, 4)
        sc = rng.random(96, dtype=np.float32)
        for M in (1, 64):
            x = rng.standard_normal((M, 256), dtype=np.float32)
            want = _C.qgemm_f32(x, p, sc, 4, 256, threads=1)
            for t in (2**31 - 1, 10**6):
                assert np.array_equal(_C.qgemm_f32(x, p, sc, 4, 256, threads=t), want)
                gy = rng.standard_normal((M, 96), dtype=np.float32)
                assert np.array_equal(_C.qgemm_t_f32(gy, p, sc, 4, 256, threads=t),
                                      _C.qgemm_t_f32(gy, p, sc, 4, 256, threads=1))
        assert np.array_equal(_C.dequant_rows(p, sc, 4, 256, 0, 96, threads=2**31 - 1),
                              _C.dequant_rows(p, sc, 4, 256, 0, 96, threads=1))
        R, B = 64, 32
        W = rng.standard_normal((R, B)); S = np.full((R, B), 0.1); q = np.full(R, 7.0)
        U = np.triu(rng.random((B, B))) + np.eye(B) * B
        a = _C.gptq_block_f64(W.copy(), S, q, U, threads=1)
        b = _C.gptq_block_f64(W.copy(), S, q, U, threads=2**31 - 1)
        assert all(np.array_equal(u, v) for u, v in zip(a, b))
        print("ok")
    """)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stderr[-2000:])


@pytest.mark.parametrize("K", [2**56 + 1, 2**60, 2**62, 2**63 - 1])
def test_qrow_stride_refuses_sizes_that_would_overflow(K):
    for bits in (2, 5, 8):
        with pytest.raises(ValueError, match="exceeds the packed-row limit of 2\\^56"):
            _C.qrow_stride(K, bits)
    empty = np.zeros((0, 0), dtype=np.uint8)
    with pytest.raises(ValueError, match="packed-row limit"):
        _C.qunpack_rows(empty, 8, K)
    with pytest.raises(ValueError, match="packed-row limit"):
        _C.dequant_rows(empty, np.zeros(0, np.float32), 8, K, 0, 0)
    with pytest.raises(ValueError, match="packed-row limit"):
        _C.qgemm_t_f32(np.zeros((1, 0), np.float32), empty, np.zeros(0, np.float32), 8, K)


def test_qrow_stride_at_the_limit_is_exact():
    K = 2**56
    for bits in range(2, 9):
        want = (K * bits + 7) // 8
        want = (want + 15) // 16 * 16
        assert _C.qrow_stride(K, bits) == want > 0
    assert _C.qrow_stride(0, 4) == 0
    with pytest.raises(ValueError, match="K must be >= 0"):
        _C.qrow_stride(-1, 4)


_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
/* After gp_limit_threads(n), at most n more pthread_create calls succeed (n < 0: no limit):
   a system that is out of threads (RLIMIT_NPROC, a pids cgroup), which root cannot be put in. */
static int left = -1;
void gp_limit_threads(int n) { __atomic_store_n(&left, n, __ATOMIC_SEQ_CST); }
int pthread_create(pthread_t* t, const pthread_attr_t* a, void* (*f)(void*), void* arg) {
  static int (*real)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
  if (__atomic_load_n(&left, __ATOMIC_SEQ_CST) >= 0 && __atomic_fetch_sub(&left, 1, __ATOMIC_SEQ_CST) <= 0)
    return EAGAIN;
  if (!real) real = (int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*))dlsym(RTLD_NEXT, "pthread_create");
  return real(t, a, f, arg);
}
"""


@pytest.fixture(scope="module")
def thread_shim(tmp_path_factory):
    """An LD_PRELOAD library whose pthread_create fails once a limit is reached."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs >= 2 CPUs: with one, no thread is ever created")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the pthread_create shim")
    d = tmp_path_factory.mktemp("shim")
    (d / "shim.c").write_text(_SHIM)
    subprocess.run([cc, "-shared", "-fPIC", "-O1", str(d / "shim.c"), "-o", str(d / "shim.so"), "-ldl"], check=True)
    return {"LD_PRELOAD": str(d / "shim.so")}


_PRELUDE = """
    import ctypes, os
    import numpy as np
    from golfpack import _C
    limit = ctypes.CDLL(None).gp_limit_threads
    def v1_jobs(n, rows, cols, bits=6):
        rng = np.random.default_rng(3)
        s = [np.clip(np.rint(rng.laplace(size=(rows, cols)) * 3), -32, 31).astype(np.int8) for _ in range(n)]
        return ([(_C.rans_encode((q.astype(np.int16) + 128).astype(np.uint8).ravel()), rows, cols, bits) for q in s],
                [_C.qpack_rows(q, bits) for q in s])
"""


def test_thread_creation_failure_is_a_runtime_error(thread_shim):
    # No thread can be created: the decoder raises, and works again once threads can be.
    r = _child(_PRELUDE + """
    jobs, _ = v1_jobs(6, 40, 96)
    limit(0)
    try:
        _C.rans_decode_rows(jobs, 2)
    except RuntimeError as e:
        print("RuntimeError:", e)
    limit(-1)
    print("after:", len(_C.rans_decode_rows(jobs, 2)))
    """, env=thread_shim)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("RuntimeError: could not start decode thread 2 of 2: "), r.stdout
    assert lines[1] == "after: 6"


_LIMITED = {
    "batch decoder, threads=10**6": """
    jobs, want = v1_jobs(64, 8, 64)
    limit(os.cpu_count() - 1)
    got = _C.rans_decode_rows(jobs, 10**6)
    assert all(np.array_equal(g, w) for g, w in zip(got, want))
    """,
    "OpenMP qgemm_f32, threads=2**31-1": """
    rng = np.random.default_rng(0)
    s = rng.integers(-8, 8, size=(1024, 256), dtype=np.int8)
    p = _C.qpack_rows(s, 4)
    sc = rng.random(1024, dtype=np.float32)
    x = rng.standard_normal((1024, 256), dtype=np.float32)
    y1 = _C.qgemm_f32(x, p, sc, 4, 256, threads=1)
    limit(os.cpu_count() - 1)
    assert np.array_equal(_C.qgemm_f32(x, p, sc, 4, 256, threads=2**31 - 1), y1)
    """,
}


@pytest.mark.parametrize("case", list(_LIMITED))
def test_huge_thread_counts_on_a_thread_limited_system(thread_shim, case):
    # The machine's threads can be created, no more: the huge counts now run on the machine's
    # threads (before: std::terminate in the batch decoders, libgomp exiting the process).
    r = _child(_PRELUDE + _LIMITED[case] + "\n    print('ok')\n", env=dict(thread_shim, OMP_NUM_THREADS="1"))
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stdout, r.stderr[-2000:])
