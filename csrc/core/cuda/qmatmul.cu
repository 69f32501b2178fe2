// CUDA dequant-matmul on bit-packed weights (layout: csrc/qmatmul.h).
//
// Kept deliberately simple so that it is correct by inspection (it was written
// without a GPU at hand; tests/test_qmatmul_cuda.py checks it on one):
//   * qgemm_tiled  : generic CUDA-core tiled GEMM C[M,P] = A[M,R] . B[R,P] where
//                    B is read through the packed weights, either as W_hat^T
//                    (forward, R=K, P=N) or W_hat (transposed, R=N, P=K). Each
//                    block owns a 64x64 tile of C and walks R in chunks of 16;
//                    both operand tiles are staged in shared memory as fp32
//                    (weights decoded on the way in, with bounds checks, so no
//                    size needs to be a multiple of a tile). fp32 accumulation.
//   * qgemv_small_m: M <= 16 (decoding, TTT steps): one warp per output row n,
//                    lanes stride over K, warp-shuffle reduction.
//   * dequant      : W_hat rows into bf16/fp16/fp32, for the large-M path where
//                    cuBLAS (tensor cores) multiplies a dequantized tile.
// Symbols are decoded by qlayout::decode_symbol, the same function the CPU
// reference kernel uses, so the bit-level decode is tested on CPU as well.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "cuda/qmatmul.cuh"
#include "qmatmul.h"

namespace golfpack {
namespace cuda {
namespace {

using qlayout::decode_symbol;

template <class T> __device__ __forceinline__ float to_f(T v);
template <> __device__ __forceinline__ float to_f<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

constexpr int kBM = 64;       // rows of C per block
constexpr int kBP = 64;       // columns of C per block
constexpr int kBR = 16;       // reduction chunk
constexpr int kThreads = 256; // 16 x 16 threads, each owns a 4 x 4 sub-tile (strided by 16)
static_assert(kBM == 4 * 16 && kBP == 4 * 16 && kThreads == 256, "thread mapping assumes 16x16 threads x 4x4");
constexpr int64_t kMaxGridY = 65535;

// W_hat element of the logical right operand B(r, p).
//   forward    (TRANS=false): B(r, p) = W_hat[p, r]  (r indexes K, p indexes N)
//   transposed (TRANS=true) : B(r, p) = W_hat[r, p]  (r indexes N, p indexes K)
template <bool TRANS>
__device__ __forceinline__ float weight_at(const uint8_t* packed, const float* scales, int64_t stride, int bits,
                                           int64_t r, int64_t p) {
  const int64_t n = TRANS ? r : p;
  const int64_t k = TRANS ? p : r;
  return static_cast<float>(decode_symbol(packed + n * stride, k, bits)) * scales[n];
}

template <class T, bool TRANS>
__global__ void __launch_bounds__(kThreads) qgemm_tiled(const T* __restrict__ A, const uint8_t* __restrict__ packed,
                                                        const float* __restrict__ scales, int64_t stride, int bits,
                                                        int64_t M, int64_t R, int64_t P, T* __restrict__ C) {
  __shared__ float As[kBR][kBM + 1];  // As[r][m] = A[m0+m, r0+r]
  __shared__ float Bs[kBR][kBP + 1];  // Bs[r][p] = B(r0+r, p0+p)
  const int tid = threadIdx.x;
  const int tx = tid % 16, ty = tid / 16;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kBM;
  const int64_t p0 = static_cast<int64_t>(blockIdx.x) * kBP;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

  for (int64_t r0 = 0; r0 < R; r0 += kBR) {
    // A tile: consecutive threads read consecutive r of one row (contiguous in memory).
    for (int i = tid; i < kBM * kBR; i += kThreads) {
      const int mm = i / kBR, rr = i % kBR;
      const int64_t m = m0 + mm, r = r0 + rr;
      As[rr][mm] = (m < M && r < R) ? to_f<T>(A[m * R + r]) : 0.0f;
    }
    // B tile: consecutive threads decode consecutive k of one packed row.
    for (int i = tid; i < kBP * kBR; i += kThreads) {
      const int pp = TRANS ? i % kBP : i / kBR;
      const int rr = TRANS ? i / kBP : i % kBR;
      const int64_t r = r0 + rr, p = p0 + pp;
      Bs[rr][pp] = (r < R && p < P) ? weight_at<TRANS>(packed, scales, stride, bits, r, p) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < kBR; ++rr) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[rr][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Bs[rr][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t m = m0 + ty + 16 * i, p = p0 + tx + 16 * j;
      if (m < M && p < P) C[m * P + p] = from_f<T>(acc[i][j]);
    }
}

constexpr int kGemvWarps = 8;  // output rows per block of the small-M kernel

// out[m, n] = s[n] * sum_k x[m, k] q[n, k] for m < M <= 16. Warp w of block b
// owns row n = b*8 + w; n is uniform within a warp, so the early exit and the
// shuffles below never split a warp.
template <class T>
__global__ void __launch_bounds__(kGemvWarps * 32) qgemv_small_m(const T* __restrict__ x,
                                                                 const uint8_t* __restrict__ packed,
                                                                 const float* __restrict__ scales, int64_t stride,
                                                                 int bits, int M, int64_t K, int64_t N,
                                                                 T* __restrict__ out) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kGemvWarps + warp;
  if (n >= N) return;
  const uint8_t* row = packed + n * stride;
  float acc[kSmallMMax];
#pragma unroll
  for (int m = 0; m < kSmallMMax; ++m) acc[m] = 0.0f;
  for (int64_t k = lane; k < K; k += 32) {
    const float w = static_cast<float>(decode_symbol(row, k, bits));
#pragma unroll
    for (int m = 0; m < kSmallMMax; ++m)
      if (m < M) acc[m] = fmaf(to_f<T>(x[m * K + k]), w, acc[m]);
  }
  const float s = scales[n];
#pragma unroll
  for (int m = 0; m < kSmallMMax; ++m) {
    if (m < M) {  // M is uniform across the warp
      float v = acc[m];
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
      if (lane == 0) out[m * N + n] = from_f<T>(v * s);
    }
  }
}

template <class T>
__global__ void dequant_kernel(const uint8_t* __restrict__ packed, const float* __restrict__ scales, int64_t stride,
                               int bits, int64_t K, int64_t row_begin, int64_t total, T* __restrict__ out) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = row_begin + i / K, k = i % K;
    out[i] = from_f<T>(static_cast<float>(decode_symbol(packed + n * stride, k, bits)) * scales[n]);
  }
}

// ------------------------------------------------------------------ host side

void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

void check_common(int bits, int64_t M, int64_t N, int64_t K, int64_t stride) {
  if (bits < qlayout::kMinBits || bits > qlayout::kMaxBits)
    throw std::invalid_argument("bits must be in 2..8, got " + std::to_string(bits));
  if (M < 0 || N < 0 || K < 0) throw std::invalid_argument("sizes must be >= 0");
  if (stride != qlayout::packed_row_stride(K, bits))
    throw std::invalid_argument("packed row stride " + std::to_string(stride) + " does not match K=" +
                                std::to_string(K) + " at " + std::to_string(bits) + " bits (expected " +
                                std::to_string(qlayout::packed_row_stride(K, bits)) + ")");
}

void check_ptrs(std::initializer_list<uintptr_t> ptrs) {
  for (uintptr_t p : ptrs)
    if (p == 0) throw std::invalid_argument("null device pointer");
}

template <class T, bool TRANS>
void launch_tiled(const T* A, const uint8_t* packed, const float* scales, int64_t stride, int bits, int64_t M,
                  int64_t R, int64_t P, T* C, cudaStream_t st) {
  const int64_t grid_x = (P + kBP - 1) / kBP;
  if (grid_x > 0x7fffffff) throw std::invalid_argument("output too wide for the tiled kernel");
  // gridDim.y is limited to 65535: walk M in slabs.
  const int64_t slab = kMaxGridY * kBM;
  for (int64_t ms = 0; ms < M; ms += slab) {
    const int64_t mrows = std::min(slab, M - ms);
    dim3 grid(static_cast<unsigned>(grid_x), static_cast<unsigned>((mrows + kBM - 1) / kBM));
    qgemm_tiled<T, TRANS><<<grid, kThreads, 0, st>>>(A + ms * R, packed, scales, stride, bits, mrows, R, P,
                                                      C + ms * P);
    check_launch(TRANS ? "qgemm_t_cuda (tiled)" : "qgemm_cuda (tiled)");
  }
}

template <class T>
void qgemm_typed(uintptr_t x, int64_t M, int64_t K, uintptr_t packed, int64_t stride, uintptr_t scales, int bits,
                 int64_t N, uintptr_t out, cudaStream_t st, int algo) {
  const T* xp = reinterpret_cast<const T*>(x);
  const uint8_t* pp = reinterpret_cast<const uint8_t*>(packed);
  const float* sp = reinterpret_cast<const float*>(scales);
  T* op = reinterpret_cast<T*>(out);
  const bool small = algo == 2 || (algo == 0 && M <= kSmallMMax);
  if (small) {
    if (M > kSmallMMax) throw std::invalid_argument("the small-M kernel (algo=2) needs M <= 16");
    const int64_t blocks = (N + kGemvWarps - 1) / kGemvWarps;
    qgemv_small_m<T><<<static_cast<unsigned>(blocks), kGemvWarps * 32, 0, st>>>(xp, pp, sp, stride, bits,
                                                                                  static_cast<int>(M), K, N, op);
    check_launch("qgemm_cuda (small M)");
  } else {
    launch_tiled<T, false>(xp, pp, sp, stride, bits, M, K, N, op, st);
  }
}

}  // namespace

void qgemm(uintptr_t x, DType dt, int64_t M, int64_t K, uintptr_t packed, int64_t stride, uintptr_t scales,
           int bits, int64_t N, uintptr_t out, uintptr_t stream, int algo) {
  check_common(bits, M, N, K, stride);
  if (algo < 0 || algo > 2) throw std::invalid_argument("algo must be 0 (auto), 1 (tiled) or 2 (small M)");
  if (M == 0 || N == 0) return;
  check_ptrs({out, scales});
  if (K > 0) check_ptrs({x, packed});
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  switch (dt) {
    case DType::kF32: qgemm_typed<float>(x, M, K, packed, stride, scales, bits, N, out, st, algo); break;
    case DType::kF16: qgemm_typed<__half>(x, M, K, packed, stride, scales, bits, N, out, st, algo); break;
    case DType::kBF16: qgemm_typed<__nv_bfloat16>(x, M, K, packed, stride, scales, bits, N, out, st, algo); break;
  }
}

void qgemm_t(uintptr_t gy, DType dt, int64_t M, int64_t N, uintptr_t packed, int64_t stride, uintptr_t scales,
             int bits, int64_t K, uintptr_t out, uintptr_t stream) {
  check_common(bits, M, N, K, stride);
  if (M == 0 || K == 0) return;
  check_ptrs({out});
  if (N > 0) check_ptrs({gy, packed, scales});
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  const uint8_t* pp = reinterpret_cast<const uint8_t*>(packed);
  const float* sp = reinterpret_cast<const float*>(scales);
  switch (dt) {
    case DType::kF32:
      launch_tiled<float, true>(reinterpret_cast<const float*>(gy), pp, sp, stride, bits, M, N, K,
                                reinterpret_cast<float*>(out), st);
      break;
    case DType::kF16:
      launch_tiled<__half, true>(reinterpret_cast<const __half*>(gy), pp, sp, stride, bits, M, N, K,
                                 reinterpret_cast<__half*>(out), st);
      break;
    case DType::kBF16:
      launch_tiled<__nv_bfloat16, true>(reinterpret_cast<const __nv_bfloat16*>(gy), pp, sp, stride, bits, M, N,
                                        K, reinterpret_cast<__nv_bfloat16*>(out), st);
      break;
  }
}

void dequant_rows(uintptr_t packed, int64_t stride, uintptr_t scales, int bits, int64_t K, int64_t row_begin,
                  int64_t row_end, uintptr_t out, DType dt, uintptr_t stream) {
  check_common(bits, 0, 0, K, stride);
  if (row_begin < 0 || row_end < row_begin) throw std::invalid_argument("bad row range");
  const int64_t total = (row_end - row_begin) * K;
  if (total == 0) return;
  check_ptrs({packed, scales, out});
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  const int threads = 256;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((total + threads - 1) / threads, 1 << 16));
  const uint8_t* pp = reinterpret_cast<const uint8_t*>(packed);
  const float* sp = reinterpret_cast<const float*>(scales);
  switch (dt) {
    case DType::kF32:
      dequant_kernel<float><<<blocks, threads, 0, st>>>(pp, sp, stride, bits, K, row_begin, total,
                                                        reinterpret_cast<float*>(out));
      break;
    case DType::kF16:
      dequant_kernel<__half><<<blocks, threads, 0, st>>>(pp, sp, stride, bits, K, row_begin, total,
                                                         reinterpret_cast<__half*>(out));
      break;
    case DType::kBF16:
      dequant_kernel<__nv_bfloat16><<<blocks, threads, 0, st>>>(pp, sp, stride, bits, K, row_begin, total,
                                                                reinterpret_cast<__nv_bfloat16*>(out));
      break;
  }
  check_launch("dequant_rows_cuda");
}

}  // namespace cuda
}  // namespace golfpack
