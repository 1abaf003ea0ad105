// philox.h — Philox4x32-10 (Salmon et al., SC'11), the bit generator under every detnoise draw.
// One text for host and device: only mulhilo32 differs per backend, and both forms are exact.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define DETNOISE_HD __host__ __device__ __forceinline__
#else
#define DETNOISE_HD inline
#endif

namespace detnoise {

// Note [Stream layout v1] (normative text: docs/SPEC.md §2)
//   key     = (seed & 0xffffffff, seed >> 32)
//   counter = (block & 0xffffffff, block >> 32, stream & 0xffffffff, stream >> 32)
// A draw of n elements starting at generator offset o (in blocks) reads blocks o, o+1, ...:
//   float32 / float16 / bfloat16 / uint32 element i <- block o + i/4, word i%4
//   float64 element i                              <- block o + i/2, words (0,1) if i even, (2,3) if odd
// and advances the offset by ceil(n/4) (ceil(n/2) for float64).

// Constants named as in the paper and in Random123's philox.h.
constexpr uint32_t kPhiloxM4x32_0 = 0xD2511F53u;  // round multipliers
constexpr uint32_t kPhiloxM4x32_1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW32_0 = 0x9E3779B9u;    // Weyl key increments (golden ratio, sqrt(3)-1)
constexpr uint32_t kPhiloxW32_1 = 0xBB67AE85u;
constexpr int kPhiloxRounds = 10;

struct Words4 {
  uint32_t w[4];
};

// 32x32 -> 64-bit product split into (lo, hi).
DETNOISE_HD uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t* hi) {
#if defined(__CUDA_ARCH__)
  *hi = __umulhi(a, b);
  return a * b;
#else
  const uint64_t product = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(product >> 32);
  return static_cast<uint32_t>(product);
#endif
}

DETNOISE_HD Words4 philox4x32_10(Words4 ctr, uint32_t key0, uint32_t key1) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < kPhiloxRounds; ++round) {
    if (round > 0) {
      key0 += kPhiloxW32_0;
      key1 += kPhiloxW32_1;
    }
    uint32_t hi0, hi1;
    const uint32_t lo0 = mulhilo32(kPhiloxM4x32_0, ctr.w[0], &hi0);
    const uint32_t lo1 = mulhilo32(kPhiloxM4x32_1, ctr.w[2], &hi1);
    ctr = Words4{{hi1 ^ ctr.w[1] ^ key0, lo1, hi0 ^ ctr.w[3] ^ key1, lo0}};
  }
  return ctr;
}

// The four words of block `block` of stream `stream` under `seed` (Note [Stream layout v1]).
DETNOISE_HD Words4 philox_block(uint64_t seed, uint64_t stream, uint64_t block) {
  const Words4 ctr{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                    static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)}};
  return philox4x32_10(ctr, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

}  // namespace detnoise
