// bitpack.cpp: pack/unpack signed b-bit symbols (layout in bitpack.h). Python bindings:
// csrc/py/bitpack_py.cpp (pack_bits / unpack_bits / pack_bits_ref / unpack_bits_ref).
//
// The fast unpackers for 5 and 6 bits work 8 symbols at a time on one 64-bit
// word (SWAR): 8 fields of b bits are spread into 8 byte lanes by shifts and masks,
// then sign-extended in all lanes at once with one multiply:
//   lanes |= ((lanes & signbits) >> (b-1)) * high_fill
// where each lane of (lanes & signbits) >> (b-1) is 0 or 1, so the product
// never carries across lanes. That needs 8 readable input bytes per 5 or 6 used,
// so the last few groups fall back to the exact-size loops.
#include "bitpack.h"

#include <cstring>
#include <string>

#include "common.h"

namespace golfpack {
namespace bitpack {
namespace {

inline int8_t sign_extend(uint32_t v, int bits) {
  const uint32_t sign = 1u << (bits - 1);
  return int8_t(int32_t(v ^ sign) - int32_t(sign));
}

// Generic 64-bit accumulator packer; `out` starts byte-aligned.
void pack_generic(const int8_t* s, size_t n, int bits, uint8_t* out) {
  const uint32_t mask = (1u << bits) - 1;
  uint64_t acc = 0;
  int filled = 0;
  for (size_t i = 0; i < n; ++i) {
    acc |= uint64_t(uint8_t(s[i]) & mask) << filled;
    filled += bits;
    while (filled >= 8) {
      *out++ = uint8_t(acc);
      acc >>= 8;
      filled -= 8;
    }
  }
  if (filled > 0) *out = uint8_t(acc);  // high bits of acc are zero: unused bits stay 0
}

void unpack_generic(const uint8_t* in, size_t count, int bits, int8_t* out) {
  const uint32_t mask = (1u << bits) - 1;
  uint64_t acc = 0;
  int avail = 0;
  for (size_t i = 0; i < count; ++i) {
    if (avail < bits) {
      acc |= uint64_t(*in++) << avail;
      avail += 8;
    }
    out[i] = sign_extend(uint32_t(acc) & mask, bits);
    acc >>= bits;
    avail -= bits;
  }
}

// ---- 4 bits: two symbols per byte --------------------------------------------------
void pack4(const int8_t* s, size_t n, uint8_t* out) {
  const size_t pairs = n / 2;
  for (size_t i = 0; i < pairs; ++i)
    out[i] = uint8_t((uint8_t(s[2 * i]) & 0x0F) | (uint8_t(s[2 * i + 1]) << 4));
  if (n & 1) out[pairs] = uint8_t(s[n - 1]) & 0x0F;
}

void unpack4(const uint8_t* in, size_t count, int8_t* out) {
  const size_t pairs = count / 2;
  for (size_t i = 0; i < pairs; ++i) {
    const uint8_t b = in[i];
    out[2 * i] = int8_t(uint8_t(b << 4)) >> 4;
    out[2 * i + 1] = int8_t(b) >> 4;
  }
  if (count & 1) out[count - 1] = int8_t(uint8_t(in[pairs] << 4)) >> 4;
}

// ---- 5 bits: 8 symbols <-> 5 bytes ---------------------------------------------------
void pack5(const int8_t* s, size_t n, uint8_t* out) {
  const size_t groups = n / 8;
  for (size_t g = 0; g < groups; ++g) {
    const int8_t* p = s + 8 * g;
    uint64_t v = 0;
    for (int k = 0; k < 8; ++k) v |= uint64_t(uint8_t(p[k]) & 0x1F) << (5 * k);
    uint8_t* o = out + 5 * g;
    for (int k = 0; k < 5; ++k) o[k] = uint8_t(v >> (8 * k));
  }
  pack_generic(s + 8 * groups, n - 8 * groups, 5, out + 5 * groups);
}

inline uint64_t spread5(uint64_t x) {  // field k (bits 5k..5k+4) -> byte lane k
  uint64_t y = 0;
  for (int k = 0; k < 8; ++k) y |= ((x >> (5 * k)) & 0x1F) << (8 * k);
  return y;
}

void unpack5(const uint8_t* in, size_t count, int8_t* out) {
  const size_t groups = count / 8;
  const size_t in_bytes = packed_size(count, 5);
  size_t g = 0;
  // 64-bit loads read 3 bytes past the group: only while they stay inside `in`.
  for (; g < groups && 5 * g + 8 <= in_bytes; ++g) {
    uint64_t y = spread5(load_le64(in + 5 * g));
    y |= ((y & 0x1010101010101010ull) >> 4) * 0xE0;
    store_le64(reinterpret_cast<uint8_t*>(out + 8 * g), y);
  }
  unpack_generic(in + 5 * g, count - 8 * g, 5, out + 8 * g);
}

// ---- 6 bits: 4 symbols <-> 3 bytes (8 <-> 6 in the SWAR unpacker) --------------------
void pack6(const int8_t* s, size_t n, uint8_t* out) {
  const size_t groups = n / 4;
  for (size_t g = 0; g < groups; ++g) {
    const int8_t* p = s + 4 * g;
    const uint32_t v = (uint32_t(uint8_t(p[0]) & 0x3F)) | (uint32_t(uint8_t(p[1]) & 0x3F) << 6) |
                       (uint32_t(uint8_t(p[2]) & 0x3F) << 12) |
                       (uint32_t(uint8_t(p[3]) & 0x3F) << 18);
    uint8_t* o = out + 3 * g;
    o[0] = uint8_t(v);
    o[1] = uint8_t(v >> 8);
    o[2] = uint8_t(v >> 16);
  }
  pack_generic(s + 4 * groups, n - 4 * groups, 6, out + 3 * groups);
}

inline uint64_t spread6(uint64_t x) {  // field k (bits 6k..6k+5) -> byte lane k
  uint64_t y = 0;
  for (int k = 0; k < 8; ++k) y |= ((x >> (6 * k)) & 0x3F) << (8 * k);
  return y;
}

void unpack6(const uint8_t* in, size_t count, int8_t* out) {
  const size_t groups8 = count / 8;
  const size_t in_bytes = packed_size(count, 6);
  size_t g = 0;
  for (; g < groups8 && 6 * g + 8 <= in_bytes; ++g) {
    uint64_t y = spread6(load_le64(in + 6 * g));
    y |= ((y & 0x2020202020202020ull) >> 5) * 0xC0;
    store_le64(reinterpret_cast<uint8_t*>(out + 8 * g), y);
  }
  size_t i = 8 * g;
  const uint8_t* p = in + 6 * g;
  for (; i + 4 <= count; i += 4, p += 3) {
    const uint32_t v = uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16);
    out[i] = sign_extend(v & 0x3F, 6);
    out[i + 1] = sign_extend((v >> 6) & 0x3F, 6);
    out[i + 2] = sign_extend((v >> 12) & 0x3F, 6);
    out[i + 3] = sign_extend((v >> 18) & 0x3F, 6);
  }
  unpack_generic(p, count - i, 6, out + i);
}

}  // namespace

size_t first_out_of_range(const int8_t* s, size_t n, int bits) {
  if (bits >= 8) return n;
  const uint8_t lo = uint8_t(-(1 << (bits - 1)));  // s - lo maps the valid range to [0, 2^b)
  const uint8_t span = uint8_t((1 << bits) - 1);
  constexpr size_t kChunk = 4096;
  for (size_t base = 0; base < n; base += kChunk) {
    const size_t end = base + kChunk < n ? base + kChunk : n;
    uint8_t bad = 0;  // branch-free OR over the chunk so it vectorizes
    for (size_t i = base; i < end; ++i) bad |= uint8_t(uint8_t(uint8_t(s[i]) - lo) > span);
    if (bad) {
      for (size_t i = base; i < end; ++i)
        if (uint8_t(uint8_t(s[i]) - lo) > span) return i;
    }
  }
  return n;
}

void pack(const int8_t* s, size_t n, int bits, uint8_t* out) {
  switch (bits) {
    case 8: if (n) std::memcpy(out, s, n); return;
    case 6: pack6(s, n, out); return;
    case 5: pack5(s, n, out); return;
    case 4: pack4(s, n, out); return;
    default: pack_generic(s, n, bits, out); return;
  }
}

void unpack(const uint8_t* in, size_t count, int bits, int8_t* out) {
  switch (bits) {
    case 8: if (count) std::memcpy(out, in, count); return;
    case 6: unpack6(in, count, out); return;
    case 5: unpack5(in, count, out); return;
    case 4: unpack4(in, count, out); return;
    default: unpack_generic(in, count, bits, out); return;
  }
}

void pack_ref(const int8_t* s, size_t n, int bits, uint8_t* out) {
  std::memset(out, 0, packed_size(n, bits));
  for (size_t i = 0; i < n; ++i) {
    const uint32_t u = uint8_t(s[i]);
    for (int k = 0; k < bits; ++k) {
      const size_t pos = i * size_t(bits) + size_t(k);
      out[pos / 8] = uint8_t(out[pos / 8] | (((u >> k) & 1u) << (pos % 8)));
    }
  }
}

void unpack_ref(const uint8_t* in, size_t count, int bits, int8_t* out) {
  for (size_t i = 0; i < count; ++i) {
    int v = 0;
    for (int k = 0; k < bits; ++k) {
      const size_t pos = i * size_t(bits) + size_t(k);
      v |= ((in[pos / 8] >> (pos % 8)) & 1) << k;
    }
    if (v & (1 << (bits - 1))) v -= 1 << bits;
    out[i] = int8_t(v);
  }
}

}  // namespace bitpack
}  // namespace golfpack
