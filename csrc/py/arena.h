// arena.h: one allocation for all the packed-rows outputs of a batch decoder (rans_decode_rows,
// rans_x32_decode_rows, rans_ctx_decode_rows; issue 19). Each output array used to be its own
// numpy allocation: 50-190 arrays of 0.1-1.5 MB per artifact, each first write of each 4 KiB page
// a page fault (~1 us each here, ~4,000-5,000 per load, benchmarks/RESULTS.md issue 19). Here the
// outputs are views into one anonymous mapping, 2 MiB-aligned and advised MADV_HUGEPAGE, so a
// 15 MB load takes ~8 huge-page faults instead. The views do not overlap (each starts on a
// 64-byte boundary), are writable, and share one base object: the mapping is released when the
// last view (or anything built on one, e.g. torch.from_numpy) is gone (to a small cache for
// the next calls, see release()).
//
// Only anonymous memory: the artifact file itself is never mapped (a file truncated during the
// load would SIGBUS instead of giving one clear error).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define GP_ARENA_MMAP 1
#endif

namespace golfpack {
namespace arena {

constexpr size_t kAlign = 64;                  // each view starts on a cache line
constexpr size_t kHuge = size_t(1) << 21;      // 2 MiB: a transparent huge page

// Live arenas and their bytes (golfpack._C.packed_arena_stats(), for the tests).
inline std::atomic<int64_t> g_live{0};
inline std::atomic<int64_t> g_bytes{0};

struct Block {
  void* base = nullptr;  // what to release
  size_t len = 0;
  bool mapped = false;
};

// A few released mappings are kept for the next allocations of about their size (what glibc does
// for freed memory below its mmap threshold): a process that loads artifacts one after another
// (the benchmarks, the tests, an eval over several artifacts) then writes into pages it already
// has instead of zero-filling fresh ones. One load makes one arena per coder family (v1 rans,
// rans_x32, rans_rc) plus the file's buffer, hence kCacheSlots; at most kCacheMax bytes each.
constexpr size_t kCacheMax = size_t(1) << 30;
constexpr int kCacheSlots = 4;
inline std::mutex g_cache_mu;
inline Block* g_cache[kCacheSlots] = {};

inline void unmap(Block* b) {
#ifdef GP_ARENA_MMAP
  if (b->mapped) munmap(b->base, b->len);
  else
#endif
    std::free(b->base);
  delete b;
}

inline void release(Block* b) {
  if (!b) return;
  g_live.fetch_sub(1);
  g_bytes.fetch_sub(int64_t(b->len));
  if (b->mapped && b->len <= kCacheMax) {
    Block* old;
    {
      std::lock_guard<std::mutex> lock(g_cache_mu);
      old = g_cache[kCacheSlots - 1];  // the least recently released goes
      for (int k = kCacheSlots - 1; k > 0; --k) g_cache[k] = g_cache[k - 1];
      g_cache[0] = b;
    }
    if (old) unmap(old);
    return;
  }
  unmap(b);
}

// A cached mapping that fits `want` bytes without wasting more than half of it, else nullptr.
inline Block* from_cache(size_t want) {
  std::lock_guard<std::mutex> lock(g_cache_mu);
  for (int k = 0; k < kCacheSlots; ++k) {
    Block* b = g_cache[k];
    if (b && b->len >= want && b->len / 2 <= want) {
      for (int j = k; j + 1 < kCacheSlots; ++j) g_cache[j] = g_cache[j + 1];
      g_cache[kCacheSlots - 1] = nullptr;
      return b;
    }
  }
  return nullptr;
}

// len bytes (at least; contents undefined); large blocks 2 MiB-aligned and advised for huge pages.
inline Block* allocate(size_t len) {
  Block* b = new Block;
#ifdef GP_ARENA_MMAP
  if (len >= kHuge) {
    const size_t want = (len + kHuge - 1) / kHuge * kHuge;
    if (Block* c = from_cache(want)) {
      delete b;
      g_live.fetch_add(1);
      g_bytes.fetch_add(int64_t(c->len));
      return c;
    }
    void* p = mmap(nullptr, want + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      delete b;
      throw std::bad_alloc();
    }
    // Trim to a 2 MiB-aligned range: only aligned 2 MiB ranges can become huge pages.
    const uintptr_t start = (uintptr_t(p) + kHuge - 1) & ~uintptr_t(kHuge - 1);
    const size_t head = size_t(start - uintptr_t(p));
    if (head) munmap(p, head);
    const size_t tail = want + kHuge - head - want;
    if (tail) munmap(reinterpret_cast<void*>(start + want), tail);
#ifdef MADV_HUGEPAGE
    // advice only: failure is harmless. GOLFPACK_NO_HUGEPAGE=1 leaves 4 KiB pages (to measure).
    static const bool huge = !std::getenv("GOLFPACK_NO_HUGEPAGE");
    if (huge) madvise(reinterpret_cast<void*>(start), want, MADV_HUGEPAGE);
#endif
    b->base = reinterpret_cast<void*>(start);
    b->len = want;
    b->mapped = true;
  }
#endif
  if (!b->base) {
    // below a huge page: malloc's memory, 64-byte aligned (every byte a view exposes is written
    // by its decoder: packed rows and their zeroed padding)
    b->len = (len + kAlign - 1) / kAlign * kAlign;
    b->base = std::aligned_alloc(kAlign, b->len ? b->len : kAlign);
    if (!b->base) {
      delete b;
      throw std::bad_alloc();
    }
  }
  g_live.fetch_add(1);
  g_bytes.fetch_add(int64_t(b->len));
  return b;
}

// shapes[k] = {rows, cols} of output k, or rows < 0 for none (a failed job: None). Returns the
// arrays (uint8 [rows, cols] views into one arena, or None) and sets ptrs[k] to each one's data.
inline std::vector<pybind11::object> arrays(const std::vector<std::pair<int64_t, int64_t>>& shapes,
                                            std::vector<uint8_t*>& ptrs) {
  namespace py = pybind11;
  std::vector<size_t> off(shapes.size(), 0);
  size_t total = 0;
  for (size_t k = 0; k < shapes.size(); ++k) {
    if (shapes[k].first < 0) continue;
    off[k] = total;
    const size_t n = size_t(shapes[k].first) * size_t(shapes[k].second);
    total += (n + kAlign - 1) / kAlign * kAlign;
  }
  std::vector<py::object> out(shapes.size());
  ptrs.assign(shapes.size(), nullptr);
  if (total == 0) {  // nothing to hold: plain (empty) arrays
    for (size_t k = 0; k < shapes.size(); ++k) {
      if (shapes[k].first < 0) {
        out[k] = py::none();
        continue;
      }
      py::array_t<uint8_t> a({py::ssize_t(shapes[k].first), py::ssize_t(shapes[k].second)});
      ptrs[k] = a.mutable_data();
      out[k] = a;
    }
    return out;
  }
  Block* b = allocate(total);
  py::capsule owner(b, [](void* p) { release(static_cast<Block*>(p)); });
  uint8_t* base = static_cast<uint8_t*>(b->base);
  for (size_t k = 0; k < shapes.size(); ++k) {
    if (shapes[k].first < 0) {
      out[k] = py::none();
      continue;
    }
    ptrs[k] = base + off[k];
    out[k] = py::array_t<uint8_t>({py::ssize_t(shapes[k].first), py::ssize_t(shapes[k].second)},
                                  {py::ssize_t(shapes[k].second), py::ssize_t(1)}, ptrs[k], owner);
  }
  return out;
}

// A writable uint8 [n] array in its own block (huge-page advised from 2 MiB): the buffer
// load_packed reads the artifact file into (read, never mapped). Counted in g_live like an arena.
inline pybind11::array_t<uint8_t> buffer(int64_t n) {
  namespace py = pybind11;
  if (n < 0) throw py::value_error("buffer size must be >= 0");
  Block* b = allocate(size_t(n));
  py::capsule owner(b, [](void* p) { release(static_cast<Block*>(p)); });
  return py::array_t<uint8_t>({py::ssize_t(n)}, {py::ssize_t(1)}, static_cast<uint8_t*>(b->base), owner);
}

}  // namespace arena
}  // namespace golfpack
