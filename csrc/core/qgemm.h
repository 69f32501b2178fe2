// qgemm.h: the CPU dequant-matmul kernels on packed rows (qmatmul.cpp; layout: qmatmul.h).
//
// All arrays are row-major and dense; `packed` is [N, stride] with stride ==
// qlayout::packed_row_stride(K, bits), `scales` [N]. The callers (csrc/py/qmatmul_py.cpp, the
// C++ tests) check shapes; these check bits (std::invalid_argument) and nothing else.
// threads <= 0: the OpenMP default; every count is clamped to the machine (common.h).
#pragma once

#include <cstdint>

namespace golfpack {
namespace qgemm {

// y[M,N] = x[M,K] . W_hat^T, W_hat[n,k] = q[n,k] * scales[n].
void forward(const float* x, int64_t M, int64_t K, const uint8_t* packed, int64_t stride, const float* scales,
             int64_t N, int bits, float* y, int threads);
// gx[M,K] = gy[M,N] . W_hat.
void transposed(const float* gy, int64_t M, int64_t N, const uint8_t* packed, int64_t stride, const float* scales,
                int64_t K, int bits, float* gx, int threads);
// out[rows, K] = W_hat[row_begin:row_end, :]; throws std::invalid_argument for a bad range.
void dequant_rows(const uint8_t* packed, int64_t stride, const float* scales, int64_t N, int64_t K, int bits,
                  int64_t row_begin, int64_t row_end, float* out, int threads);
// Scalar references (double accumulation, qlayout::decode_symbol): what the tests compare to.
void forward_ref(const float* x, int64_t M, int64_t K, const uint8_t* packed, int64_t stride, const float* scales,
                 int64_t N, int bits, float* y);
void transposed_ref(const float* gy, int64_t M, int64_t N, const uint8_t* packed, int64_t stride,
                    const float* scales, int64_t K, int bits, float* gx);
// Symbols int8 [N, K] <-> packed [N, packed_row_stride(K, bits)] (padding written as zero).
// check_symbols throws std::invalid_argument naming the first symbol outside b bits.
void check_symbols(const int8_t* q, int64_t N, int64_t K, int bits);
void pack_rows(const int8_t* q, int64_t N, int64_t K, int bits, uint8_t* out);
void unpack_rows(const uint8_t* packed, int64_t N, int64_t K, int bits, int8_t* q);
// "avx2+fma" or "baseline": the compiled variant the kernels run on this CPU.
const char* cpu_isa();

}  // namespace qgemm
}  // namespace golfpack
