// rows_slot.h: the piece consumer and worker loop shared by the decoders that write symbols
// straight into packed rows: v1 rANS (rans_rows.cpp) and rans_x32 (rans_x32_rows.cpp). A worker
// keeps up to kSlots streams in flight; per step it decodes the next piece (kPiece symbols) of each
// with the interleaved round loop (Decoder::run_group) into a small per-stream buffer that stays in
// L1/L2, then for each: hashes the piece for the integrity tags (unless the decoder hashes its own
// output: rans_x32's round loops do), checks the b-bit range when the table allows symbols outside
// it, and packs the finished rows (pack_u_row). A failing stream sets its job's error and the
// others continue.
//
// Job: data/size/rows/cols/bits/out/stride/plan (plan.count)/check_range/error, as rans_rows::Job
// and rans_x32::RowsJob. Decoder: Decoder(plan), run_group(ds, outs, ns, m, errors).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "rans.h"
#include "rans_rows.h"
#include "rans_x32.h"

namespace golfpack {
namespace rows {

constexpr int kSymbolOffset = 128;  // u = s + 128 (coders.RANS_SYMBOL_OFFSET)
constexpr uint64_t kPiece = 16384;  // symbols per decode step: buffer + table stay in L1/L2
static_assert(kPiece % rans_x32::kLanes == 0, "pieces must not split rans_x32 rounds");

// How each decoder's output is hashed: v1 here, piece by piece; rans_x32 in its own round loops.
inline void start_hash(rans::Decoder&) {}
inline void start_hash(rans_x32::Decoder& d) { d.hash_output(); }
inline void hash_piece(rans::Decoder&, rans::SymbolHasher& h, const uint8_t* p, uint64_t n) { h.update(p, n); }
inline void hash_piece(rans_x32::Decoder&, rans::SymbolHasher&, const uint8_t*, uint64_t) {}
inline void finish_decoder(const rans::Decoder& d, const rans::SymbolHasher& h) { d.finish(h.finish()); }
inline void finish_decoder(const rans_x32::Decoder& d, const rans::SymbolHasher&) { d.finish(); }

template <class Job, class Decoder>
struct Slot {
  Job* job = nullptr;
  std::unique_ptr<Decoder> dec;
  rans::SymbolHasher hasher;
  std::vector<uint8_t> buf;  // [carried partial row][new piece]
  uint64_t carry = 0;        // symbols of an unfinished row at the front of buf
  uint64_t decoded = 0;
  uint64_t row = 0;          // next row to pack
  bool out_of_range = false;
  uint8_t lo_ok = 0, hi_ok = 0;  // valid u range

  void start(Job* j) {
    job = j;
    dec.reset(new Decoder(j->plan));
    start_hash(*dec);
    hasher = rans::SymbolHasher();
    buf.assign(size_t(std::min<uint64_t>(kPiece, j->plan.count) + j->cols), 0);
    carry = decoded = row = 0;
    out_of_range = false;
    const int half = 1 << (j->bits - 1);
    lo_ok = uint8_t(kSymbolOffset - half);
    hi_ok = uint8_t(kSymbolOffset + half - 1);
  }

  // After a piece landed at buf[carry, carry + n): hash it, check its range, pack full rows.
  void consume(uint64_t n, bool avx2) {
    Job& j = *job;
    uint8_t* piece = buf.data() + carry;
    hash_piece(*dec, hasher, piece, n);
    if (j.check_range && !out_of_range) {
      uint8_t bad = 0;
      for (uint64_t k = 0; k < n; ++k) bad |= uint8_t(piece[k] < lo_ok || piece[k] > hi_ok);
      out_of_range = bad != 0;
    }
    decoded += n;
    const uint64_t have = carry + n;
    uint64_t k = 0;
    for (; k + j.cols <= have; k += j.cols, ++row)
      pack_u_row(buf.data() + k, j.cols, j.bits, j.out + int64_t(row) * j.stride, j.stride, avx2);
    carry = have - k;
    if (carry) std::memmove(buf.data(), buf.data() + k, size_t(carry));
  }

  // `coder` names the stream in the range error ("rans", "rans_x32").
  void finish(const char* coder) {
    finish_decoder(*dec, hasher);
    if (out_of_range)
      throw std::runtime_error(std::string(coder) + " stream decodes symbols outside the " +
                               std::to_string(job->bits) + "-bit range [S9]");
  }
};

// One worker: keeps up to kSlots jobs decoding together until the shared list is empty.
template <int kSlots, class Job, class Decoder>
void worker(std::vector<Job>& jobs, std::atomic<size_t>& next, const char* coder) {
  const bool avx2 = rans::uses_avx2(rans::resolved_isa());  // same switch as the decoders
  Slot<Job, Decoder> slots[kSlots];
  for (;;) {
    for (auto& s : slots) {
      while (!s.job) {
        const size_t k = next.fetch_add(1);
        if (k >= jobs.size()) break;
        Job& j = jobs[k];
        if (!j.error.empty()) continue;
        try {
          s.start(&j);
          if (j.plan.count == 0) {  // an empty stream: nothing to decode or pack
            s.dec->finish(0);
            s.job = nullptr;
          }
        } catch (const std::exception& e) {
          j.error = e.what();
          s.job = nullptr;
        }
      }
    }
    Decoder* ds[kSlots];
    uint8_t* outs[kSlots];
    uint64_t ns[kSlots];
    Slot<Job, Decoder>* act[kSlots];
    int m = 0;
    for (auto& s : slots) {
      if (!s.job) continue;
      act[m] = &s;
      ds[m] = s.dec.get();
      outs[m] = s.buf.data() + s.carry;
      ns[m] = std::min(kPiece, s.job->plan.count - s.decoded);
      ++m;
    }
    if (m == 0) return;
    std::string errs[kSlots];
    Decoder::run_group(ds, outs, ns, m, errs);
    for (int i = 0; i < m; ++i) {
      auto* s = act[i];
      if (!errs[i].empty()) {
        s->job->error = errs[i];
        s->job = nullptr;
        continue;
      }
      s->consume(ns[i], avx2);
      if (s->decoded == s->job->plan.count) {
        try {
          s->finish(coder);
        } catch (const std::exception& e) {
          s->job->error = e.what();
        }
        s->job = nullptr;
      }
    }
  }
}

}  // namespace rows
}  // namespace golfpack
