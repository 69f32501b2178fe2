// rans_rows.h: v1 rANS int streams decoded straight into packed rows (rans_rows.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "rans.h"

namespace golfpack {
namespace rans_rows {

// One stream of a [rows, cols] tensor stored as rANS symbols u = s + 128 (b-bit symbols s).
struct Job {
  const uint8_t* data = nullptr;  // the stream (caller-owned, alive until decode returns)
  size_t size = 0;
  uint64_t rows = 0, cols = 0;    // rows * cols <= rans::kMaxCount (checked by the caller)
  int bits = 0;                   // kMinBits..kMaxBits (checked by the caller)
  uint8_t* out = nullptr;         // rows * stride bytes, set after prepare_job succeeded
  int64_t stride = 0;             // packed_row_stride(cols, bits), set by prepare_job
  rans::Plan plan;
  bool check_range = false;       // the table lists a symbol outside the b-bit range
  std::string error;              // non-empty: this stream failed (message names the rule)
};

// Validates the stream (RANS.md; no allocation proportional to rows*cols): sets stride and plan,
// or error.
void prepare_job(Job& j);
// Decodes every job whose error is empty into its out; a failing stream sets its error and the
// others continue. threads: workers sharing the list (clamped to the machine).
void decode(std::vector<Job>& jobs, int threads);

}  // namespace rans_rows

// A row of u = s + 128 symbols -> one packed row (also used by rans_ctx.cpp).
void pack_u_row(const uint8_t* u, uint64_t cols, int bits, uint8_t* dst, int64_t stride, bool avx2);

}  // namespace golfpack
