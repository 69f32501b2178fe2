// gather_probe.cpp: is _mm256_i64gather_epi64 worth it on this CPU? (benchmarks/RESULTS.md,
// "Fast decode"). Times dependent table lookups through a 4-lane gather vs plain scalar loads,
// with 4 independent chains (throughput) and 1 chain (latency), on a 2^P-entry u64 table.
//
//   g++ -O2 -mavx2 benchmarks/gather_probe.cpp -o /tmp/gather_probe && /tmp/gather_probe
#include <immintrin.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

static double now_ns() {
  return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int main() {
  const int N = 20000000;
  for (int P : {12, 15}) {
    std::vector<long long> t(size_t(1) << P);
    for (size_t i = 0; i < t.size(); ++i) t[i] = (long long)(i * 2654435761u);
    const long long* e = t.data();
    const long long m = (1ll << P) - 1;
    const __m256i mv = _mm256_set1_epi64x(m);
    __m256i a = _mm256_setr_epi64x(1, 2, 3, 4), b = _mm256_setr_epi64x(5, 6, 7, 8);
    __m256i c = _mm256_setr_epi64x(9, 10, 11, 12), d = _mm256_setr_epi64x(13, 14, 15, 16);
    double t0 = now_ns();
    for (int i = 0; i < N; ++i) {
      a = _mm256_i64gather_epi64(e, _mm256_and_si256(a, mv), 8);
      b = _mm256_i64gather_epi64(e, _mm256_and_si256(b, mv), 8);
      c = _mm256_i64gather_epi64(e, _mm256_and_si256(c, mv), 8);
      d = _mm256_i64gather_epi64(e, _mm256_and_si256(d, mv), 8);
    }
    const double g4 = (now_ns() - t0) / N / 4;
    t0 = now_ns();
    for (int i = 0; i < N; ++i) a = _mm256_i64gather_epi64(e, _mm256_and_si256(a, mv), 8);
    const double g1 = (now_ns() - t0) / N;
    uint64_t x0 = 1, x1 = 2, x2 = 3, x3 = 4;
    t0 = now_ns();
    for (int i = 0; i < N; ++i) {
      x0 = e[x0 & m];
      x1 = e[x1 & m];
      x2 = e[x2 & m];
      x3 = e[x3 & m];
    }
    const double s4 = (now_ns() - t0) / N;
    long long out[4];
    _mm256_storeu_si256((__m256i*)out, _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d)));
    std::printf("P=%d: gather (4 lanes) %.2f ns each with 4 chains, %.2f ns with 1 chain; "
                "4 scalar loads (4 chains) %.2f ns  [%lld %llu]\n",
                P, g4, g1, s4, out[0], (unsigned long long)(x0 + x1 + x2 + x3));
  }
  return 0;
}
