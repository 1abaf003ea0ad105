// path_avx2.cpp — the chunked CPU path for x86-64 with AVX2, chosen at run time. Built with -mavx2
// and without -mfma: the compiler may not contract a*b+c (also -ffp-contract=off). Only Philox is
// written with intrinsics (eight blocks per step; the 32x32->64 multiply is vpmuludq on even and odd
// lanes); the transforms are the shared scalar text, vectorised by the compiler.
#include <immintrin.h>

#include "chunked.h"
#include "cpu_paths.h"

namespace detnoise {
namespace {

inline void mulhilo_x8(__m256i a, __m256i multiplier, __m256i* hi, __m256i* lo) {
  const __m256i even = _mm256_mul_epu32(a, multiplier);                        // lanes 0, 2, 4, 6
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), multiplier);  // lanes 1, 3, 5, 7
  *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

struct PhiloxChunkAvx2 {
  static void run(uint64_t seed, uint64_t stream, uint64_t first_block, ChunkWords& words) {
    __m256i key0[kPhiloxRounds], key1[kPhiloxRounds];
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int round = 0; round < kPhiloxRounds; ++round) {
      if (round > 0) {
        k0 += kPhiloxW32_0;
        k1 += kPhiloxW32_1;
      }
      key0[round] = _mm256_set1_epi32(static_cast<int>(k0));
      key1[round] = _mm256_set1_epi32(static_cast<int>(k1));
    }
    const __m256i m0 = _mm256_set1_epi32(static_cast<int>(kPhiloxM4x32_0));
    const __m256i m1 = _mm256_set1_epi32(static_cast<int>(kPhiloxM4x32_1));
    const __m256i stream_lo = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream)));
    const __m256i stream_hi = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream >> 32)));
    // Two independent groups of eight blocks per step: the multiply's latency is hidden by the
    // other group's work.
    for (int j = 0; j < kChunkBlocks; j += 16) {
      alignas(32) uint32_t block_lo[16], block_hi[16];
      for (int lane = 0; lane < 16; ++lane) {
        const uint64_t block = first_block + static_cast<uint64_t>(j + lane);
        block_lo[lane] = static_cast<uint32_t>(block);
        block_hi[lane] = static_cast<uint32_t>(block >> 32);
      }
      __m256i a0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(block_lo));
      __m256i a1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(block_hi));
      __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(block_lo + 8));
      __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(block_hi + 8));
      __m256i a2 = stream_lo, a3 = stream_hi, b2 = stream_lo, b3 = stream_hi;
      for (int round = 0; round < kPhiloxRounds; ++round) {
        __m256i ahi0, alo0, ahi1, alo1, bhi0, blo0, bhi1, blo1;
        mulhilo_x8(a0, m0, &ahi0, &alo0);
        mulhilo_x8(b0, m0, &bhi0, &blo0);
        mulhilo_x8(a2, m1, &ahi1, &alo1);
        mulhilo_x8(b2, m1, &bhi1, &blo1);
        a0 = _mm256_xor_si256(_mm256_xor_si256(ahi1, a1), key0[round]);
        b0 = _mm256_xor_si256(_mm256_xor_si256(bhi1, b1), key0[round]);
        a1 = alo1;
        b1 = blo1;
        a2 = _mm256_xor_si256(_mm256_xor_si256(ahi0, a3), key1[round]);
        b2 = _mm256_xor_si256(_mm256_xor_si256(bhi0, b3), key1[round]);
        a3 = alo0;
        b3 = blo0;
      }
      _mm256_store_si256(reinterpret_cast<__m256i*>(&words[0][j]), a0);
      _mm256_store_si256(reinterpret_cast<__m256i*>(&words[1][j]), a1);
      _mm256_store_si256(reinterpret_cast<__m256i*>(&words[2][j]), a2);
      _mm256_store_si256(reinterpret_cast<__m256i*>(&words[3][j]), a3);
      _mm256_store_si256(reinterpret_cast<__m256i*>(&words[0][j + 8]), b0);
      _mm256_store_si256(reinterpret_cast<__m256i*>(&words[1][j + 8]), b1);
      _mm256_store_si256(reinterpret_cast<__m256i*>(&words[2][j + 8]), b2);
      _mm256_store_si256(reinterpret_cast<__m256i*>(&words[3][j + 8]), b3);
    }
  }
};

}  // namespace

bool fill_range_avx2(const FillRequest& request, uint64_t begin, uint64_t end) {
  return dispatch_transform(request.kind, request.dtype,
                            ChunkedFill<PhiloxChunkAvx2>{request, begin, end});
}

}  // namespace detnoise
