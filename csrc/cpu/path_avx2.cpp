// path_avx2.cpp — the CPU path for x86-64 with AVX2, chosen at run time. Built with -mavx2 and
// without -mfma: the compiler may not contract a*b+c (also -ffp-contract=off), and every float
// intrinsic below is one IEEE operation of docs/SPEC.md, in the spec's order.
//
// Philox runs eight blocks per step in 64-bit lanes: vpmuludq reads the low word of each lane and
// leaves the whole product, whose low half is the next `lo` as it stands and whose high half is one
// shift away. Normals of every dtype, and uniforms and bits of the 32- and 16-bit dtypes, are fused
// with Philox (words stay in registers, results are transposed to element order and stored 32 bytes
// at a time); float64 uniforms use the shared chunked loop, which the compiler vectorises.
#include <immintrin.h>

#include <type_traits>

#include "chunked.h"
#include "cpu_paths.h"

namespace detnoise {
namespace {

inline __m256 set1(float value) { return _mm256_set1_ps(value); }
inline __m256i set1i(uint32_t value) { return _mm256_set1_epi32(static_cast<int>(value)); }

// ---- Philox4x32-10, eight blocks ---------------------------------------------------------------

// Per-draw constants. Rounds 0 and 1 see the stream words, which are the same in every lane, so
// their products and the keys they meet are folded here.
struct PhiloxKeysAvx2 {
  __m256i key0[kPhiloxRounds];
  __m256i key1[kPhiloxRounds];
  __m256i round0_x0;  // hi(M1 * stream_lo) ^ key0: XORed with the block's high word
  __m256i round0_x2;  // stream_hi ^ key1: XORed with hi(M0 * block_lo)
  __m256i round1_w1;  // lo(M1 * stream_lo): word 1 after round 0
  __m256i round1_x0;  // lo(M1 * stream_lo) ^ key0 of round 1

  PhiloxKeysAvx2(uint64_t seed, uint64_t stream) {
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    uint32_t keys0[kPhiloxRounds], keys1[kPhiloxRounds];
    for (int round = 0; round < kPhiloxRounds; ++round) {
      if (round > 0) {
        k0 += kPhiloxW32_0;
        k1 += kPhiloxW32_1;
      }
      keys0[round] = k0;
      keys1[round] = k1;
      key0[round] = set1i(k0);
      key1[round] = set1i(k1);
    }
    uint32_t hi1;
    const uint32_t lo1 = mulhilo32(kPhiloxM4x32_1, static_cast<uint32_t>(stream), &hi1);
    round0_x0 = set1i(hi1 ^ keys0[0]);
    round0_x2 = set1i(static_cast<uint32_t>(stream >> 32) ^ keys1[0]);
    round1_w1 = set1i(lo1);
    round1_x0 = set1i(lo1 ^ keys0[1]);
  }
};

// Blocks first+lanes[i] in 64-bit lane i: the low word of each lane is the block's low word, and
// a second vector holds the high word.
inline void block_counters(uint64_t first, __m256i lanes, __m256i* lo, __m256i* hi) {
  *lo = _mm256_add_epi64(_mm256_set1_epi64x(static_cast<long long>(first)), lanes);
  *hi = _mm256_srli_epi64(*lo, 32);
}

// Words of blocks first .. first+7: word m of block first+j in 32-bit lane j of w[m]. The two
// halves hold blocks {0,1,4,5} and {2,3,6,7}, so one vshufps per word puts the low halves of their
// 64-bit lanes in block order. Only the low word of each lane is ever read (by vpmuludq, the XORs
// and that final shuffle); the junk in the high halves never reaches it.
inline void philox8_avx2(const PhiloxKeysAvx2& keys, uint64_t first, __m256i w[4]) {
  const __m256i m0 = _mm256_set1_epi64x(kPhiloxM4x32_0);
  const __m256i m1 = _mm256_set1_epi64x(kPhiloxM4x32_1);
  __m256i a0, a1, b0, b1;
  block_counters(first, _mm256_setr_epi64x(0, 1, 4, 5), &a0, &a1);
  block_counters(first, _mm256_setr_epi64x(2, 3, 6, 7), &b0, &b1);
  // Round 0: words 2 and 3 are the stream, the same everywhere.
  __m256i pa0 = _mm256_mul_epu32(a0, m0), pb0 = _mm256_mul_epu32(b0, m0);
  a0 = _mm256_xor_si256(a1, keys.round0_x0);
  b0 = _mm256_xor_si256(b1, keys.round0_x0);
  __m256i a2 = _mm256_xor_si256(_mm256_srli_epi64(pa0, 32), keys.round0_x2);
  __m256i b2 = _mm256_xor_si256(_mm256_srli_epi64(pb0, 32), keys.round0_x2);
  __m256i a3 = pa0, b3 = pb0;
  // Round 1: word 1 is still the same everywhere.
  pa0 = _mm256_mul_epu32(a0, m0);
  pb0 = _mm256_mul_epu32(b0, m0);
  __m256i pa1 = _mm256_mul_epu32(a2, m1), pb1 = _mm256_mul_epu32(b2, m1);
  a0 = _mm256_xor_si256(_mm256_srli_epi64(pa1, 32), keys.round1_x0);
  b0 = _mm256_xor_si256(_mm256_srli_epi64(pb1, 32), keys.round1_x0);
  a2 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(pa0, 32), a3), keys.key1[1]);
  b2 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(pb0, 32), b3), keys.key1[1]);
  a1 = pa1;
  b1 = pb1;
  a3 = pa0;
  b3 = pb0;
  for (int round = 2; round < kPhiloxRounds; ++round) {
    pa0 = _mm256_mul_epu32(a0, m0);
    pb0 = _mm256_mul_epu32(b0, m0);
    pa1 = _mm256_mul_epu32(a2, m1);
    pb1 = _mm256_mul_epu32(b2, m1);
    a0 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(pa1, 32), a1), keys.key0[round]);
    b0 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(pb1, 32), b1), keys.key0[round]);
    a2 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(pa0, 32), a3), keys.key1[round]);
    b2 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(pb0, 32), b3), keys.key1[round]);
    a1 = pa1;
    b1 = pb1;
    a3 = pa0;
    b3 = pb0;
  }
  const __m256i a[4] = {a0, a1, a2, a3}, b[4] = {b0, b1, b2, b3};
  for (int m = 0; m < 4; ++m) {
    w[m] = _mm256_castps_si256(
        _mm256_shuffle_ps(_mm256_castsi256_ps(a[m]), _mm256_castsi256_ps(b[m]), 0x88));
  }
}

// Words for the chunked loop (float64 uniforms).
struct PhiloxChunkAvx2 {
  static void run(uint64_t seed, uint64_t stream, uint64_t first_block, ChunkWords& words) {
    const PhiloxKeysAvx2 keys(seed, stream);
    for (int j = 0; j < kChunkBlocks; j += 8) {
      __m256i w[4];
      philox8_avx2(keys, first_block + static_cast<uint64_t>(j), w);
      for (int m = 0; m < 4; ++m) _mm256_store_si256(reinterpret_cast<__m256i*>(&words[m][j]), w[m]);
    }
  }
};

// ---- float32 transforms, eight lanes (same operations as transforms.h) ----------------------------

inline __m256 uniform_f32_x8(__m256i x) {
  return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(x, 8)), set1(0x1p-24f));
}

// u = RNE((x + 1/2) * 2^-32) as the exact sum (x >> 8) * 2^-24 + ((x & 255) + 1/2) * 2^-32 rounded
// once: both terms are exact, so the one addition rounds the exact value, as the spec's u does.
inline __m256 open_uniform_f32_x8(__m256i x) {
  const __m256 high = uniform_f32_x8(x);
  const __m256 low = _mm256_add_ps(
      _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(x, set1i(0xFFu))), set1(0x1p-32f)),
      set1(0x1p-33f));
  return _mm256_add_ps(high, low);
}

inline __m256 log_f32_x8(__m256 x) {
  using namespace log_f32_coeff;
  __m256i ix = _mm256_add_epi32(_mm256_castps_si256(x), set1i(0x3F800000u - 0x3F3504F3u));
  const __m256 dk = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(ix, 23), set1i(0x7F)));
  ix = _mm256_add_epi32(_mm256_and_si256(ix, set1i(0x007FFFFFu)), set1i(0x3F3504F3u));
  const __m256 f = _mm256_sub_ps(_mm256_castsi256_ps(ix), set1(1.0f));
  const __m256 s = _mm256_div_ps(f, _mm256_add_ps(set1(2.0f), f));
  const __m256 z = _mm256_mul_ps(s, s);
  const __m256 w = _mm256_mul_ps(z, z);
  const __m256 t1 = _mm256_mul_ps(w, _mm256_add_ps(set1(kLg2), _mm256_mul_ps(w, set1(kLg4))));
  const __m256 t2 = _mm256_mul_ps(z, _mm256_add_ps(set1(kLg1), _mm256_mul_ps(w, set1(kLg3))));
  const __m256 r = _mm256_add_ps(t2, t1);
  const __m256 hfsq = _mm256_mul_ps(_mm256_mul_ps(set1(0.5f), f), f);
  __m256 result = _mm256_mul_ps(s, _mm256_add_ps(hfsq, r));
  result = _mm256_add_ps(result, _mm256_mul_ps(dk, set1(kLn2Lo)));
  result = _mm256_sub_ps(result, hfsq);
  result = _mm256_add_ps(result, f);
  return _mm256_add_ps(result, _mm256_mul_ps(dk, set1(kLn2Hi)));
}

// sin and cos of 2*pi * x / 2^32 (sincos_turn_f32). With y = x + 2^29: the quarter is y >> 30 and
// the remainder (y & (2^30 - 1)) - 2^29; bit 30 of y swaps, bit 31 negates the sine, and bit 31 of
// y + 2^30 negates the cosine.
inline void sincos_turn_f32_x8(__m256i x, __m256* sin_out, __m256* cos_out) {
  using namespace sincos_f32_coeff;
  const __m256i y = _mm256_add_epi32(x, set1i(0x20000000u));
  const __m256i remainder = _mm256_sub_epi32(_mm256_and_si256(y, set1i(0x3FFFFFFFu)), set1i(0x20000000u));
  const __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(remainder), set1(0x1p-29f));
  const __m256 t2 = _mm256_mul_ps(t, t);
  __m256 sin_r = _mm256_add_ps(set1(kS3), _mm256_mul_ps(t2, set1(kS4)));
  sin_r = _mm256_add_ps(set1(kS2), _mm256_mul_ps(t2, sin_r));
  sin_r = _mm256_add_ps(set1(kS1), _mm256_mul_ps(t2, sin_r));
  sin_r = _mm256_add_ps(set1(kS0), _mm256_mul_ps(t2, sin_r));
  sin_r = _mm256_mul_ps(t, sin_r);
  __m256 cos_r = _mm256_add_ps(set1(kC4), _mm256_mul_ps(t2, set1(kC5)));
  cos_r = _mm256_add_ps(set1(kC3), _mm256_mul_ps(t2, cos_r));
  cos_r = _mm256_add_ps(set1(kC2), _mm256_mul_ps(t2, cos_r));
  cos_r = _mm256_add_ps(set1(kC1), _mm256_mul_ps(t2, cos_r));
  cos_r = _mm256_add_ps(set1(1.0f), _mm256_mul_ps(t2, cos_r));
  const __m256 swap = _mm256_castsi256_ps(_mm256_slli_epi32(y, 1));  // blendv reads the sign bit
  const __m256i sign = set1i(0x80000000u);
  const __m256 sin_sign = _mm256_castsi256_ps(_mm256_and_si256(y, sign));
  const __m256 cos_sign = _mm256_castsi256_ps(_mm256_and_si256(_mm256_add_epi32(y, set1i(0x40000000u)), sign));
  *cos_out = _mm256_xor_ps(_mm256_blendv_ps(cos_r, sin_r, swap), cos_sign);
  *sin_out = _mm256_xor_ps(_mm256_blendv_ps(sin_r, cos_r, swap), sin_sign);
}

inline void normal_pair_f32_x8(__m256i x_radius, __m256i x_angle, __m256* z_even, __m256* z_odd) {
  const __m256 log_u = log_f32_x8(open_uniform_f32_x8(x_radius));
  const __m256 radius = _mm256_sqrt_ps(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_add_ps(log_u, log_u)));
  __m256 sin_v, cos_v;
  sincos_turn_f32_x8(x_angle, &sin_v, &cos_v);
  *z_even = _mm256_mul_ps(radius, cos_v);
  *z_odd = _mm256_mul_ps(radius, sin_v);
}

// ---- narrowing to 16-bit formats (SPEC §6, as transforms.h), result in the low half of each lane --

inline __m256i bf16_bits_x8(__m256 value) {
  const __m256i bits = _mm256_castps_si256(value);
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), set1i(1));
  return _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(bits, set1i(0x7FFFu)), odd), 16);
}

// Inputs from 2^-14 up to 65520 (float16 normals): rebase the exponent and round to nearest even
// (the same integer as transforms.h's remainder test). Vectors with any other lane (zero,
// subnormal or overflowing results, rare in a draw) are finished by the scalar code.
inline __m256i f16_bits_x8(__m256 value) {
  const __m256i bits = _mm256_castps_si256(value);
  const __m256i magnitude = _mm256_and_si256(bits, set1i(0x7FFFFFFFu));
  const __m256i sign = _mm256_and_si256(_mm256_srli_epi32(bits, 16), set1i(0x8000u));
  const __m256i rebased = _mm256_sub_epi32(magnitude, set1i(0x38000000u));
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(rebased, 13), set1i(1));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(rebased, set1i(0xFFFu)), odd), 13);
  // Signed compares are safe: magnitudes are below 2^31.
  const __m256i outside = _mm256_or_si256(_mm256_cmpgt_epi32(set1i(0x38800000u), magnitude),
                                          _mm256_cmpgt_epi32(magnitude, set1i(0x477FEFFFu)));
  if (_mm256_testz_si256(outside, outside)) return _mm256_or_si256(rounded, sign);
  alignas(32) float values[8];
  alignas(32) uint32_t narrowed[8];
  _mm256_store_ps(values, value);
  for (int lane = 0; lane < 8; ++lane) narrowed[lane] = f16_bits_from_f32(values[lane]);
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(narrowed));
}

// ---- stores: v0..v3 hold elements 4j, 4j+1, 4j+2, 4j+3 of block j in lane j ---------------------

inline void store_transposed_32(__m256i v0, __m256i v1, __m256i v2, __m256i v3, void* target) {
  const __m256i a = _mm256_unpacklo_epi32(v0, v1), b = _mm256_unpackhi_epi32(v0, v1);
  const __m256i c = _mm256_unpacklo_epi32(v2, v3), d = _mm256_unpackhi_epi32(v2, v3);
  const __m256i p = _mm256_unpacklo_epi64(a, c);  // blocks 0 | 4
  const __m256i q = _mm256_unpackhi_epi64(a, c);  // blocks 1 | 5
  const __m256i r = _mm256_unpacklo_epi64(b, d);  // blocks 2 | 6
  const __m256i s = _mm256_unpackhi_epi64(b, d);  // blocks 3 | 7
  __m256i* out = static_cast<__m256i*>(target);
  _mm256_storeu_si256(out + 0, _mm256_permute2x128_si256(p, q, 0x20));
  _mm256_storeu_si256(out + 1, _mm256_permute2x128_si256(r, s, 0x20));
  _mm256_storeu_si256(out + 2, _mm256_permute2x128_si256(p, q, 0x31));
  _mm256_storeu_si256(out + 3, _mm256_permute2x128_si256(r, s, 0x31));
}

// 16-bit values in the low halves of the lanes.
inline void store_transposed_16(__m256i v0, __m256i v1, __m256i v2, __m256i v3, void* target) {
  const __m256i low = _mm256_or_si256(v0, _mm256_slli_epi32(v1, 16));   // elements 4j, 4j+1
  const __m256i high = _mm256_or_si256(v2, _mm256_slli_epi32(v3, 16));  // elements 4j+2, 4j+3
  const __m256i a = _mm256_unpacklo_epi32(low, high);  // blocks 0, 1 | 4, 5
  const __m256i b = _mm256_unpackhi_epi32(low, high);  // blocks 2, 3 | 6, 7
  __m256i* out = static_cast<__m256i*>(target);
  _mm256_storeu_si256(out + 0, _mm256_permute2x128_si256(a, b, 0x20));
  _mm256_storeu_si256(out + 1, _mm256_permute2x128_si256(a, b, 0x31));
}

inline __m256i bits_of(__m256 value) { return _mm256_castps_si256(value); }

// ---- fused kernels: what eight blocks' words become ---------------------------------------------

struct BitsAvx2 {
  static void store8(const __m256i w[4], void* out) { store_transposed_32(w[0], w[1], w[2], w[3], out); }
};

struct UniformF32Avx2 {
  static void store8(const __m256i w[4], void* out) {
    store_transposed_32(bits_of(uniform_f32_x8(w[0])), bits_of(uniform_f32_x8(w[1])),
                        bits_of(uniform_f32_x8(w[2])), bits_of(uniform_f32_x8(w[3])), out);
  }
};

// k * 2^-8 (k < 2^8) and k * 2^-11 (k < 2^11) are float32 values the narrowing keeps exactly.
template <int kBits, __m256i (*Narrow)(__m256)>
struct UniformNarrowAvx2 {
  static __m256i one(__m256i x) {
    return Narrow(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(x, 32 - kBits)), set1(1.0f / (1 << kBits))));
  }
  static void store8(const __m256i w[4], void* out) {
    store_transposed_16(one(w[0]), one(w[1]), one(w[2]), one(w[3]), out);
  }
};

struct NormalF32Avx2 {
  static void store8(const __m256i w[4], void* out) {
    __m256 e0, o0, e1, o1;
    normal_pair_f32_x8(w[0], w[1], &e0, &o0);
    normal_pair_f32_x8(w[2], w[3], &e1, &o1);
    store_transposed_32(bits_of(e0), bits_of(o0), bits_of(e1), bits_of(o1), out);
  }
};

template <__m256i (*Narrow)(__m256)>
struct NormalNarrowAvx2 {
  static void store8(const __m256i w[4], void* out) {
    __m256 e0, o0, e1, o1;
    normal_pair_f32_x8(w[0], w[1], &e0, &o0);
    normal_pair_f32_x8(w[2], w[3], &e1, &o1);
    store_transposed_16(Narrow(e0), Narrow(o0), Narrow(e1), Narrow(o1), out);
  }
};

// ---- float64 normals, four lanes (normal_pair_f64 of transforms.h) ------------------------------
// AVX2 has no int64 <-> double conversion; integers below 2^52 convert exactly by OR-ing them into
// the mantissa of 2^52 and subtracting 2^52.

inline __m256i set1q(uint64_t value) { return _mm256_set1_epi64x(static_cast<long long>(value)); }
inline __m256d set1d(double value) { return _mm256_set1_pd(value); }

inline __m256d small_u64_to_f64(__m256i value) {  // value < 2^52
  return _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(value, set1q(0x4330000000000000ull))), set1d(0x1p52));
}

// u = ((X >> 12) + 1/2) * 2^-52: X >> 12 < 2^52 converts exactly, adding 1/2 needs 53 bits (exact),
// and the power of two is exact: the spec's (2 (X >> 12) + 1) * 2^-53.
inline __m256d open_uniform_f64_x4(__m256i word) {
  return _mm256_mul_pd(_mm256_add_pd(small_u64_to_f64(_mm256_srli_epi64(word, 12)), set1d(0.5)), set1d(0x1p-52));
}

// log_f64 with the high word handled inside the 64-bit lane: adding c << 32 changes only the high
// word (no carry out of it for x <= 1), and (hx >> 20) is bits 52 and up.
inline __m256d log_f64_x4(__m256d x) {
  using namespace log_f64_coeff;
  const __m256i bits = _mm256_add_epi64(_mm256_castpd_si256(x), set1q(static_cast<uint64_t>(0x3FF00000u - 0x3FE6A09Eu) << 32));
  const __m256d dk = _mm256_sub_pd(small_u64_to_f64(_mm256_srli_epi64(bits, 52)), set1d(1023.0));
  const __m256i mantissa = _mm256_add_epi64(_mm256_and_si256(bits, set1q(0x000FFFFFFFFFFFFFull)),
                                            set1q(static_cast<uint64_t>(0x3FE6A09Eu) << 32));
  const __m256d f = _mm256_sub_pd(_mm256_castsi256_pd(mantissa), set1d(1.0));
  const __m256d hfsq = _mm256_mul_pd(_mm256_mul_pd(set1d(0.5), f), f);
  const __m256d s = _mm256_div_pd(f, _mm256_add_pd(set1d(2.0), f));
  const __m256d z = _mm256_mul_pd(s, s);
  const __m256d w = _mm256_mul_pd(z, z);
  __m256d t1 = _mm256_add_pd(set1d(kLg4), _mm256_mul_pd(w, set1d(kLg6)));
  t1 = _mm256_mul_pd(w, _mm256_add_pd(set1d(kLg2), _mm256_mul_pd(w, t1)));
  __m256d t2 = _mm256_add_pd(set1d(kLg5), _mm256_mul_pd(w, set1d(kLg7)));
  t2 = _mm256_add_pd(set1d(kLg3), _mm256_mul_pd(w, t2));
  t2 = _mm256_mul_pd(z, _mm256_add_pd(set1d(kLg1), _mm256_mul_pd(w, t2)));
  const __m256d r = _mm256_add_pd(t2, t1);
  __m256d result = _mm256_mul_pd(s, _mm256_add_pd(hfsq, r));
  result = _mm256_add_pd(result, _mm256_mul_pd(dk, set1d(kLn2Lo)));
  result = _mm256_sub_pd(result, hfsq);
  result = _mm256_add_pd(result, f);
  return _mm256_add_pd(result, _mm256_mul_pd(dk, set1d(kLn2Hi)));
}

// sincos_turn_f64: with y = (Y >> 11) + 2^50 the quarter is y >> 51 (bits 51-52 give it mod 4) and
// the remainder (y & (2^51 - 1)) - 2^50, exact in float64; bit 51 of y swaps, bit 52 negates the
// sine, and bit 52 of y + 2^51 negates the cosine.
inline void sincos_turn_f64_x4(__m256i word, __m256d* sin_out, __m256d* cos_out) {
  using namespace sincos_f64_coeff;
  const __m256i y = _mm256_add_epi64(_mm256_srli_epi64(word, 11), set1q(1ull << 50));
  const __m256d remainder = _mm256_sub_pd(small_u64_to_f64(_mm256_and_si256(y, set1q((1ull << 51) - 1))), set1d(0x1p50));
  const __m256d t = _mm256_mul_pd(remainder, set1d(0x1p-50));
  const __m256d t2 = _mm256_mul_pd(t, t);
  __m256d sin_r = _mm256_add_pd(set1d(kS6), _mm256_mul_pd(t2, set1d(kS7)));
  sin_r = _mm256_add_pd(set1d(kS5), _mm256_mul_pd(t2, sin_r));
  sin_r = _mm256_add_pd(set1d(kS4), _mm256_mul_pd(t2, sin_r));
  sin_r = _mm256_add_pd(set1d(kS3), _mm256_mul_pd(t2, sin_r));
  sin_r = _mm256_add_pd(set1d(kS2), _mm256_mul_pd(t2, sin_r));
  sin_r = _mm256_add_pd(set1d(kS1), _mm256_mul_pd(t2, sin_r));
  sin_r = _mm256_add_pd(set1d(kS0), _mm256_mul_pd(t2, sin_r));
  sin_r = _mm256_mul_pd(t, sin_r);
  __m256d cos_r = _mm256_add_pd(set1d(kC7), _mm256_mul_pd(t2, set1d(kC8)));
  cos_r = _mm256_add_pd(set1d(kC6), _mm256_mul_pd(t2, cos_r));
  cos_r = _mm256_add_pd(set1d(kC5), _mm256_mul_pd(t2, cos_r));
  cos_r = _mm256_add_pd(set1d(kC4), _mm256_mul_pd(t2, cos_r));
  cos_r = _mm256_add_pd(set1d(kC3), _mm256_mul_pd(t2, cos_r));
  cos_r = _mm256_add_pd(set1d(kC2), _mm256_mul_pd(t2, cos_r));
  cos_r = _mm256_add_pd(set1d(kC1), _mm256_mul_pd(t2, cos_r));
  cos_r = _mm256_add_pd(set1d(1.0), _mm256_mul_pd(t2, cos_r));
  const __m256i sign = set1q(0x8000000000000000ull);
  const __m256d swap = _mm256_castsi256_pd(_mm256_slli_epi64(y, 12));  // blendv reads bit 63
  const __m256d sin_sign = _mm256_castsi256_pd(_mm256_and_si256(_mm256_slli_epi64(y, 11), sign));
  const __m256d cos_sign =
      _mm256_castsi256_pd(_mm256_and_si256(_mm256_slli_epi64(_mm256_add_epi64(y, set1q(1ull << 51)), 11), sign));
  *cos_out = _mm256_xor_pd(_mm256_blendv_pd(cos_r, sin_r, swap), cos_sign);
  *sin_out = _mm256_xor_pd(_mm256_blendv_pd(sin_r, cos_r, swap), sin_sign);
}

inline void normal_pair_f64_x4(__m256i word_radius, __m256i word_angle, __m256d* z_even, __m256d* z_odd) {
  const __m256d log_u = log_f64_x4(open_uniform_f64_x4(word_radius));
  const __m256d radius = _mm256_sqrt_pd(_mm256_sub_pd(_mm256_setzero_pd(), _mm256_add_pd(log_u, log_u)));
  __m256d sin_v, cos_v;
  sincos_turn_f64_x4(word_angle, &sin_v, &cos_v);
  *z_even = _mm256_mul_pd(radius, cos_v);
  *z_odd = _mm256_mul_pd(radius, sin_v);
}

// Block j's elements 2j, 2j+1 from X = (w1 << 32) | w0 and Y = (w3 << 32) | w2. Unpacking the words
// gives 64-bit lanes for blocks {0,1,4,5} and {2,3,6,7}; the results are put back in block order.
struct NormalF64Avx2 {
  static void store8(const __m256i w[4], void* target) {
    __m256d even[2], odd[2];
    normal_pair_f64_x4(_mm256_unpacklo_epi32(w[0], w[1]), _mm256_unpacklo_epi32(w[2], w[3]), &even[0], &odd[0]);
    normal_pair_f64_x4(_mm256_unpackhi_epi32(w[0], w[1]), _mm256_unpackhi_epi32(w[2], w[3]), &even[1], &odd[1]);
    const __m256d a = _mm256_unpacklo_pd(even[0], odd[0]);  // blocks 0 | 4
    const __m256d b = _mm256_unpackhi_pd(even[0], odd[0]);  // blocks 1 | 5
    const __m256d c = _mm256_unpacklo_pd(even[1], odd[1]);  // blocks 2 | 6
    const __m256d d = _mm256_unpackhi_pd(even[1], odd[1]);  // blocks 3 | 7
    double* out = static_cast<double*>(target);
    _mm256_storeu_pd(out + 0, _mm256_permute2f128_pd(a, b, 0x20));
    _mm256_storeu_pd(out + 4, _mm256_permute2f128_pd(c, d, 0x20));
    _mm256_storeu_pd(out + 8, _mm256_permute2f128_pd(a, b, 0x31));
    _mm256_storeu_pd(out + 12, _mm256_permute2f128_pd(c, d, 0x31));
  }
};

template <typename Transform> struct FusedAvx2 { using type = void; };
template <> struct FusedAvx2<BitsU32> { using type = BitsAvx2; };
template <> struct FusedAvx2<UniformF32> { using type = UniformF32Avx2; };
template <> struct FusedAvx2<UniformF16> { using type = UniformNarrowAvx2<11, f16_bits_x8>; };
template <> struct FusedAvx2<UniformBF16> { using type = UniformNarrowAvx2<8, bf16_bits_x8>; };
template <> struct FusedAvx2<NormalF32> { using type = NormalF32Avx2; };
template <> struct FusedAvx2<NormalF16> { using type = NormalNarrowAvx2<f16_bits_x8>; };
template <> struct FusedAvx2<NormalBF16> { using type = NormalNarrowAvx2<bf16_bits_x8>; };
template <> struct FusedAvx2<NormalF64> { using type = NormalF64Avx2; };

// A partial first block goes through the scalar path.
template <typename Transform, typename Fused>
void fill_fused(const FillRequest& request, uint64_t begin, uint64_t end) {
  using Storage = typename Transform::Storage;
  constexpr uint64_t kPerBlock = Transform::kPerBlock;
  constexpr uint64_t kStep = 8 * kPerBlock;
  Storage* out = static_cast<Storage*>(request.out);
  uint64_t element = fill_leading_partial_block<Transform>(request, begin, end);
  if (element == end) return;
  const PhiloxKeysAvx2 keys(request.seed, request.stream);
  __m256i w[4];
  for (; end - element >= kStep; element += kStep) {
    philox8_avx2(keys, request.offset + element / kPerBlock, w);
    Fused::store8(w, out + (element - request.first_element));
  }
  if (element < end) {
    // The last, partial step: eight blocks into a buffer, the part in range copied out (the
    // blocks past the end wrap harmlessly modulo 2^64 and are thrown away).
    alignas(32) Storage buffer[kStep];
    philox8_avx2(keys, request.offset + element / kPerBlock, w);
    Fused::store8(w, buffer);
    std::copy(buffer, buffer + (end - element), out + (element - request.first_element));
  }
}

struct Avx2Fill {
  const FillRequest& request;
  uint64_t begin;
  uint64_t end;
  template <typename Transform>
  void run() const {
    using Fused = typename FusedAvx2<Transform>::type;
    if constexpr (std::is_void_v<Fused>) {
      fill_chunked<Transform, PhiloxChunkAvx2>(request, begin, end);
    } else {
      fill_fused<Transform, Fused>(request, begin, end);
    }
  }
};

}  // namespace

bool fill_range_avx2(const FillRequest& request, uint64_t begin, uint64_t end) {
  return dispatch_transform(request.kind, request.dtype, Avx2Fill{request, begin, end});
}

}  // namespace detnoise
