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
    for (int j = 0; j < kChunkBlocks; j += 8) {
      alignas(32) uint32_t block_lo[8], block_hi[8];
      for (int lane = 0; lane < 8; ++lane) {
        const uint64_t block = first_block + static_cast<uint64_t>(j + lane);
        block_lo[lane] = static_cast<uint32_t>(block);
        block_hi[lane] = static_cast<uint32_t>(block >> 32);
      }
      __m256i c0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(block_lo));
      __m256i c1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(block_hi));
      __m256i c2 = stream_lo, c3 = stream_hi;
      for (int round = 0; round < kPhiloxRounds; ++round) {
        __m256i hi0, lo0, hi1, lo1;
        mulhilo_x8(c0, m0, &hi0, &lo0);
        mulhilo_x8(c2, m1, &hi1, &lo1);
        c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), key0[round]);
        c1 = lo1;
        c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), key1[round]);
        c3 = lo0;
      }
      _mm256_store_si256(reinterpret_cast<__m256i*>(&words[0][j]), c0);
      _mm256_store_si256(reinterpret_cast<__m256i*>(&words[1][j]), c1);
      _mm256_store_si256(reinterpret_cast<__m256i*>(&words[2][j]), c2);
      _mm256_store_si256(reinterpret_cast<__m256i*>(&words[3][j]), c3);
    }
  }
};

}  // namespace

bool fill_range_avx2(const FillRequest& request, uint64_t begin, uint64_t end) {
  return dispatch_transform(request.kind, request.dtype,
                            ChunkedFill<PhiloxChunkAvx2>{request, begin, end});
}

}  // namespace detnoise
