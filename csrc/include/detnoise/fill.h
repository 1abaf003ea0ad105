// fill.h — the draw request shared by the CPU and CUDA launchers (plain data, no torch types).
#pragma once

#include <cstdint>

#include "detnoise/philox.h"
#include "detnoise/transforms.h"

namespace detnoise {

// Elements [first_element, first_element + count) of the draw that starts at block `offset` of
// (seed, stream), written contiguously to `out`. A whole draw has first_element = 0.
struct FillRequest {
  Kind kind;
  DType dtype;
  void* out;
  uint64_t count;
  uint64_t first_element;
  uint64_t seed;
  uint64_t stream;
  uint64_t offset;
};

// Writes the values of element range [begin, end) of a draw to out[begin - request.first_element ...];
// one Philox block per kPerBlock elements, partial blocks at either end included.
template <typename Transform>
DETNOISE_HD void fill_block_range(const FillRequest& request, uint64_t begin, uint64_t end) {
  using Storage = typename Transform::Storage;
  constexpr uint64_t kPerBlock = Transform::kPerBlock;
  Storage* out = static_cast<Storage*>(request.out);
  uint64_t element = begin;
  while (element < end) {
    const uint64_t block = element / kPerBlock;
    Storage values[kPerBlock];
    Transform::block(philox_block(request.seed, request.stream, request.offset + block), values);
    for (uint64_t slot = element % kPerBlock; slot < kPerBlock && element < end; ++slot, ++element) {
      out[element - request.first_element] = values[slot];
    }
  }
}

// Where one row of a batched draw comes from: row r of the output holds elements
// [0, row_elements) of the draw at block `offset` of (seed, stream). Used for per-row generators
// (diffusers' list of generators): one launch, each row bit-identical to a single-row draw.
struct RowDraw {
  uint64_t seed;
  uint64_t stream;
  uint64_t offset;
};

// The FillRequest of row `row` of a batched draw whose rows are `row_elements` long.
DETNOISE_HD FillRequest row_request(Kind kind, DType dtype, void* out, size_t element_size,
                                    uint64_t row_elements, uint64_t row, const RowDraw& draw) {
  return FillRequest{kind, dtype, static_cast<unsigned char*>(out) + row * row_elements * element_size,
                     row_elements, 0, draw.seed, draw.stream, draw.offset};
}

DETNOISE_HD size_t element_size(DType dtype) {
  switch (dtype) {
    case DType::kFloat64: return 8;
    case DType::kFloat16:
    case DType::kBFloat16: return 2;
    default: return 4;
  }
}

// A strided selection of a draw's elements (a slice of a global tensor): output element with
// multi-index (i_0 .. i_{n-1}) (row-major in `out`) is element base + sum_k i_k * strides[k] of the
// draw at block `offset` of (seed, stream). Work is proportional to the selection, not the draw.
constexpr int kMaxStridedDims = 8;

struct StridedRequest {
  Kind kind;
  DType dtype;
  void* out;
  int ndim;
  uint64_t sizes[kMaxStridedDims];
  uint64_t strides[kMaxStridedDims];
  uint64_t base;
  uint64_t seed;
  uint64_t stream;
  uint64_t offset;
};

// Element `element` of the draw (any index, one Philox block): the per-element path for strided
// selections whose innermost step is not 1.
template <typename Transform>
DETNOISE_HD typename Transform::Storage draw_element(uint64_t seed, uint64_t stream, uint64_t offset,
                                                     uint64_t element) {
  typename Transform::Storage values[Transform::kPerBlock];
  Transform::block(philox_block(seed, stream, offset + element / Transform::kPerBlock), values);
  return values[element % Transform::kPerBlock];
}

// Global element index of the first element of row `row`, a row being one run of the innermost
// dimension (row-major over the other dimensions of request.sizes).
DETNOISE_HD uint64_t strided_row_start(const StridedRequest& request, uint64_t row) {
  uint64_t element = request.base;
  for (int dim = request.ndim - 2; dim >= 0; --dim) {
    const uint64_t size = request.sizes[dim];
    element += (row % size) * request.strides[dim];
    row /= size;
  }
  return element;
}

// Global element index of output position `position` (row-major over request.sizes).
DETNOISE_HD uint64_t strided_element(const StridedRequest& request, uint64_t position) {
  const int last = request.ndim - 1;
  const uint64_t row_length = request.sizes[last];
  return strided_row_start(request, position / row_length) + (position % row_length) * request.strides[last];
}

}  // namespace detnoise
