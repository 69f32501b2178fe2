// cpu.cpp: the CPU-feature probes of common.h, each read once. Every SIMD path of the core asks
// these (never __builtin_cpu_supports directly), so "has AVX2" means one thing everywhere.
#include "common.h"

namespace golfpack {
namespace {

struct CpuFeatures {
  bool avx2 = false, fma = false, avx512 = false, fast_pext = false, clmul = false;
  // The AVX-512 loop only where it was measured faster than AVX2 (an Intel Xeon,
  // benchmarks/RESULTS.md issue 19); on the AMD EPYC of issue 8 gathers were slow, so there
  // auto stays on AVX2 until measured (rans_set_isa("avx512") still forces it).
  bool avx512_fast = false;
};

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = [] {
    CpuFeatures c;
#if defined(__x86_64__) || defined(__i386__)
    c.avx2 = __builtin_cpu_supports("avx2");
    c.fma = __builtin_cpu_supports("fma");
    c.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
    // PEXT is microcoded (tens to hundreds of cycles) on AMD Zen 1 and 2.
    c.fast_pext = __builtin_cpu_supports("bmi2") && !__builtin_cpu_is("znver1") && !__builtin_cpu_is("znver2");
    c.avx512_fast = c.avx512 && __builtin_cpu_is("intel");
    c.clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
#endif
    return c;
  }();
  return f;
}

}  // namespace

bool cpu_has_avx2() { return cpu_features().avx2; }
bool cpu_has_avx2_fma() { return cpu_features().avx2 && cpu_features().fma; }
bool cpu_has_avx512() { return cpu_features().avx512; }
bool cpu_has_avx512_fast() { return cpu_features().avx512_fast; }
bool cpu_has_fast_pext() { return cpu_features().fast_pext; }
bool cpu_has_clmul() { return cpu_features().clmul; }

}  // namespace golfpack
