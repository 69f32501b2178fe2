// gptq.h: GPTQ's in-block column loop (gptq.cpp; codec/gptq.py is the reference).
#pragma once

#include <cstdint>

namespace golfpack {

// W [R, B] (row-major, updated in place), S [R, B] scales, qmax [R], U [B, B] the block's upper
// Cholesky factor; writes symbols Q and scaled errors E, each [R, B]. threads <= 0: the OpenMP
// default; any count is clamped to the machine and to R (common.h clamp_threads).
void gptq_block(double* W, const double* S, const double* qmax, const double* U, double* Q, double* E, int64_t R,
                int64_t B, int threads);

}  // namespace golfpack
