// libFuzzer harness for the rANS decoders (csrc/rans.cpp), built with ASan + UBSan by build.sh.
//
// Input: 4 bytes little-endian count (mod 2^20 + 1), then the stream. Checks, beyond the
// sanitizers' own: prepare() either throws rans::Error or returns a plan; the fast and the
// reference decoder then agree (both throw, or both write the same symbols); and the same
// bytes, encoded as symbols at a precision / lane count taken from the input, decode back.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "rans.h"

using namespace golfpack;

static void check(bool ok) {
  if (!ok) std::abort();  // libFuzzer reports the input that got here
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
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

  bool fast_ok = false, ref_ok = false;
  std::vector<uint8_t> fast, ref;
  try {
    rans::Plan plan = rans::prepare(sp, n, count);
    fast.resize(count);
    fast.reserve(1);
    try {
      rans::decode_fast(plan, fast.data());
      fast_ok = true;
    } catch (const rans::Error&) {
    }
    ref.resize(count);
    ref.reserve(1);
    try {
      rans::decode_ref(plan, ref.data());
      ref_ok = true;
    } catch (const rans::Error&) {
    }
    check(fast_ok == ref_ok);
    if (fast_ok) check(fast == ref);
  } catch (const rans::Error&) {
  }

  // Round trip of the input bytes as symbols.
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
