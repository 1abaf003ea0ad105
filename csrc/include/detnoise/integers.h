// integers.h — SPEC §10.6's integer kind from a 64-bit word: low + floor(W * span / 2^64), exactly.
// Host code (the CPU rewrites drawn words in place); the same arithmetic is written in torch int64
// operations in detnoise._kinds.scaled_words, which CUDA tensors use, and in detnoise.reference.
#pragma once

#include <cstdint>
#include <cstring>

namespace detnoise {

#if !defined(__SIZEOF_INT128__)
#error "detnoise's integer kind needs a compiler with unsigned __int128 (GCC or Clang)"
#endif

// Word k of a draw: w[2k] | w[2k+1] << 32 (SPEC §2's float64 layout, little-endian). memcpy: the
// buffer holds uint32 words, read here as one 64-bit value.
inline uint64_t drawn_word(const unsigned char* bytes, uint64_t k) {
  uint64_t word;
  std::memcpy(&word, bytes + 8 * k, 8);
  return word;
}

// floor(a * b / 2^64): the high half of the 128-bit product (one multiply instruction on x86-64
// and AArch64).
inline uint64_t mul_high_u64(uint64_t a, uint64_t b) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(a) * b) >> 64);
}

// Rewrites `count` elements in place: element k's 8 bytes hold W = w[2k] | w[2k+1] << 32 (the
// little-endian uint32 words of the draw, SPEC §2's float64 layout) on entry and the int64
// low + floor(W * span / 2^64) on exit. 1 <= span <= 2^63 and low + span <= 2^63 (checked by the
// caller), so the sum cannot leave int64. Written back with memcpy, as int64.
inline void scale_words_in_place(void* buffer, uint64_t count, uint64_t span, int64_t low) {
  unsigned char* bytes = static_cast<unsigned char*>(buffer);
  const uint64_t base = static_cast<uint64_t>(low);
  for (uint64_t k = 0; k < count; ++k) {
    const uint64_t value = base + mul_high_u64(drawn_word(bytes, k), span);  // two's complement: low + floor(...)
    std::memcpy(bytes + 8 * k, &value, 8);
  }
}

}  // namespace detnoise
