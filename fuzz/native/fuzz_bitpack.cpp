// libFuzzer harness for the bit unpackers (csrc/core/bitpack.cpp), built with ASan + UBSan by build.sh.
//
// Input: byte 0 picks the width (2..8), byte 1 trims the count, the rest is the packed
// buffer, copied to an exact-size heap block so any read past packed_size(count, bits)
// is a heap-buffer-overflow. Checks: fast == reference unpack; pack(unpack(x)) == x with
// the unused high bits of the last byte cleared; fast pack == reference pack.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "bitpack.h"

using namespace golfpack;

static void check(bool ok) {
  if (!ok) std::abort();
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const int bits = 2 + data[0] % 7;
  const size_t avail = size - 2;
  size_t count = avail * 8 / size_t(bits);
  count = count > size_t(data[1] % 4) ? count - data[1] % 4 : 0;
  const size_t need = bitpack::packed_size(count, bits);
  // Exact-size heap blocks (at least 1 byte: numpy never hands the bindings a null pointer,
  // so neither does the harness), so a read or write past the end is a heap-buffer-overflow.
  auto block = [](size_t k) { return std::vector<uint8_t>(k ? k : 1); };
  std::vector<uint8_t> in = block(need);
  if (need) std::memcpy(in.data(), data + 2, need);
  std::vector<uint8_t> fast = block(count), ref = block(count);
  int8_t* f = reinterpret_cast<int8_t*>(fast.data());
  bitpack::unpack(in.data(), count, bits, f);
  bitpack::unpack_ref(in.data(), count, bits, reinterpret_cast<int8_t*>(ref.data()));
  check(fast == ref);
  check(bitpack::first_out_of_range(f, count, bits) == count);
  std::vector<uint8_t> packed = block(need), packed_ref = block(need);
  bitpack::pack(f, count, bits, packed.data());
  bitpack::pack_ref(f, count, bits, packed_ref.data());
  check(packed == packed_ref);
  if (count * size_t(bits) % 8) in[need - 1] &= uint8_t((1u << (count * size_t(bits) % 8)) - 1);
  check(packed == in);
  return 0;
}
