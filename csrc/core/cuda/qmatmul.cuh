// CUDA dequant-matmul launchers (csrc/cuda/qmatmul.cu), callable from plain C++.
//
// The extension does not link libtorch: every pointer is a raw device address
// (tensor.data_ptr()), `stream` is a cudaStream_t handle as an integer
// (torch.cuda.current_stream().cuda_stream). Packed layout: csrc/qmatmul.h.
// Errors: std::invalid_argument for bad arguments (-> ValueError), and
// std::runtime_error for CUDA launch failures (-> RuntimeError).
#pragma once

#include <cstdint>

namespace golfpack {
namespace cuda {

enum class DType { kF32 = 0, kF16 = 1, kBF16 = 2 };

// out[M,N] = x[M,K] . W_hat^T; x and out have dtype `dt`, accumulation in fp32.
// algo: 0 auto (small-M kernel when M <= 16, else tiled), 1 tiled, 2 small-M.
void qgemm(uintptr_t x, DType dt, int64_t M, int64_t K, uintptr_t packed, int64_t stride, uintptr_t scales,
           int bits, int64_t N, uintptr_t out, uintptr_t stream, int algo);

// out[M,K] = gy[M,N] . W_hat (input gradient), dtype `dt`, fp32 accumulation.
void qgemm_t(uintptr_t gy, DType dt, int64_t M, int64_t N, uintptr_t packed, int64_t stride, uintptr_t scales,
             int bits, int64_t K, uintptr_t out, uintptr_t stream);

// out[rows,K] = W_hat[row_begin:row_end, :] in dtype `dt`.
void dequant_rows(uintptr_t packed, int64_t stride, uintptr_t scales, int bits, int64_t K, int64_t row_begin,
                  int64_t row_end, uintptr_t out, DType dt, uintptr_t stream);

constexpr int kSmallMMax = 16;  // largest M the small-M kernel accepts

}  // namespace cuda
}  // namespace golfpack
