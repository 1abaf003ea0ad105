// kernel_bodies.h — each CUDA kernel's per-thread work as a host/device function of (thread index,
// thread count, request), and the launch-shape rule. fill_cuda.cu wraps every body in a one-line
// __global__; tests/native/kernel_driver.cpp runs the same bodies on the CPU for every simulated
// thread of real launch shapes and compares them with the CPU launcher bit for bit.
#pragma once

#include <cstdint>
#include <cstring>

#include "detnoise/fill.h"

namespace detnoise {

// ---- launch shape (issue 14 item 8) -------------------------------------------------------------
// One thread per work item (a Philox block, or a (row, block) pair). A thread costs ~250 SASS
// instructions per block, so what matters for small draws is that every SM gets work: the CTA
// size is the largest of 256, 128, 64 threads that still gives at least two CTAs per SM, and the
// grid is capped at 8192 threads per SM (4 waves of 2048 resident threads) with the rest taken by
// the grid-stride loops below. A (1,4,128,128) float32 latent (16384 blocks) on 132 SMs thus gets
// 256 CTAs of 64 threads instead of 64 CTAs of 256.
constexpr unsigned kMaxThreadsPerCta = 256;
constexpr unsigned kMinThreadsPerCta = 64;
constexpr uint64_t kMaxThreadsPerSm = 8192;

struct LaunchShape {
  unsigned ctas;
  unsigned threads_per_cta;
  uint64_t threads() const { return static_cast<uint64_t>(ctas) * threads_per_cta; }
};

inline LaunchShape launch_shape(uint64_t work_items, int sm_count) {
  const uint64_t sms = sm_count > 0 ? static_cast<uint64_t>(sm_count) : 1;
  unsigned threads = kMaxThreadsPerCta;
  while (threads > kMinThreadsPerCta && (work_items + threads - 1) / threads < 2 * sms) threads /= 2;
  const uint64_t wanted = (work_items + threads - 1) / threads;
  const uint64_t cap = sms * kMaxThreadsPerSm / threads;
  const uint64_t ctas = wanted < cap ? wanted : cap;
  return {static_cast<unsigned>(ctas > 0 ? ctas : 1), threads};
}

// Philox blocks touched by elements [begin, begin + count).
DETNOISE_HD uint64_t blocks_spanned(uint64_t begin, uint64_t count, uint64_t per_block) {
  return (begin + count + per_block - 1) / per_block - begin / per_block;
}

// ---- stores --------------------------------------------------------------------------------------
// One whole Philox block's values (16 bytes, or 8 for 16-bit formats) in one store on the device
// when the address allows it (every block of a draw that starts at element 0 of an allocation),
// else one store per value. The host (the test driver) always stores per value.
template <typename Storage, int kPerBlock>
DETNOISE_HD void store_block(Storage* target, const Storage (&values)[kPerBlock]) {
#if defined(__CUDA_ARCH__)
  constexpr int kBytes = static_cast<int>(sizeof(Storage)) * kPerBlock;
  static_assert(kBytes == 16 || kBytes == 8, "a block is 16 or 8 bytes");
  if (reinterpret_cast<uintptr_t>(target) % kBytes == 0) {
    if constexpr (kBytes == 16) {
      uint4 packed;
      memcpy(&packed, values, kBytes);
      *reinterpret_cast<uint4*>(target) = packed;
    } else {
      uint2 packed;
      memcpy(&packed, values, kBytes);
      *reinterpret_cast<uint2*>(target) = packed;
    }
    return;
  }
#endif
  for (int slot = 0; slot < kPerBlock; ++slot) target[slot] = values[slot];
}

// Block `block` of the draw `request` describes: the whole block in registers and one store when
// it lies inside [first_element, first_element + count), else only its part inside that range.
template <typename Transform>
DETNOISE_HD void fill_one_block(const FillRequest& request, uint64_t block) {
  using Storage = typename Transform::Storage;
  constexpr uint64_t kPerBlock = Transform::kPerBlock;
  const uint64_t begin = request.first_element;
  const uint64_t end = begin + request.count;
  const uint64_t block_begin = block * kPerBlock;
  if (block_begin >= begin && block_begin + kPerBlock <= end) {
    Storage values[kPerBlock];
    Transform::block(philox_block(request.seed, request.stream, request.offset + block), values);
    store_block(static_cast<Storage*>(request.out) + (block_begin - begin), values);
  } else {
    fill_block_range<Transform>(request, block_begin < begin ? begin : block_begin,
                                block_begin + kPerBlock > end ? end : block_begin + kPerBlock);
  }
}

// ---- whole draws (fill_kernel) ---------------------------------------------------------------------
// Work item i is Philox block first_element / kPerBlock + i. With offset_in_memory set (CUDA-graph-
// safe draws) the draw's first block is read from there instead of request.offset.
template <typename Transform>
DETNOISE_HD uint64_t fill_work_items(const FillRequest& request) {
  return blocks_spanned(request.first_element, request.count, Transform::kPerBlock);
}

template <typename Transform>
DETNOISE_HD void fill_thread(uint64_t thread, uint64_t threads, FillRequest request,
                             const uint64_t* offset_in_memory) {
  if (offset_in_memory != nullptr) request.offset = *offset_in_memory;
  const uint64_t first_block = request.first_element / Transform::kPerBlock;
  const uint64_t items = fill_work_items<Transform>(request);
  for (uint64_t index = thread; index < items; index += threads) {
    fill_one_block<Transform>(request, first_block + index);
  }
}

// The graph-safe draw's second kernel: one thread moves the offset past the draw just made.
DETNOISE_HD void advance_offset_thread(uint64_t thread, uint64_t* offset_in_memory, uint64_t blocks) {
  if (thread == 0) *offset_in_memory += blocks;
}

// ---- batches of rows (fill_rows_kernel) ----------------------------------------------------------
// Rows travel in the kernel's parameter block (under the 4 KiB limit): no device allocation, no copy.
constexpr int kMaxRowsPerLaunch = 96;

struct RowsParams {
  Kind kind;
  DType dtype;
  void* out;
  uint64_t row_elements;
  uint32_t rows;
  RowDraw draws[kMaxRowsPerLaunch];
};

// The parameters of the launch that fills rows [first, first + kMaxRowsPerLaunch) of a batch (the
// launcher makes one launch per kMaxRowsPerLaunch rows).
inline RowsParams rows_params(Kind kind, DType dtype, void* out, uint64_t row_elements, const RowDraw* draws,
                              uint64_t rows, uint64_t first) {
  RowsParams params{};
  params.kind = kind;
  params.dtype = dtype;
  params.out = static_cast<unsigned char*>(out) + first * row_elements * element_size(dtype);
  params.row_elements = row_elements;
  const uint64_t left = rows - first;
  params.rows = static_cast<uint32_t>(left < kMaxRowsPerLaunch ? left : kMaxRowsPerLaunch);
  for (uint32_t r = 0; r < params.rows; ++r) params.draws[r] = draws[first + r];
  return params;
}

// Work item i is block i % blocks_per_row of row i / blocks_per_row.
template <typename Transform>
DETNOISE_HD uint64_t rows_work_items(const RowsParams& params) {
  return (params.row_elements + Transform::kPerBlock - 1) / Transform::kPerBlock * params.rows;
}

template <typename Transform>
DETNOISE_HD void fill_rows_thread(uint64_t thread, uint64_t threads, const RowsParams& params) {
  constexpr uint64_t kPerBlock = Transform::kPerBlock;
  const uint64_t blocks_per_row = (params.row_elements + kPerBlock - 1) / kPerBlock;
  const uint64_t items = rows_work_items<Transform>(params);
  for (uint64_t index = thread; index < items; index += threads) {
    const uint64_t row = index / blocks_per_row;
    const FillRequest request = row_request(params.kind, params.dtype, params.out, sizeof(typename Transform::Storage),
                                            params.row_elements, row, params.draws[row]);
    fill_one_block<Transform>(request, index - row * blocks_per_row);
  }
}

// ---- strided selections (fill_strided_kernel) ------------------------------------------------------
// When the innermost stride is 1 each row of the selection is a contiguous run of the draw, and
// work item i is the (i % spans)-th Philox block of row i / spans: one block computed per four
// values (two for float64) and one row-start computation per block, as in the whole-draw kernel
// (issue 14 item 7). `spans` bounds the blocks any run of row_length elements can touch; items past
// a row's real span do nothing. Otherwise work item i is output element i, drawn alone.
struct StridedPlan {
  StridedRequest request;
  uint64_t total;         // output elements
  uint64_t rows;          // total / row_length
  uint64_t spans;         // work items per row on the contiguous path, 0 on the per-element path
};

template <typename Transform>
inline StridedPlan plan_strided(const StridedRequest& request) {
  constexpr uint64_t kPerBlock = Transform::kPerBlock;
  StridedPlan plan{request, 1, 0, 0};
  for (int dim = 0; dim < request.ndim; ++dim) plan.total *= request.sizes[dim];
  const uint64_t row_length = request.sizes[request.ndim - 1];
  if (plan.total > 0 && request.strides[request.ndim - 1] == 1 && row_length > 1) {
    plan.rows = plan.total / row_length;
    plan.spans = (row_length + 2 * kPerBlock - 2) / kPerBlock;
  }
  return plan;
}

DETNOISE_HD uint64_t strided_work_items(const StridedPlan& plan) {
  return plan.spans > 0 ? plan.rows * plan.spans : plan.total;
}

template <typename Transform>
DETNOISE_HD void fill_strided_thread(uint64_t thread, uint64_t threads, const StridedPlan& plan) {
  using Storage = typename Transform::Storage;
  constexpr uint64_t kPerBlock = Transform::kPerBlock;
  const StridedRequest& request = plan.request;
  Storage* out = static_cast<Storage*>(request.out);
  const uint64_t items = strided_work_items(plan);
  if (plan.spans > 0) {
    const uint64_t row_length = request.sizes[request.ndim - 1];
    for (uint64_t index = thread; index < items; index += threads) {
      const uint64_t row = index / plan.spans;
      const uint64_t start = strided_row_start(request, row);
      const uint64_t block = start / kPerBlock + (index - row * plan.spans);
      if (block * kPerBlock >= start + row_length) continue;  // past this row's run
      const FillRequest run{request.kind, request.dtype, out + row * row_length, row_length, start,
                            request.seed, request.stream, request.offset};
      fill_one_block<Transform>(run, block);
    }
  } else {
    for (uint64_t index = thread; index < items; index += threads) {
      out[index] = draw_element<Transform>(request.seed, request.stream, request.offset,
                                           strided_element(request, index));
    }
  }
}

}  // namespace detnoise
