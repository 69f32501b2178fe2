// core_tests.cpp: plain C++ tests of the core (csrc/core), built with only csrc/core on the
// include path (no Python, no pybind11) by tools/cpp_tests.sh, plain and under ASan + UBSan.
//
// Each fast path is checked against the scalar reference of the same layout, at every bit width
// 2..8 and under every ISA this CPU has (scalar, AVX2, AVX-512): bit-packing, packed-row
// dequant-matmul (forward, transposed, dequant), v1 rANS (fast vs reference decoder, piecewise
// Decoder, rows decoder, hash), rans_rc (array vs packed rows), rans_x32 (every ISA vs the reference,
// pieces, corruption, rows), CRC-32, thread clamps.
//
//   golfpack_core_tests            all tests
//   golfpack_core_tests NAME...    only tests whose name contains one of the NAMEs
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "bitpack.h"
#include "common.h"
#include "crc32.h"
#include "qgemm.h"
#include "qmatmul.h"
#include "rans.h"
#include "rans_ctx.h"
#include "rans_rows.h"
#include "rans_x32.h"

using namespace golfpack;

namespace {

int g_failures = 0;
int g_checks = 0;

#define CHECK(cond, ...)                                                        \
  do {                                                                          \
    ++g_checks;                                                                 \
    if (!(cond)) {                                                              \
      ++g_failures;                                                             \
      std::fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                        \
      std::fprintf(stderr, "\n");                                               \
    }                                                                           \
  } while (0)

template <class F>
bool throws(F&& f) {
  try {
    f();
  } catch (const std::exception&) {
    return true;
  }
  return false;
}

std::mt19937_64& rng() {
  static std::mt19937_64 r(20261204);
  return r;
}

// Symbols of a b-bit two's complement range with a peaked (Laplace-like) distribution, as weights.
std::vector<int8_t> random_symbols(size_t n, int bits) {
  std::vector<int8_t> s(n);
  std::geometric_distribution<int> mag(0.35);
  std::bernoulli_distribution neg(0.5);
  for (auto& v : s) {
    int x = std::min(mag(rng()), symbol_max(bits));
    if (neg(rng())) x = std::max(-x - 1, symbol_min(bits));
    v = int8_t(x);
  }
  return s;
}

std::vector<rans::Isa> isas() {
  std::vector<rans::Isa> v{rans::Isa::kScalar};
  if (cpu_has_avx2()) v.push_back(rans::Isa::kAvx2);
  if (cpu_has_avx512()) v.push_back(rans::Isa::kAvx512);
  return v;
}
const char* isa_name(rans::Isa i) {
  return i == rans::Isa::kScalar ? "scalar" : i == rans::Isa::kAvx2 ? "avx2" : "avx512";
}

// ---------------------------------------------------------------- bitpack
void test_bitpack_fast_matches_reference() {
  for (int bits = kMinBits; bits <= kMaxBits; ++bits) {
    for (size_t n : {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 127, 1000, 4097}) {
      const auto s = random_symbols(n, bits);
      CHECK(bitpack::first_out_of_range(s.data(), n, bits) == n, "bits %d n %zu", bits, n);
      std::vector<uint8_t> fast(bitpack::packed_size(n, bits) + 8, 0xAA), ref(fast.size(), 0xAA);
      bitpack::pack(s.data(), n, bits, fast.data());
      bitpack::pack_ref(s.data(), n, bits, ref.data());
      CHECK(fast == ref, "pack bits %d n %zu", bits, n);
      std::vector<int8_t> a(n + 1, 0x55), b(n + 1, 0x55);
      bitpack::unpack(fast.data(), n, bits, a.data());
      bitpack::unpack_ref(fast.data(), n, bits, b.data());
      CHECK(a == b, "unpack bits %d n %zu", bits, n);
      CHECK(std::equal(s.begin(), s.end(), a.begin()), "round trip bits %d n %zu", bits, n);
    }
    const int8_t bad[3] = {0, int8_t(symbol_max(bits) == 127 ? 0 : symbol_max(bits) + 1), 0};
    if (bits < 8) CHECK(bitpack::first_out_of_range(bad, 3, bits) == 1, "range check bits %d", bits);
  }
}

// ---------------------------------------------------------------- packed rows + qgemm
struct PackedMatrix {
  int64_t N, K, stride;
  int bits;
  std::vector<int8_t> q;
  std::vector<uint8_t> packed;
  std::vector<float> scales;
};

PackedMatrix make_matrix(int64_t N, int64_t K, int bits) {
  PackedMatrix m{N, K, qlayout::packed_row_stride(K, bits), bits, random_symbols(size_t(N * K), bits), {}, {}};
  m.packed.resize(size_t(N * m.stride));
  qgemm::check_symbols(m.q.data(), N, K, bits);
  qgemm::pack_rows(m.q.data(), N, K, bits, m.packed.data());
  std::uniform_real_distribution<float> u(0.01f, 0.1f);
  for (int64_t n = 0; n < N; ++n) m.scales.push_back(u(rng()));
  return m;
}

void test_packed_rows_layout() {
  for (int bits = kMinBits; bits <= kMaxBits; ++bits) {
    for (int64_t K : {0, 1, 7, 8, 9, 16, 31, 129}) {
      const PackedMatrix m = make_matrix(5, K, bits);
      CHECK(m.stride % qlayout::kRowAlign == 0 && m.stride >= qlayout::row_data_bytes(K, bits), "stride");
      std::vector<int8_t> back(size_t(5 * K));
      qgemm::unpack_rows(m.packed.data(), 5, K, bits, back.data());
      CHECK(back == m.q, "qpack/qunpack round trip bits %d K %lld", bits, (long long)K);
      // The row layout is bitpack's stream layout, row by row, zero padded.
      for (int64_t n = 0; n < 5; ++n) {
        std::vector<uint8_t> row(size_t(m.stride), 0);
        bitpack::pack(m.q.data() + n * K, size_t(K), bits, row.data());
        CHECK(std::equal(row.begin(), row.end(), m.packed.begin() + n * m.stride), "row layout bits %d", bits);
        for (int64_t k = 0; k < K; ++k)
          CHECK(qlayout::decode_symbol(m.packed.data() + n * m.stride, k, bits) == m.q[size_t(n * K + k)],
                "decode_symbol bits %d", bits);
      }
    }
    int8_t bad = int8_t(bits == 8 ? 0 : symbol_max(bits) + 1);
    if (bits < 8) CHECK(throws([&] { qgemm::check_symbols(&bad, 1, 1, bits); }), "check_symbols bits %d", bits);
  }
  CHECK(throws([] { qgemm::pack_rows(nullptr, 0, 0, 9, nullptr); }), "bits 9 refused");
  CHECK(throws([] { qgemm::pack_rows(nullptr, 0, 0, 1, nullptr); }), "bits 1 refused");
}

bool close(const std::vector<float>& a, const std::vector<float>& b, double rel) {
  if (a.size() != b.size()) return false;
  double scale = 1e-6;
  for (float v : b) scale = std::max(scale, double(std::fabs(v)));
  for (size_t i = 0; i < a.size(); ++i)
    if (!(std::fabs(double(a[i]) - double(b[i])) <= rel * scale)) return false;
  return true;
}

void test_qgemm_matches_reference() {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int bits = kMinBits; bits <= kMaxBits; ++bits) {
    // M <= 4 takes the fused small-M kernels (AVX2+FMA), M >= 5 the panel kernels; K and N tails.
    for (int64_t M : {1, 3, 4, 5, 17}) {
      for (auto NK : {std::pair<int64_t, int64_t>{1, 8}, {16, 16}, {33, 37}, {70, 300}, {17, 513}}) {
        const int64_t N = NK.first, K = NK.second;
        const PackedMatrix w = make_matrix(N, K, bits);
        std::vector<float> x(size_t(M * K)), gy(size_t(M * N));
        for (auto& v : x) v = u(rng());
        for (auto& v : gy) v = u(rng());
        std::vector<float> y(size_t(M * N)), yr(y.size()), gx(size_t(M * K)), gxr(gx.size());
        for (int threads : {1, 2}) {
          qgemm::forward(x.data(), M, K, w.packed.data(), w.stride, w.scales.data(), N, bits, y.data(), threads);
          qgemm::forward_ref(x.data(), M, K, w.packed.data(), w.stride, w.scales.data(), N, bits, yr.data());
          CHECK(close(y, yr, 1e-4), "forward bits %d M %lld N %lld K %lld threads %d", bits, (long long)M,
                (long long)N, (long long)K, threads);
          qgemm::transposed(gy.data(), M, N, w.packed.data(), w.stride, w.scales.data(), K, bits, gx.data(), threads);
          qgemm::transposed_ref(gy.data(), M, N, w.packed.data(), w.stride, w.scales.data(), K, bits, gxr.data());
          CHECK(close(gx, gxr, 1e-4), "transposed bits %d M %lld N %lld K %lld threads %d", bits, (long long)M,
                (long long)N, (long long)K, threads);
        }
        std::vector<float> d(size_t((N - N / 2) * K));
        qgemm::dequant_rows(w.packed.data(), w.stride, w.scales.data(), N, K, bits, N / 2, N, d.data(), 2);
        bool ok = true;
        for (int64_t n = N / 2; n < N; ++n)
          for (int64_t k = 0; k < K; ++k)
            ok &= d[size_t((n - N / 2) * K + k)] == float(w.q[size_t(n * K + k)]) * w.scales[size_t(n)];
        CHECK(ok, "dequant_rows bits %d N %lld K %lld", bits, (long long)N, (long long)K);
      }
    }
  }
  CHECK(throws([] { qgemm::dequant_rows(nullptr, 16, nullptr, 4, 8, 4, 3, 5, nullptr, 1); }), "row range refused");
}

// ---------------------------------------------------------------- v1 rANS
std::vector<uint8_t> as_u(const std::vector<int8_t>& s) {
  std::vector<uint8_t> u(s.size());
  for (size_t i = 0; i < s.size(); ++i) u[i] = uint8_t(int(s[i]) + 128);
  return u;
}

// decode_ref and, under every ISA, decode_fast and a piecewise Decoder: all throw, or all give `want`.
void check_decoders_agree(const std::vector<uint8_t>& stream, uint64_t count, const std::vector<uint8_t>* want,
                          const char* what) {
  rans::Plan plan;
  try {
    plan = rans::prepare(stream.data(), stream.size(), count);
  } catch (const rans::Error&) {
    CHECK(want == nullptr, "%s: prepare refused a valid stream", what);
    return;
  }
  std::vector<uint8_t> ref(count);
  bool ref_ok = !throws([&] { rans::decode_ref(plan, ref.data()); });
  if (want) CHECK(ref_ok && ref == *want, "%s: reference decoder", what);
  const rans::Isa saved = rans::get_isa();
  for (rans::Isa isa : isas()) {
    rans::set_isa(isa);
    std::vector<uint8_t> out(count);
    const bool ok = !throws([&] { rans::decode_fast(plan, out.data()); });
    CHECK(ok == ref_ok && (!ok || out == ref), "%s: decode_fast %s disagrees with decode_ref", what, isa_name(isa));
    std::vector<uint8_t> pieces(count);
    const bool ok2 = !throws([&] {
      rans::Decoder d(plan, isa);
      rans::SymbolHasher h;
      for (uint64_t i = 0; i < count;) {
        const uint64_t n = std::min<uint64_t>(count - i, 1 + (i * 7919) % 5000);
        d.run(pieces.data() + i, n);
        h.update(pieces.data() + i, n);
        i += n;
      }
      d.finish(h.finish());
    });
    CHECK(ok2 == ref_ok && (!ok2 || pieces == ref), "%s: piecewise Decoder %s", what, isa_name(isa));
  }
  rans::set_isa(saved);
}

void test_rans_round_trip_every_width() {
  for (int bits = kMinBits; bits <= kMaxBits; ++bits) {
    for (size_t n : {0, 1, 5, 100, 4096, 70001}) {
      const auto u = as_u(random_symbols(n, bits));
      for (int lanes : {0, 1, 2, 4, 8}) {
        for (int P : {0, 12, 15}) {
          const auto stream = rans::encode(u.data(), n, P, lanes);
          char what[96];
          std::snprintf(what, sizeof what, "rans bits %d n %zu lanes %d P %d", bits, n, lanes, P);
          check_decoders_agree(stream, n, &u, what);
        }
      }
    }
  }
}

void test_rans_corruption_agrees() {
  const auto u = as_u(random_symbols(20000, 6));
  const auto stream = rans::encode(u.data(), u.size(), 0, 8);
  std::uniform_int_distribution<size_t> pos(0, stream.size() - 1);
  for (int t = 0; t < 60; ++t) {
    auto bad = stream;
    bad[pos(rng())] ^= uint8_t(1 + rng()() % 255);
    check_decoders_agree(bad, u.size(), nullptr, "corrupted rans stream");
  }
  check_decoders_agree(stream, u.size() + 1, nullptr, "wrong count");
  std::vector<uint8_t> cut(stream.begin(), stream.end() - 4);
  check_decoders_agree(cut, u.size(), nullptr, "truncated");
}

void test_symbol_hash_piecewise() {
  std::vector<uint8_t> d(1000);
  for (auto& v : d) v = uint8_t(rng()());
  for (size_t n : {0, 1, 7, 8, 9, 31, 32, 33, 999, 1000}) {
    const uint64_t h = rans::symbol_hash(d.data(), n);
    for (size_t step : {1, 3, 8, 13, 64}) {
      rans::SymbolHasher s;
      for (size_t i = 0; i < n; i += step) s.update(d.data() + i, std::min(step, n - i));
      CHECK(s.finish() == h, "hasher n %zu step %zu", n, step);
    }
  }
  CHECK(rans::symbol_hash(d.data(), 8) != rans::symbol_hash(d.data() + 1, 8), "hash sees its input");
}

void test_rans_rows_every_width() {
  for (int bits = kMinBits; bits <= kMaxBits; ++bits) {
    const int64_t rows = 37, cols = 301;
    const auto q = random_symbols(size_t(rows * cols), bits);
    const auto u = as_u(q);
    const auto stream = rans::encode(u.data(), u.size(), 0, 0);
    std::vector<uint8_t> want(size_t(rows * qlayout::packed_row_stride(cols, bits)));
    qgemm::pack_rows(q.data(), rows, cols, bits, want.data());
    const rans::Isa saved = rans::get_isa();
    for (rans::Isa isa : isas()) {
      rans::set_isa(isa);
      for (int threads : {1, 3}) {
        std::vector<rans_rows::Job> jobs(3);
        std::vector<std::vector<uint8_t>> outs(3);
        auto bad = stream;
        bad[bad.size() / 2] ^= 0x5A;
        for (int k = 0; k < 3; ++k) {
          rans_rows::Job& j = jobs[size_t(k)];
          const auto& s = k == 1 ? bad : stream;
          j.data = s.data();
          j.size = s.size();
          j.rows = uint64_t(rows);
          j.cols = uint64_t(cols);
          j.bits = bits;
          rans_rows::prepare_job(j);
          outs[size_t(k)].assign(size_t(rows * j.stride), 0xEE);
          j.out = outs[size_t(k)].data();
        }
        rans_rows::decode(jobs, threads);
        CHECK(jobs[0].error.empty() && outs[0] == want, "rows bits %d %s threads %d: %s", bits, isa_name(isa), threads,
              jobs[0].error.c_str());
        CHECK(jobs[2].error.empty() && outs[2] == want, "rows (after a failing job) bits %d", bits);
        CHECK(!jobs[1].error.empty(), "corrupted rows job bits %d %s decoded without error", bits, isa_name(isa));
      }
    }
    rans::set_isa(saved);
  }
}

// ---------------------------------------------------------------- rans_rc
void test_rans_ctx_array_and_packed_agree() {
  for (int bits = kMinBits; bits <= kMaxBits; ++bits) {
    const uint64_t rows = 24, cols = 200;
    const int R = 2, C = 3, T = 4, P = 12;
    std::vector<uint8_t> row_class(rows), col_class(cols), map(size_t(R * C));
    for (auto& v : row_class) v = uint8_t(rng()() % R);
    for (auto& v : col_class) v = uint8_t(rng()() % C);
    for (auto& v : map) v = uint8_t(rng()() % T);
    // Tables: every symbol of the b-bit range present, code lengths ~ |s|.
    const int lo = 128 + symbol_min(bits), W = 1 << bits;
    std::vector<uint8_t> codes(size_t(T * W));
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < W; ++i) codes[size_t(t * W + i)] = uint8_t(std::min(4 * P, 4 + (t + 2) * std::abs(i + symbol_min(bits))));
    std::vector<uint32_t> freqs(size_t(T) * 256);
    rans_ctx::build_tables(codes.data(), T, lo, W, P, freqs.data());
    for (int t = 0; t < T; ++t) {
      uint64_t sum = 0;
      for (int s = 0; s < 256; ++s) sum += freqs[size_t(t * 256 + s)];
      CHECK(sum == (1u << P), "table %d sums to 2^P", t);
    }
    rans_ctx::Model m;
    m.ctx.row_class = row_class.data();
    m.ctx.col_class = col_class.data();
    m.ctx.map = map.data();
    m.ctx.C = C;
    rans_ctx::validate_model(m, rows * cols, cols, rows, cols, map.size(), freqs.data(), freqs.size(), P);
    const auto q = random_symbols(size_t(rows * cols), bits);
    const auto u = as_u(q);
    const auto payload = rans_ctx::encode(u.data(), u.size(), m.ctx, m.tables, 8);
    std::vector<uint8_t> want(size_t(rows) * size_t(qlayout::packed_row_stride(int64_t(cols), bits)));
    qgemm::pack_rows(q.data(), int64_t(rows), int64_t(cols), bits, want.data());
    const rans::Isa saved = rans::get_isa();
    for (rans::Isa isa : isas()) {
      rans::set_isa(isa);
      std::vector<uint8_t> arr(u.size());
      rans_ctx::decode_to_array(payload.data(), payload.size(), u.size(), m, 8, arr.data());
      CHECK(arr == u, "rans_rc array bits %d %s", bits, isa_name(isa));
      std::vector<uint8_t> packed(want.size());
      rans_ctx::decode_to_packed(payload.data(), payload.size(), u.size(), m, 8, bits, packed.data(),
                                 qlayout::packed_row_stride(int64_t(cols), bits));
      CHECK(packed == want, "rans_rc packed bits %d %s", bits, isa_name(isa));
      auto bad = payload;
      bad[bad.size() - 9] ^= 0x21;
      CHECK(throws([&] { rans_ctx::decode_to_array(bad.data(), bad.size(), u.size(), m, 8, arr.data()); }),
            "corrupted rans_rc payload bits %d %s", bits, isa_name(isa));
    }
    rans::set_isa(saved);
    rans_ctx::Model bad_model = m;
    std::vector<uint8_t> bad_map(map.size(), uint8_t(T));  // table index out of range
    bad_model.ctx.map = bad_map.data();
    CHECK(throws([&] {
            rans_ctx::validate_model(bad_model, rows * cols, cols, rows, cols, bad_map.size(), freqs.data(),
                                     freqs.size(), P);
          }),
          "out-of-range table index refused");
  }
}

// ---------------------------------------------------------------- crc32, threads, layout
uint32_t crc32_bitwise(uint32_t crc, const uint8_t* p, size_t n) {
  uint32_t c = ~crc;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

void test_crc32_matches_bitwise() {
  std::vector<uint8_t> d(70000);
  for (auto& v : d) v = uint8_t(rng()());
  for (size_t n : {0, 1, 15, 16, 63, 64, 65, 127, 128, 1000, 4099, 70000})
    CHECK(crc32(0, d.data(), n) == crc32_bitwise(0, d.data(), n), "crc n %zu", n);
  CHECK(crc32(0, reinterpret_cast<const uint8_t*>("123456789"), 9) == 0xCBF43926u, "check value");
  const uint32_t a = crc32(0, d.data(), 1000);
  CHECK(crc32(a, d.data() + 1000, 5000) == crc32(0, d.data(), 6000), "chained");
}

void test_thread_clamps_and_sizes() {
  const int hw = hardware_threads();
  CHECK(hw >= 1, "hardware threads");
  CHECK(clamp_threads(1000000, 1 << 20) == hw, "10^6 threads clamped to %d", hw);
  CHECK(clamp_threads(int64_t(1) << 31, 1 << 20) == hw, "2^31 threads clamped");
  CHECK(clamp_threads(8, 3) == std::min(3, hw), "no more threads than jobs");
  CHECK(clamp_threads(0, 100, 1) == 1 && clamp_threads(-5, 100, 1) == 1, "default");
  CHECK(clamp_threads(4, 0) == 1, "at least one thread");
  CHECK(throws([] { checked_mul(int64_t(1) << 40, int64_t(1) << 30, "x"); }), "overflow refused");
  CHECK(checked_mul(3, 5, "x") == 15, "mul");
  CHECK(qlayout::packed_row_stride(qlayout::kMaxRowSymbols, 8) > 0, "largest accepted row has a positive stride");
  for (int bits = kMinBits; bits <= kMaxBits; ++bits) check_bits(bits);
  CHECK(throws([] { check_bits(1); }) && throws([] { check_bits(9); }), "check_bits");
  CHECK(load_le32(reinterpret_cast<const uint8_t*>("\x01\x02\x03\x04")) == 0x04030201u, "load_le32");
  CHECK(load_le64(reinterpret_cast<const uint8_t*>("\x01\x02\x03\x04\x05\x06\x07\x80")) == 0x8007060504030201ull,
        "load_le64");
}


// ---------------------------------------------------------------- rans_x32 (RANS.md section 7)
// decode_ref and, under every ISA, decode_fast, a piecewise Decoder and a run_group of two copies:
// all throw, or all give `want`.
void check_x32_agree(const std::vector<uint8_t>& stream, uint64_t count, const std::vector<uint8_t>* want,
                     const char* what) {
  rans_x32::Plan plan;
  try {
    plan = rans_x32::prepare(stream.data(), stream.size(), count);
  } catch (const rans::Error&) {
    CHECK(want == nullptr, "%s: prepare refused a valid stream", what);
    return;
  }
  std::vector<uint8_t> ref(count);
  const bool ref_ok = !throws([&] { rans_x32::decode_ref(plan, ref.data()); });
  if (want) CHECK(ref_ok && ref == *want, "%s: reference decoder", what);
  const rans::Isa saved = rans::get_isa();
  for (rans::Isa isa : isas()) {
    rans::set_isa(isa);
    std::vector<uint8_t> out(count);
    const bool ok = !throws([&] { rans_x32::decode_fast(plan, out.data()); });
    CHECK(ok == ref_ok && (!ok || out == ref), "%s: decode_fast %s disagrees with decode_ref", what, isa_name(isa));
    std::vector<uint8_t> a(count), b(count);
    const bool ok2 = !throws([&] {
      rans_x32::Decoder da(plan, isa), db(plan, isa);
      rans::SymbolHasher ha, hb;
      for (uint64_t i = 0; i < count;) {
        const uint64_t n = std::min<uint64_t>(count - i, 1 + (i * 7919) % 5000);
        rans_x32::Decoder* ds[2] = {&da, &db};
        uint8_t* outs[2] = {a.data() + i, b.data() + i};
        const uint64_t ns[2] = {n, n};
        rans_x32::Decoder::run_group(ds, outs, ns, 2);
        ha.update(a.data() + i, n);
        hb.update(b.data() + i, n);
        i += n;
      }
      da.finish(ha.finish());
      db.finish(hb.finish());
    });
    CHECK(ok2 == ref_ok && (!ok2 || (a == ref && b == ref)), "%s: piecewise run_group %s", what, isa_name(isa));
  }
  rans::set_isa(saved);
}

void test_rans_x32_round_trip_every_width() {
  for (int bits = kMinBits; bits <= kMaxBits; ++bits)
    for (size_t n : {0, 1, 5, 31, 32, 33, 100, 4096, 70001}) {
      const auto u = as_u(random_symbols(n, bits));
      const auto stream = rans_x32::encode(u.data(), n);
      char what[64];
      std::snprintf(what, sizeof what, "rans_x32 bits %d n %zu", bits, n);
      check_x32_agree(stream, n, &u, what);
    }
}

void test_rans_x32_corruption_agrees() {
  const auto u = as_u(random_symbols(20000, 6));
  const auto stream = rans_x32::encode(u.data(), u.size());
  std::uniform_int_distribution<size_t> pos(0, stream.size() - 1);
  for (int t = 0; t < 60; ++t) {
    auto bad = stream;
    bad[pos(rng())] ^= uint8_t(1 + rng()() % 255);
    check_x32_agree(bad, u.size(), nullptr, "corrupted rans_x32 stream");
  }
  check_x32_agree(stream, u.size() + 1, nullptr, "wrong count");
  std::vector<uint8_t> cut(stream.begin(), stream.end() - 2);
  check_x32_agree(cut, u.size(), nullptr, "truncated");
  const auto v1 = rans::encode(u.data(), u.size(), 12, 8);
  CHECK(throws([&] { rans_x32::prepare(v1.data(), v1.size(), u.size()); }), "a v1 stream is refused (X1)");
}

void test_rans_x32_rows_every_width() {
  for (int bits = kMinBits; bits <= kMaxBits; ++bits) {
    const int64_t rows = 37, cols = 301;
    const auto q = random_symbols(size_t(rows * cols), bits);
    const auto u = as_u(q);
    const auto stream = rans_x32::encode(u.data(), u.size());
    std::vector<uint8_t> want(size_t(rows * qlayout::packed_row_stride(cols, bits)));
    qgemm::pack_rows(q.data(), rows, cols, bits, want.data());
    const rans::Isa saved = rans::get_isa();
    for (rans::Isa isa : isas()) {
      rans::set_isa(isa);
      auto bad = stream;
      bad[bad.size() / 2] ^= 0x5A;
      std::vector<rans_x32::RowsJob> jobs(6);
      std::vector<std::vector<uint8_t>> outs(jobs.size());
      for (size_t k = 0; k < jobs.size(); ++k) {
        rans_x32::RowsJob& j = jobs[k];
        const auto& s = k == 2 ? bad : stream;
        j.data = s.data();
        j.size = s.size();
        j.rows = uint64_t(rows);
        j.cols = uint64_t(cols);
        j.bits = bits;
        rans_x32::prepare_rows_job(j);
        CHECK(j.error.empty(), "rans_x32 rows prepare bits %d", bits);
        outs[k].assign(size_t(rows * j.stride), 0xEE);
        j.out = outs[k].data();
      }
      rans_x32::decode_rows(jobs, 2);
      for (size_t k = 0; k < jobs.size(); ++k) {
        if (k == 2) {
          CHECK(!jobs[k].error.empty(), "rans_x32 rows: the corrupted stream is refused (bits %d %s)", bits,
                isa_name(isa));
          continue;
        }
        CHECK(jobs[k].error.empty() && outs[k] == want, "rans_x32 rows bits %d %s job %zu", bits, isa_name(isa), k);
      }
    }
    rans::set_isa(saved);
  }
}

struct Test {
  const char* name;
  void (*fn)();
};
const Test kTests[] = {
    {"bitpack_fast_matches_reference", test_bitpack_fast_matches_reference},
    {"packed_rows_layout", test_packed_rows_layout},
    {"qgemm_matches_reference", test_qgemm_matches_reference},
    {"rans_round_trip_every_width", test_rans_round_trip_every_width},
    {"rans_corruption_agrees", test_rans_corruption_agrees},
    {"symbol_hash_piecewise", test_symbol_hash_piecewise},
    {"rans_rows_every_width", test_rans_rows_every_width},
    {"rans_ctx_array_and_packed_agree", test_rans_ctx_array_and_packed_agree},
    {"rans_x32_round_trip_every_width", test_rans_x32_round_trip_every_width},
    {"rans_x32_corruption_agrees", test_rans_x32_corruption_agrees},
    {"rans_x32_rows_every_width", test_rans_x32_rows_every_width},
    {"crc32_matches_bitwise", test_crc32_matches_bitwise},
    {"thread_clamps_and_sizes", test_thread_clamps_and_sizes},
};

}  // namespace

int main(int argc, char** argv) {
  std::printf("golfpack core tests: ISAs");
  for (rans::Isa i : isas()) std::printf(" %s", isa_name(i));
  std::printf("; qgemm %s; %d hardware threads\n", qgemm::cpu_isa(), hardware_threads());
  int ran = 0;
  for (const Test& t : kTests) {
    bool pick = argc < 2;
    for (int a = 1; a < argc; ++a) pick |= std::strstr(t.name, argv[a]) != nullptr;
    if (!pick) continue;
    const int before = g_failures;
    try {
      t.fn();
    } catch (const std::exception& e) {
      ++g_failures;
      std::fprintf(stderr, "%s: unexpected exception: %s\n", t.name, e.what());
    }
    std::printf("%-36s %s\n", t.name, g_failures == before ? "ok" : "FAILED");
    ++ran;
  }
  std::printf("%d tests, %d checks, %d failures\n", ran, g_checks, g_failures);
  return g_failures == 0 && ran > 0 ? 0 : 1;
}
