// uniform_exhaustive.cpp — the float32 open uniform of transforms.h (float32 operations only)
// against the spec's definition u = RNE((2x + 1) * 2^-33) computed through float64, for every one
// of the 2^32 words. Built and run by tests/test_native_driver.py; prints the count that differ.
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "detnoise/transforms.h"

namespace {

// 2x + 1 < 2^33 is exact in float64; one rounding to float32; the product with 2^-33 is exact.
float spec_open_uniform(uint32_t x) {
  const double odd = 2.0 * static_cast<double>(x) + 1.0;
  return static_cast<float>(odd) * 0x1p-33f;
}

}  // namespace

int main() {
  uint64_t differ = 0;
  for (uint64_t word = 0; word < (1ull << 32); ++word) {
    const uint32_t x = static_cast<uint32_t>(word);
    const float got = detnoise::open_uniform_f32_from_bits(x);
    const float want = spec_open_uniform(x);
    if (std::memcmp(&got, &want, sizeof got) != 0) {
      if (differ < 5) std::printf("word %u: %a != %a\n", x, static_cast<double>(got), static_cast<double>(want));
      ++differ;
    }
  }
  std::printf("differ %llu\n", static_cast<unsigned long long>(differ));
  return differ == 0 ? 0 : 1;
}
