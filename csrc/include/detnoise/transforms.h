// transforms.h — Philox words -> uniform and normal values, defined bit-for-bit by docs/SPEC.md §4-§6.
// Only IEEE-exact operations (+ - * / sqrt, exact integer<->float conversions) appear here, each
// written out in the order the spec gives: build with contraction off (-ffp-contract=off,
// nvcc --fmad=false) and never with fast-math, or CPU and CUDA results drift apart.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "detnoise/philox.h"

namespace detnoise {

// ---- bit casts -------------------------------------------------------------------------------

DETNOISE_HD uint32_t f32_bits(float value) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(value);
#else
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
#endif
}

DETNOISE_HD float f32_from_bits(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
#endif
}

DETNOISE_HD uint64_t f64_bits(double value) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint64_t>(__double_as_longlong(value));
#else
  uint64_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
#endif
}

DETNOISE_HD double f64_from_bits(uint64_t bits) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(bits));
#else
  double value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
#endif
}

DETNOISE_HD float sqrt_f32(float value) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(value);
#else
  return std::sqrt(value);  // IEEE correctly rounded (sqrtss / fsqrt)
#endif
}

DETNOISE_HD double sqrt_f64(double value) {
#if defined(__CUDA_ARCH__)
  return __dsqrt_rn(value);
#else
  return std::sqrt(value);
#endif
}

// ---- narrowing to 16-bit formats, round to nearest even (SPEC §6) ------------------------------
// Written with integer operations so that host and device share one definition; finite inputs only
// (detnoise never produces NaN or infinity).

DETNOISE_HD uint16_t bf16_bits_from_f32(float value) {
  const uint32_t bits = f32_bits(value);
  return static_cast<uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

DETNOISE_HD uint16_t f16_bits_from_f32(float value) {
  const uint32_t bits = f32_bits(value);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const uint32_t magnitude = bits & 0x7FFFFFFFu;
  if (magnitude >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520 -> inf
  if (magnitude < 0x38800000u) {  // below 2^-14: a float16 subnormal or zero
    const uint32_t shift = 126u - (magnitude >> 23);
    if (shift > 25u) return static_cast<uint16_t>(sign);  // below 2^-26: rounds to zero
    const uint32_t mantissa = (magnitude & 0x7FFFFFu) | 0x800000u;
    uint32_t rounded = mantissa >> shift;
    const uint32_t remainder = mantissa & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1u);
    if (remainder > halfway || (remainder == halfway && (rounded & 1u))) ++rounded;
    return static_cast<uint16_t>(sign | rounded);
  }
  const uint32_t rebased = magnitude - 0x38000000u;  // exponent bias 127 -> 15
  uint32_t rounded = rebased >> 13;
  const uint32_t remainder = rebased & 0x1FFFu;
  if (remainder > 0x1000u || (remainder == 0x1000u && (rounded & 1u))) ++rounded;
  return static_cast<uint16_t>(sign | rounded);
}

// ---- uniform [0, 1) (SPEC §4) --------------------------------------------------------------

// The shifted words are below 2^24, so converting them as int32 is exact and vectorises (SIMD units
// convert signed, not unsigned, 32-bit integers).
DETNOISE_HD float uniform_f32_from_bits(uint32_t x) {
  return static_cast<float>(static_cast<int32_t>(x >> 8)) * 0x1p-24f;  // exact: 24 bits times 2^-24
}

DETNOISE_HD double uniform_f64_from_bits(uint32_t lo, uint32_t hi) {
  const uint64_t word = (static_cast<uint64_t>(hi) << 32) | lo;
  return static_cast<double>(word >> 11) * 0x1p-53;
}

// float16 keeps the top 11 bits, bfloat16 the top 8: every k * 2^-11 (k < 2^11) and k * 2^-8
// (k < 2^8) is exact in the narrow format, so u stays in [0, 1) and is never rounded up to 1.
DETNOISE_HD uint16_t uniform_f16_from_bits(uint32_t x) {
  return f16_bits_from_f32(static_cast<float>(static_cast<int32_t>(x >> 21)) * 0x1p-11f);
}

DETNOISE_HD uint16_t uniform_bf16_from_bits(uint32_t x) {
  return bf16_bits_from_f32(static_cast<float>(static_cast<int32_t>(x >> 24)) * 0x1p-8f);
}

// ---- natural logarithm on (0, 1] (SPEC §5.2) -------------------------------------------------
// fdlibm's reduction and polynomial: x = 2^k * m, m in [sqrt(2)/2, sqrt(2)), f = m - 1,
// s = f / (2 + f), log(1 + f) = f - f^2/2 + s * (f^2/2 + R(s^2)).

namespace log_f32_coeff {
constexpr float kLn2Hi = 0x1.62e300p-1f;  // 6.9313812256e-01, low 7 bits zero: k * kLn2Hi is exact
constexpr float kLn2Lo = 0x1.2fefa2p-17f; // 9.0580006145e-06
constexpr float kLg1 = 0x1.555554p-1f;    // 0.66666662693
constexpr float kLg2 = 0x1.999c26p-2f;    // 0.40000972152
constexpr float kLg3 = 0x1.23d3dcp-2f;    // 0.28498786688
constexpr float kLg4 = 0x1.f13c4cp-3f;    // 0.24279078841
}  // namespace log_f32_coeff

// x must be a positive normal float32.
DETNOISE_HD float log_f32(float x) {
  using namespace log_f32_coeff;
  uint32_t ix = f32_bits(x);
  ix += 0x3F800000u - 0x3F3504F3u;  // moves the split point of the mantissa to sqrt(2)
  const int k = static_cast<int>(ix >> 23) - 0x7F;
  ix = (ix & 0x007FFFFFu) + 0x3F3504F3u;
  const float f = f32_from_bits(ix) - 1.0f;
  const float s = f / (2.0f + f);
  const float z = s * s;
  const float w = z * z;
  const float t1 = w * (kLg2 + w * kLg4);
  const float t2 = z * (kLg1 + w * kLg3);
  const float r = t2 + t1;
  const float hfsq = (0.5f * f) * f;
  const float dk = static_cast<float>(k);
  return (((s * (hfsq + r) + dk * kLn2Lo) - hfsq) + f) + dk * kLn2Hi;
}

namespace log_f64_coeff {
constexpr double kLn2Hi = 0x1.62e42feep-1;             // 6.93147180369123816490e-01
constexpr double kLn2Lo = 0x1.a39ef35793c76p-33;       // 1.90821492927058770002e-10
constexpr double kLg1 = 0x1.5555555555593p-1;           // 6.666666666666735130e-01
constexpr double kLg2 = 0x1.999999997fa04p-2;           // 3.999999999940941908e-01
constexpr double kLg3 = 0x1.2492494229359p-2;           // 2.857142874366239149e-01
constexpr double kLg4 = 0x1.c71c51d8e78afp-3;           // 2.222219843214978396e-01
constexpr double kLg5 = 0x1.7466496cb03dep-3;           // 1.818357216161805012e-01
constexpr double kLg6 = 0x1.39a09d078c69fp-3;           // 1.531383769920937332e-01
constexpr double kLg7 = 0x1.2f112df3e5244p-3;           // 1.479819860511658591e-01
}  // namespace log_f64_coeff

// x must be a positive normal float64.
DETNOISE_HD double log_f64(double x) {
  using namespace log_f64_coeff;
  const uint64_t bits = f64_bits(x);
  uint32_t hx = static_cast<uint32_t>(bits >> 32);
  hx += 0x3FF00000u - 0x3FE6A09Eu;
  const int k = static_cast<int>(hx >> 20) - 0x3FF;
  hx = (hx & 0x000FFFFFu) + 0x3FE6A09Eu;
  const double f = f64_from_bits((static_cast<uint64_t>(hx) << 32) | (bits & 0xFFFFFFFFu)) - 1.0;
  const double hfsq = (0.5 * f) * f;
  const double s = f / (2.0 + f);
  const double z = s * s;
  const double w = z * z;
  const double t1 = w * (kLg2 + w * (kLg4 + w * kLg6));
  const double t2 = z * (kLg1 + w * (kLg3 + w * (kLg5 + w * kLg7)));
  const double r = t2 + t1;
  const double dk = static_cast<double>(k);
  return (((s * (hfsq + r) + dk * kLn2Lo) - hfsq) + f) + dk * kLn2Hi;
}

// ---- sine and cosine of a whole turn fraction (SPEC §5.3) --------------------------------------
// The angle 2*pi*v, v = x / 2^bits, is reduced exactly in integers to the nearest quarter turn q
// and a remainder t in [-1, 1] eighth turns (float32 rounding can reach 1 exactly); sin(pi*t/4) and cos(pi*t/4) are Taylor polynomials in
// t whose truncation error is far below one ulp on |t| <= 1. No argument reduction in floating point.

namespace sincos_f32_coeff {
constexpr float kS0 = 0x1.921fb6p-1f, kS1 = -0x1.4abbcep-4f, kS2 = 0x1.466bc6p-9f,
                kS3 = -0x1.32d2ccp-15f, kS4 = 0x1.507834p-22f;
constexpr float kC1 = -0x1.3bd3ccp-2f, kC2 = 0x1.03c1f0p-6f, kC3 = -0x1.55d3c8p-12f,
                kC4 = 0x1.e1f506p-19f, kC5 = -0x1.a6d1f2p-26f;
}  // namespace sincos_f32_coeff

namespace sincos_f64_coeff {
constexpr double kS0 = 0x1.921fb54442d18p-1, kS1 = -0x1.4abbce625be53p-4,
                 kS2 = 0x1.466bc6775aae2p-9, kS3 = -0x1.32d2cce62bd86p-15,
                 kS4 = 0x1.50783487ee782p-22, kS5 = -0x1.e3074fde8871fp-30,
                 kS6 = 0x1.e8f434d018d63p-38, kS7 = -0x1.6fadb9f155744p-46;
constexpr double kC1 = -0x1.3bd3cc9be45dep-2, kC2 = 0x1.03c1f081b5ac4p-6,
                 kC3 = -0x1.55d3c7e3cbffap-12, kC4 = 0x1.e1f506891babbp-19,
                 kC5 = -0x1.a6d1f2a204a8cp-26, kC6 = 0x1.f9d38a3763cc3p-34,
                 kC7 = -0x1.b6e24f44b128fp-42, kC8 = 0x1.20c62c2f2d7f5p-50;
}  // namespace sincos_f64_coeff

// Rotates (cos, sin) of the remainder angle by `quarter` quarter turns. Negation is a sign-bit flip,
// written as one: selects and xors vectorise, conditional stores do not.
DETNOISE_HD void rotate_quarter_turns(unsigned quarter, float cos_r, float sin_r, float* sin_out,
                                      float* cos_out) {
  const bool swap = (quarter & 1u) != 0;
  const uint32_t cos_sign = ((quarter + 1u) & 2u) << 30;  // quarters 1 and 2 negate the cosine
  const uint32_t sin_sign = (quarter & 2u) << 30;         // quarters 2 and 3 negate the sine
  *cos_out = f32_from_bits(f32_bits(swap ? sin_r : cos_r) ^ cos_sign);
  *sin_out = f32_from_bits(f32_bits(swap ? cos_r : sin_r) ^ sin_sign);
}

DETNOISE_HD void rotate_quarter_turns(unsigned quarter, double cos_r, double sin_r, double* sin_out,
                                      double* cos_out) {
  const bool swap = (quarter & 1u) != 0;
  const uint64_t cos_sign = static_cast<uint64_t>((quarter + 1u) & 2u) << 62;
  const uint64_t sin_sign = static_cast<uint64_t>(quarter & 2u) << 62;
  *cos_out = f64_from_bits(f64_bits(swap ? sin_r : cos_r) ^ cos_sign);
  *sin_out = f64_from_bits(f64_bits(swap ? cos_r : sin_r) ^ sin_sign);
}

// sin and cos of 2*pi * x / 2^32.
DETNOISE_HD void sincos_turn_f32(uint32_t x, float* sin_out, float* cos_out) {
  using namespace sincos_f32_coeff;
  const uint32_t nearest = (x + 0x20000000u) >> 30;  // nearest quarter turn (wraps mod 4)
  const int32_t remainder = static_cast<int32_t>(x - (nearest << 30));  // in [-2^29, 2^29)
  const float t = static_cast<float>(remainder) * 0x1p-29f;  // RNE above 2^24: |t| <= 1
  const float t2 = t * t;
  const float sin_r = t * (kS0 + t2 * (kS1 + t2 * (kS2 + t2 * (kS3 + t2 * kS4))));
  const float cos_r = 1.0f + t2 * (kC1 + t2 * (kC2 + t2 * (kC3 + t2 * (kC4 + t2 * kC5))));
  rotate_quarter_turns(nearest & 3u, cos_r, sin_r, sin_out, cos_out);
}

// sin and cos of 2*pi * (y >> 11) / 2^53 (the top 53 bits of a 64-bit word).
DETNOISE_HD void sincos_turn_f64(uint64_t y, double* sin_out, double* cos_out) {
  using namespace sincos_f64_coeff;
  const uint64_t v = y >> 11;
  const uint64_t nearest = (v + (1ull << 50)) >> 51;  // 0..4; 4 means a whole turn
  const int64_t remainder = static_cast<int64_t>(v - (nearest << 51));  // in [-2^50, 2^50)
  const double t = static_cast<double>(remainder) * 0x1p-50;  // exact
  const double t2 = t * t;
  const double sin_r =
      t * (kS0 + t2 * (kS1 + t2 * (kS2 + t2 * (kS3 + t2 * (kS4 + t2 * (kS5 + t2 * (kS6 + t2 * kS7)))))));
  const double cos_r =
      1.0 + t2 * (kC1 + t2 * (kC2 + t2 * (kC3 + t2 * (kC4 + t2 * (kC5 + t2 * (kC6 + t2 * (kC7 + t2 * kC8)))))));
  rotate_quarter_turns(static_cast<unsigned>(nearest & 3u), cos_r, sin_r, sin_out, cos_out);
}

// ---- Box-Muller (SPEC §5.1) ------------------------------------------------------------------

// u = RNE((x + 1/2) * 2^-32): never 0, and the radius resolves u down to 2^-33 (|z| <= 6.77).
// Computed in float32 alone (no float64, which is slow on most GPUs): (x >> 8) * 2^-24 and
// ((x & 255) + 1/2) * 2^-32 are both exact, so their one addition rounds the exact x + 1/2 once.
// tests/native/uniform_exhaustive.cpp checks all 2^32 words against the float64 form of the spec.
DETNOISE_HD float open_uniform_f32_from_bits(uint32_t x) {
  const float high = static_cast<float>(static_cast<int32_t>(x >> 8)) * 0x1p-24f;
  const float low = static_cast<float>(static_cast<int32_t>(x & 0xFFu)) * 0x1p-32f + 0x1p-33f;
  return high + low;
}

// u = ((word >> 12) + 1/2) * 2^-52, exact: never 0, never 1.
DETNOISE_HD double open_uniform_f64_from_bits(uint64_t word) {
  const int64_t odd = 2 * static_cast<int64_t>(word >> 12) + 1;  // < 2^53: exact
  return static_cast<double>(odd) * 0x1p-53;
}

DETNOISE_HD void normal_pair_f32(uint32_t x_radius, uint32_t x_angle, float* z_even, float* z_odd) {
  const float log_u = log_f32(open_uniform_f32_from_bits(x_radius));
  const float radius = sqrt_f32(0.0f - (log_u + log_u));  // 0 - 2*log(u): +0, never -0, at u = 1
  float sin_v, cos_v;
  sincos_turn_f32(x_angle, &sin_v, &cos_v);
  *z_even = radius * cos_v;
  *z_odd = radius * sin_v;
}

DETNOISE_HD void normal_pair_f64(uint64_t word_radius, uint64_t word_angle, double* z_even,
                                 double* z_odd) {
  const double log_u = log_f64(open_uniform_f64_from_bits(word_radius));
  const double radius = sqrt_f64(0.0 - (log_u + log_u));
  double sin_v, cos_v;
  sincos_turn_f64(word_angle, &sin_v, &cos_v);
  *z_even = radius * cos_v;
  *z_odd = radius * sin_v;
}

// ---- per-block transforms used by every kernel -------------------------------------------------
// Each maps one Philox block to the `kPerBlock` stored values of a draw (Note [Stream layout v1]).
// `Storage` is the element's memory representation (16-bit formats are stored as raw bits).

struct BitsU32 {
  using Storage = uint32_t;
  static constexpr int kPerBlock = 4;
  DETNOISE_HD static void block(const Words4& b, Storage* out) {
    out[0] = b.w[0]; out[1] = b.w[1]; out[2] = b.w[2]; out[3] = b.w[3];
  }
};

struct UniformF32 {
  using Storage = float;
  static constexpr int kPerBlock = 4;
  DETNOISE_HD static void block(const Words4& b, Storage* out) {
    for (int i = 0; i < 4; ++i) out[i] = uniform_f32_from_bits(b.w[i]);
  }
};

struct UniformF16 {
  using Storage = uint16_t;
  static constexpr int kPerBlock = 4;
  DETNOISE_HD static void block(const Words4& b, Storage* out) {
    for (int i = 0; i < 4; ++i) out[i] = uniform_f16_from_bits(b.w[i]);
  }
};

struct UniformBF16 {
  using Storage = uint16_t;
  static constexpr int kPerBlock = 4;
  DETNOISE_HD static void block(const Words4& b, Storage* out) {
    for (int i = 0; i < 4; ++i) out[i] = uniform_bf16_from_bits(b.w[i]);
  }
};

struct UniformF64 {
  using Storage = double;
  static constexpr int kPerBlock = 2;
  DETNOISE_HD static void block(const Words4& b, Storage* out) {
    out[0] = uniform_f64_from_bits(b.w[0], b.w[1]);
    out[1] = uniform_f64_from_bits(b.w[2], b.w[3]);
  }
};

struct NormalF32 {
  using Storage = float;
  static constexpr int kPerBlock = 4;
  DETNOISE_HD static void block(const Words4& b, Storage* out) {
    normal_pair_f32(b.w[0], b.w[1], &out[0], &out[1]);
    normal_pair_f32(b.w[2], b.w[3], &out[2], &out[3]);
  }
};

// float16 / bfloat16 normals are the float32 normals rounded to nearest even (SPEC §6).
template <uint16_t (*Narrow)(float)>
struct NormalNarrow {
  using Storage = uint16_t;
  static constexpr int kPerBlock = 4;
  DETNOISE_HD static void block(const Words4& b, Storage* out) {
    float z[4];
    NormalF32::block(b, z);
    for (int i = 0; i < 4; ++i) out[i] = Narrow(z[i]);
  }
};
using NormalF16 = NormalNarrow<f16_bits_from_f32>;
using NormalBF16 = NormalNarrow<bf16_bits_from_f32>;

struct NormalF64 {
  using Storage = double;
  static constexpr int kPerBlock = 2;
  DETNOISE_HD static void block(const Words4& b, Storage* out) {
    const uint64_t radius_word = (static_cast<uint64_t>(b.w[1]) << 32) | b.w[0];
    const uint64_t angle_word = (static_cast<uint64_t>(b.w[3]) << 32) | b.w[2];
    normal_pair_f64(radius_word, angle_word, &out[0], &out[1]);
  }
};

// What a draw produces and in which format; the numbering is shared with the Python side.
enum class Kind : int { kBits = 0, kUniform = 1, kNormal = 2 };
enum class DType : int { kUInt32 = 0, kFloat32 = 1, kFloat64 = 2, kFloat16 = 3, kBFloat16 = 4 };

// Calls visitor.template run<Transform>() for the (kind, dtype) pair; false if unsupported.
template <typename Visitor>
bool dispatch_transform(Kind kind, DType dtype, const Visitor& visitor) {
  switch (kind) {
    case Kind::kBits:
      if (dtype == DType::kUInt32) { visitor.template run<BitsU32>(); return true; }
      return false;
    case Kind::kUniform:
      switch (dtype) {
        case DType::kFloat32: visitor.template run<UniformF32>(); return true;
        case DType::kFloat64: visitor.template run<UniformF64>(); return true;
        case DType::kFloat16: visitor.template run<UniformF16>(); return true;
        case DType::kBFloat16: visitor.template run<UniformBF16>(); return true;
        default: return false;
      }
    case Kind::kNormal:
      switch (dtype) {
        case DType::kFloat32: visitor.template run<NormalF32>(); return true;
        case DType::kFloat64: visitor.template run<NormalF64>(); return true;
        case DType::kFloat16: visitor.template run<NormalF16>(); return true;
        case DType::kBFloat16: visitor.template run<NormalBF16>(); return true;
        default: return false;
      }
  }
  return false;
}

}  // namespace detnoise
