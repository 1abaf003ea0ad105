// brownian.h — the Brownian tree of docs/SPEC.md §9 for host and device: the query request, the
// per-element arithmetic (written once, in the spec's order), and the per-thread body that the CUDA
// kernel wraps and the CPU's scalar path runs as it stands.
#pragma once

#include <cstdint>

#include "detnoise/fill.h"
#include "detnoise/philox.h"
#include "detnoise/transforms.h"

namespace detnoise {

// Note [Brownian tree layout] (normative text: docs/SPEC.md §9.2)
//   node 0 = W(1); the bridge splitting interval k of depth d is node 2^d + k (heap numbering)
//   Z_node[i] = element i of the normal draw of (seed S ^ kBrownianKeyTweak, stream node, offset 0)
// The tweak (pi's hex digits after spawn's) gives the tree a Philox key that no generator or
// derivation of seed S uses, so its blocks are never another stream's.
constexpr uint64_t kBrownianKeyTweak = 0x38D01377452821E6ull;
constexpr int kBrownianMaxDepth = 52;
// Rows per request: the request travels in a CUDA kernel's parameter block.
constexpr int kBrownianMaxRows = 32;

// How one end point's W is obtained. Every mode gives the bits of SPEC §9.4; kZero and kKnown skip
// work whose result the spec fixes (u = 0 gives +0; a W computed earlier for the same u).
enum class BrownianMode : int { kZero = 0, kEnd = 1, kDescend = 2, kKnown = 3 };

struct BrownianPoint {
  BrownianMode mode;
  uint64_t leaf;      // kDescend: the leaf interval index k at depth D (its bits are the path)
  double beta;        // kDescend: (u - k 2^-D) 2^D, in [0, 1)
  const void* known;  // kKnown: rows * n values of W in the compute type
  void* save;         // optional: where to store this point's W (compute type), or null
};

// One query W(t) - W(s) (point[0] = s, point[1] = t) over `rows` rows of `n` elements.
struct BrownianRequest {
  DType dtype;  // of `out`; the compute type is float64 for kFloat64, else float32
  void* out;    // rows * n results, or null to only save points
  uint64_t n;
  uint32_t rows;
  int depth;
  double sigma_end;                    // sqrt(L), SPEC §9.3
  double sigma[kBrownianMaxDepth];     // sqrt(L 2^-(d+2))
  uint64_t seeds[kBrownianMaxRows];    // tree seeds S, one per row
  BrownianPoint point[2];
};

// ---- per-element arithmetic (SPEC §9.4): one rounding per written operation ----------------------

template <typename T>
DETNOISE_HD T brownian_midpoint(T w_a, T w_b, T sigma, T z) {
  return ((w_a + w_b) * static_cast<T>(0.5)) + (sigma * z);
}

template <typename T>
DETNOISE_HD T brownian_leaf(T w_a, T w_b, T beta) {
  return w_a + (beta * (w_b - w_a));
}

// Node split at depth d on the way to leaf `leaf` of a depth-D tree.
DETNOISE_HD uint64_t brownian_node(int d, int depth, uint64_t leaf) {
  return (uint64_t{1} << d) + (leaf >> (depth - d));
}

// Whether the path to `leaf` takes the right half at depth d.
DETNOISE_HD bool brownian_goes_right(int d, int depth, uint64_t leaf) {
  return ((leaf >> (depth - 1 - d)) & 1u) != 0;
}

// The compute type's normal transform: float32 draws for float32/16-bit results, float64 for float64.
template <typename T> struct BrownianNormal;
template <> struct BrownianNormal<float> { using Transform = NormalF32; static constexpr DType kDType = DType::kFloat32; };
template <> struct BrownianNormal<double> { using Transform = NormalF64; static constexpr DType kDType = DType::kFloat64; };

DETNOISE_HD void brownian_store(DType dtype, void* out, uint64_t index, float value) {
  switch (dtype) {
    case DType::kFloat16: static_cast<uint16_t*>(out)[index] = f16_bits_from_f32(value); break;
    case DType::kBFloat16: static_cast<uint16_t*>(out)[index] = bf16_bits_from_f32(value); break;
    default: static_cast<float*>(out)[index] = value; break;
  }
}

DETNOISE_HD void brownian_store(DType, void* out, uint64_t index, double value) {
  static_cast<double*>(out)[index] = value;
}

// ---- one span of elements of one row ----------------------------------------------------------
// W(t) - W(s) for elements [first, first + lanes) of row `row` (lanes past n are computed and
// dropped). `source(node, z)` writes Z_node for those lanes. The two points descend in lockstep and
// share a node's Gaussians while their paths agree. Scratch arrays hold `lanes` values each.

struct BrownianScratch {
  void* z;
  void* w_m;
  void* w_a[2];
  void* w_b[2];
};

template <typename T, typename Source>
DETNOISE_HD void brownian_span(const BrownianRequest& request, uint64_t row, uint64_t first, uint64_t lanes,
                               const Source& source, const BrownianScratch& scratch) {
  T* z = static_cast<T*>(scratch.z);
  T* w_m = static_cast<T*>(scratch.w_m);
  T* w_a[2] = {static_cast<T*>(scratch.w_a[0]), static_cast<T*>(scratch.w_a[1])};
  T* w_b[2] = {static_cast<T*>(scratch.w_b[0]), static_cast<T*>(scratch.w_b[1])};
  const int depth = request.depth;
  bool descend[2];
  bool needs_end = false;
  for (int p = 0; p < 2; ++p) {
    descend[p] = request.point[p].mode == BrownianMode::kDescend;
    needs_end = needs_end || descend[p] || request.point[p].mode == BrownianMode::kEnd;
  }
  if (needs_end) {
    source(uint64_t{0}, z);
    const T sigma_end = static_cast<T>(request.sigma_end);
    for (uint64_t e = 0; e < lanes; ++e) {
      const T w_end = sigma_end * z[e];
      w_b[0][e] = w_end;
      w_b[1][e] = w_end;
      w_a[0][e] = static_cast<T>(0);
      w_a[1][e] = static_cast<T>(0);
    }
  }
  for (int d = 0; d < depth && (descend[0] || descend[1]); ++d) {
    const uint64_t node0 = brownian_node(d, depth, request.point[0].leaf);
    const uint64_t node1 = brownian_node(d, depth, request.point[1].leaf);
    const T sigma = static_cast<T>(request.sigma[d]);
    // The same node at this depth means the same path so far, hence the same (w_a, w_b): point 1
    // reuses point 0's midpoint.
    const bool shared = descend[0] && descend[1] && node0 == node1;
    for (int p = 0; p < 2; ++p) {
      if (!descend[p]) continue;
      if (!(shared && p == 1)) {
        source(p == 0 ? node0 : node1, z);
        for (uint64_t e = 0; e < lanes; ++e) w_m[e] = brownian_midpoint(w_a[p][e], w_b[p][e], sigma, z[e]);
      }
      T* replaced = brownian_goes_right(d, depth, request.point[p].leaf) ? w_a[p] : w_b[p];
      for (uint64_t e = 0; e < lanes; ++e) replaced[e] = w_m[e];
    }
  }
  const uint64_t end = first + lanes < request.n ? first + lanes : request.n;
  for (uint64_t element = first; element < end; ++element) {
    const uint64_t e = element - first;
    const uint64_t index = row * request.n + element;
    T w[2];
    for (int p = 0; p < 2; ++p) {
      const BrownianPoint& point = request.point[p];
      switch (point.mode) {
        case BrownianMode::kZero: w[p] = static_cast<T>(0); break;
        case BrownianMode::kEnd: w[p] = w_b[p][e]; break;
        case BrownianMode::kDescend: w[p] = brownian_leaf(w_a[p][e], w_b[p][e], static_cast<T>(point.beta)); break;
        default: w[p] = static_cast<const T*>(point.known)[index]; break;
      }
      if (point.save != nullptr) static_cast<T*>(point.save)[index] = w[p];
    }
    if (request.out != nullptr) brownian_store(request.dtype, request.out, index, w[1] - w[0]);
  }
}

// Z_node for the kPerBlock elements of one Philox block: the per-thread body's source.
template <typename T>
struct BrownianBlockSource {
  uint64_t key;
  uint64_t block;
  DETNOISE_HD void operator()(uint64_t node, T* z) const {
    BrownianNormal<T>::Transform::block(philox_block(key, node, block), z);
  }
};

DETNOISE_HD bool brownian_computes_in_f64(const BrownianRequest& request) {
  return request.dtype == DType::kFloat64;
}

DETNOISE_HD uint64_t brownian_blocks_per_row(const BrownianRequest& request) {
  const uint64_t per = brownian_computes_in_f64(request) ? 2 : 4;
  return (request.n + per - 1) / per;
}

// The body every backend can run: work item = (row, Philox block), items thread_index,
// thread_index + thread_count, ... The CUDA kernel is this function; the CPU's scalar path calls it.
template <typename T>
DETNOISE_HD void brownian_thread_typed(uint64_t thread_index, uint64_t thread_count, const BrownianRequest& request) {
  constexpr int kPer = BrownianNormal<T>::Transform::kPerBlock;
  const uint64_t per_row = brownian_blocks_per_row(request);
  const uint64_t items = per_row * request.rows;
  T z[kPer], w_m[kPer], w_a0[kPer], w_a1[kPer], w_b0[kPer], w_b1[kPer];
  const BrownianScratch scratch{z, w_m, {w_a0, w_a1}, {w_b0, w_b1}};
  for (uint64_t item = thread_index; item < items; item += thread_count) {
    const uint64_t row = item / per_row;
    const uint64_t block = item - row * per_row;
    const BrownianBlockSource<T> source{request.seeds[row] ^ kBrownianKeyTweak, block};
    brownian_span<T>(request, row, block * kPer, kPer, source, scratch);
  }
}

DETNOISE_HD void brownian_thread(uint64_t thread_index, uint64_t thread_count, const BrownianRequest& request) {
  if (brownian_computes_in_f64(request)) {
    brownian_thread_typed<double>(thread_index, thread_count, request);
  } else {
    brownian_thread_typed<float>(thread_index, thread_count, request);
  }
}

}  // namespace detnoise
