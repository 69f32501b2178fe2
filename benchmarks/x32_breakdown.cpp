// x32_breakdown.cpp: where the time of a rans_x32 rows decode goes (benchmarks/RESULTS.md, issue 19):
// ns per symbol of the round loops alone and with the fused symbol hash (Decoder::hash_output; the
// final tags checked) (Decoder::run_group over 1..8 streams, per ISA), of the
// symbol hash (rans::SymbolHasher over 16 Ki pieces) and of packing into b-bit rows (pack_u_row,
// per width, under the AVX-512 and AVX2 switches). Thread CPU time, best of 5; 768 Ki Student-t(6)
// int6 symbols per stream.
//
//   tools/cpp_tests.sh rans_x32   # builds build/cpp/libgolfpack_core.a
//   g++ -O2 -std=c++17 -Icsrc/core benchmarks/x32_breakdown.cpp build/cpp/libgolfpack_core.a \
//       -fopenmp -lpthread -o /tmp/x32_breakdown && /tmp/x32_breakdown
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include "qmatmul.h"
#include "rans.h"
#include "rans_rows.h"
#include "rans_x32.h"

using namespace golfpack;

static double thread_cpu() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
}

int main() {
  const int kStreams = 8;
  const size_t n = 1536 * 512;
  std::mt19937_64 rng(1);
  std::student_t_distribution<double> td(6);
  std::vector<std::vector<uint8_t>> u(kStreams), st(kStreams);
  for (int k = 0; k < kStreams; ++k) {
    u[k].resize(n);
    for (auto& v : u[k]) v = uint8_t(std::max(-32, std::min(31, int(std::lround(td(rng) * 32 / 3)))) + 128);
    st[k] = rans_x32::encode(u[k].data(), n);
  }
  std::vector<rans::Isa> isas{rans::Isa::kScalar};
  if (cpu_has_avx2()) isas.push_back(rans::Isa::kAvx2);
  if (cpu_has_avx512()) isas.push_back(rans::Isa::kAvx512);
  const char* names[] = {"auto", "scalar", "avx2", "avx512"};
  for (rans::Isa isa : isas)
    for (int hashed = 0; hashed < 2; ++hashed)
    for (int s : {1, 2, 3, 4, 8}) {
      double best = 1e9;
      for (int rep = 0; rep < 5; ++rep) {
        std::vector<rans_x32::Plan> plans{size_t(s)};
        std::vector<std::unique_ptr<rans_x32::Decoder>> ds{size_t(s)};
        std::vector<std::vector<uint8_t>> out(static_cast<size_t>(s), std::vector<uint8_t>(n));
        rans_x32::Decoder* dp[kStreams];
        uint8_t* op[kStreams];
        uint64_t nn[kStreams];
        for (int k = 0; k < s; ++k) {
          plans[size_t(k)] = rans_x32::prepare(st[size_t(k)].data(), st[size_t(k)].size(), n);
          ds[size_t(k)].reset(new rans_x32::Decoder(plans[size_t(k)], isa));
          if (hashed) ds[size_t(k)]->hash_output();
          dp[k] = ds[size_t(k)].get(), op[k] = out[size_t(k)].data(), nn[k] = n;
        }
        const double t0 = thread_cpu();
        rans_x32::Decoder::run_group(dp, op, nn, s);
        if (hashed)
          for (int k = 0; k < s; ++k) dp[k]->finish();  // the tags check the fused hash
        best = std::min(best, thread_cpu() - t0);
        for (int k = 0; k < s; ++k)
          if (out[size_t(k)] != u[size_t(k)]) std::printf("MISMATCH\n");
      }
      std::printf("round loop%s %-6s %d stream(s): %.3f ns/symbol (%.0f MB/s)\n", hashed ? " + hash" : "",
                  names[int(isa)], s,
                  best / double(s * n) * 1e9, double(s * n) / best / 1e6);
    }
  double best = 1e9;
  for (int rep = 0; rep < 5; ++rep) {
    const double t0 = thread_cpu();
    rans::SymbolHasher h;
    for (size_t i = 0; i < n; i += 16384) h.update(u[0].data() + i, std::min<size_t>(16384, n - i));
    volatile uint64_t sink = h.finish();
    (void)sink;
    best = std::min(best, thread_cpu() - t0);
  }
  std::printf("symbol hash: %.3f ns/symbol\n", best / double(n) * 1e9);
  for (rans::Isa isa : isas) {
    if (isa == rans::Isa::kScalar) continue;
    rans::set_isa(isa);
    for (int bits = 4; bits <= 8; ++bits) {
      const int64_t stride = qlayout::packed_row_stride(512, bits);
      std::vector<uint8_t> dst(size_t(1536 * stride));
      double b = 1e9;
      for (int rep = 0; rep < 5; ++rep) {
        const double t0 = thread_cpu();
        for (int row = 0; row < 1536; ++row)
          pack_u_row(u[0].data() + row * 512, 512, bits, dst.data() + row * stride, stride, true);
        b = std::min(b, thread_cpu() - t0);
      }
      std::printf("pack %-6s %d bits: %.3f ns/symbol\n", names[int(isa)], bits, b / double(n) * 1e9);
    }
  }
  return 0;
}
