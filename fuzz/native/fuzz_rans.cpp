// libFuzzer harness for the rANS decoders (csrc/core/rans.cpp), built with ASan + UBSan by build.sh.
//
// Input: 4 bytes little-endian count (mod 2^20 + 1), then the stream. Checks, beyond the
// sanitizers' own: prepare() either throws rans::Error or returns a plan; the reference
// decoder, the fast decoder with each inner loop (scalar, AVX2) and the piecewise Decoder
// then agree (all throw, or all write the same symbols); and the same bytes, encoded as
// symbols at a precision / lane count taken from the input, decode back.
#include <cstdint>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <vector>

#include "rans.h"

using namespace golfpack;

static void check(bool ok) {
  if (!ok) std::abort();  // libFuzzer reports the input that got here
}

static int round_trip(const uint8_t* data, const uint8_t* sp, size_t n, const std::vector<uint8_t>& stream);

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;  // bytes 0..3: count; bytes 0..3 also pick precision, lanes, chunks
  uint32_t c;
  std::memcpy(&c, data, 4);
  const uint64_t count = c % ((1u << 20) + 1);
  const uint8_t* s = data + 4;
  const size_t n = size - 4;
  // An exact-size heap copy: a read past the end is a heap-buffer-overflow, not a silent read.
  // (At least 1 byte: the bindings never pass a null pointer either.)
  std::vector<uint8_t> stream(s, s + n);
  stream.reserve(1);
  const uint8_t* sp = stream.data();

  // Reference decoder, then the fast decoder with every inner loop (scalar unrolled; AVX2
  // when the CPU has it), then the piecewise Decoder in chunks whose sizes come from the
  // input: all must accept the same streams and write the same symbols.
  bool ref_ok = false;
  std::vector<uint8_t> ref;
  rans::Plan plan;
  try {
    plan = rans::prepare(sp, n, count);
  } catch (const rans::Error&) {
    return round_trip(data, sp, n, stream);
  }
  ref.resize(count);
  ref.reserve(1);
  try {
    rans::decode_ref(plan, ref.data());
    ref_ok = true;
  } catch (const rans::Error&) {
  }
  std::vector<rans::Isa> isas = {rans::Isa::kScalar};
  if (cpu_has_avx2()) isas.push_back(rans::Isa::kAvx2);
  for (rans::Isa isa : isas) {
    rans::set_isa(isa);
    std::vector<uint8_t> fast(count);
    fast.reserve(1);
    bool ok = true;
    try {
      rans::decode_fast(plan, fast.data());
    } catch (const rans::Error&) {
      ok = false;
    }
    check(ok == ref_ok);
    if (ok) check(fast == ref);
    // Piecewise: chunk sizes cycle through bytes 2..3 of the input (1..256 symbols).
    std::vector<uint8_t> piece(count);
    piece.reserve(1);
    ok = true;
    try {
      rans::Decoder d(plan, isa);
      rans::SymbolHasher h;
      uint64_t done = 0;
      for (int k = 0; done < count; ++k) {
        const uint64_t step = std::min<uint64_t>(count - done, 1 + data[2 + (k & 1)]);
        d.run(piece.data() + done, step);
        h.update(piece.data() + done, step);
        done += step;
      }
      // As decode_fast: empty and one-symbol plans have no payload and no tags to check.
      if (count && plan.table.present != 1) d.finish(h.finish());
    } catch (const rans::Error&) {
      ok = false;
    }
    check(ok == ref_ok);
    if (ok) check(piece == ref);
  }
  rans::set_isa(rans::Isa::kAuto);
  return round_trip(data, sp, n, stream);
}

// The same bytes as symbols, at a precision / lane count taken from the input, decode back.
static int round_trip(const uint8_t* data, const uint8_t* sp, size_t n, const std::vector<uint8_t>& stream) {
  static const int kPrec[] = {0, 12, 13, 14, 15};
  static const int kLanes[] = {0, 1, 2, 4, 8};
  const int precision = kPrec[data[0] % 5], lanes = kLanes[data[1] % 5];
  std::vector<uint8_t> enc = rans::encode(sp, n, precision, lanes);
  rans::Plan plan = rans::prepare(enc.data(), enc.size(), n);
  std::vector<uint8_t> back(n);
  back.reserve(1);
  rans::decode_fast(plan, back.data());
  check(back == stream);
  return 0;
}
