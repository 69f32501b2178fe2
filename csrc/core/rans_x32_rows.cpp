// rans_x32_rows.cpp: rans_x32 int streams decoded straight into packed rows (RANS.md §7; the
// same job as rans_rows.cpp for v1, whose packer and symbol hash it reuses). Each worker keeps
// up to kMaxStreams streams in flight and decodes 16 Ki symbols of each per step with the
// interleaved round loop (Decoder::run_group) into a buffer that stays in L1, hashes it for the
// integrity tags, checks the b-bit range and packs the finished rows. `threads` workers share
// the job list; a failing stream sets its error and the others continue.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "qmatmul.h"
#include "rans_rows.h"
#include "rans_x32.h"

namespace golfpack {
namespace rans_x32 {
namespace {

constexpr int kSymbolOffset = 128;  // u = s + 128 (coders.RANS_SYMBOL_OFFSET)
constexpr uint64_t kPiece = 16384;  // symbols per step (a multiple of kLanes: pieces stay round-aligned)
static_assert(kPiece % kLanes == 0, "pieces must not split rounds");

struct Slot {
  RowsJob* job = nullptr;
  std::unique_ptr<Decoder> dec;
  std::vector<uint8_t> buf;  // [carried partial row][new piece]
  uint64_t carry = 0, decoded = 0, row = 0;
  bool out_of_range = false;
  uint8_t lo_ok = 0, hi_ok = 0;
};

void start(Slot& s, RowsJob* job) {
  s.job = job;
  s.dec.reset(new Decoder(job->plan));
  s.dec->hash_output();  // hashed in the round loops (Stream::hacc)
  s.buf.assign(size_t(std::min<uint64_t>(kPiece, job->plan.count) + job->cols), 0);
  s.carry = s.decoded = s.row = 0;
  s.out_of_range = false;
  const int half = 1 << (job->bits - 1);
  s.lo_ok = uint8_t(kSymbolOffset - half);
  s.hi_ok = uint8_t(kSymbolOffset + half - 1);
}

void consume(Slot& s, uint64_t n, bool avx2) {
  RowsJob& j = *s.job;
  uint8_t* piece = s.buf.data() + s.carry;
  if (j.check_range && !s.out_of_range) {
    uint8_t bad = 0;
    for (uint64_t k = 0; k < n; ++k) bad |= uint8_t(piece[k] < s.lo_ok || piece[k] > s.hi_ok);
    s.out_of_range = bad != 0;
  }
  s.decoded += n;
  const uint64_t have = s.carry + n;
  uint64_t k = 0;
  for (; k + j.cols <= have; k += j.cols, ++s.row)
    pack_u_row(s.buf.data() + k, j.cols, j.bits, j.out + int64_t(s.row) * j.stride, j.stride, avx2);
  s.carry = have - k;
  if (s.carry) std::memmove(s.buf.data(), s.buf.data() + k, size_t(s.carry));
}

void finish(Slot& s) {
  s.dec->finish();
  if (s.out_of_range)
    throw std::runtime_error("rans_x32 stream decodes symbols outside the " + std::to_string(s.job->bits) +
                             "-bit range [S9]");
}

void worker(std::vector<RowsJob>& jobs, std::atomic<size_t>& next) {
  const bool avx2 = rans::uses_avx2(rans::resolved_isa());
  Slot slots[kMaxStreams];
  for (;;) {
    for (Slot& s : slots) {
      while (!s.job) {
        const size_t k = next.fetch_add(1);
        if (k >= jobs.size()) break;
        RowsJob& j = jobs[k];
        if (!j.error.empty()) continue;
        try {
          start(s, &j);
          if (j.plan.count == 0) {
            s.dec->finish(0);
            s.job = nullptr;
          }
        } catch (const std::exception& e) {
          j.error = e.what();
          s.job = nullptr;
        }
      }
    }
    Decoder* ds[kMaxStreams];
    uint8_t* outs[kMaxStreams];
    uint64_t ns[kMaxStreams];
    Slot* act[kMaxStreams];
    int m = 0;
    for (Slot& s : slots) {
      if (!s.job) continue;
      act[m] = &s;
      ds[m] = s.dec.get();
      outs[m] = s.buf.data() + s.carry;
      ns[m] = std::min(kPiece, s.job->plan.count - s.decoded);
      ++m;
    }
    if (m == 0) return;
    std::string errs[kMaxStreams];
    Decoder::run_group(ds, outs, ns, m, errs);
    for (int i = 0; i < m; ++i) {
      Slot* s = act[i];
      if (!errs[i].empty()) {
        s->job->error = errs[i];
        s->job = nullptr;
        continue;
      }
      consume(*s, ns[i], avx2);
      if (s->decoded == s->job->plan.count) {
        try {
          finish(*s);
        } catch (const std::exception& e) {
          s->job->error = e.what();
        }
        s->job = nullptr;
      }
    }
  }
}

}  // namespace

void prepare_rows_job(RowsJob& j) {
  j.stride = qlayout::packed_row_stride(int64_t(j.cols), j.bits);
  try {
    j.plan = prepare(j.data, j.size, j.rows * j.cols);
    const rans::Table& t = j.plan.table;
    const int half = 1 << (j.bits - 1);
    j.check_range = t.precision && (t.lo < kSymbolOffset - half || t.hi > kSymbolOffset + half - 1);
  } catch (const rans::Error& e) {
    j.error = e.what();
  }
}

void decode_rows(std::vector<RowsJob>& jobs, int threads) {
  std::atomic<size_t> next{0};
  rans::run_workers(threads, jobs.size(), [&] { worker(jobs, next); });
}

}  // namespace rans_x32
}  // namespace golfpack
