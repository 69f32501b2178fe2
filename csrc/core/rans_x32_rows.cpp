// rans_x32_rows.cpp: rans_x32 int streams decoded straight into packed rows (RANS.md §7; the
// same job as rans_rows.cpp for v1, whose packer it reuses; the piece consumer and worker loop are
// rows_slot.h's, shared by both). Each worker keeps up to kMaxStreams streams in flight and
// decodes 16 Ki symbols of each per step with the interleaved round loop (Decoder::run_group,
// which also hashes them for the integrity tags) into a buffer that stays in L1, checks the b-bit
// range and packs the finished rows. `threads` workers share the job list; a failing stream sets
// its error and the others continue.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "qmatmul.h"
#include "rans_rows.h"
#include "rans_x32.h"
#include "rows_slot.h"

namespace golfpack {
namespace rans_x32 {

using rows::kSymbolOffset;

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
  rans::run_workers(threads, jobs.size(),
                    [&] { rows::worker<kMaxStreams, RowsJob, Decoder>(jobs, next, "rans_x32"); });
}

}  // namespace rans_x32
}  // namespace golfpack
