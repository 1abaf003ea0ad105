// fill_cuda.cu — CUDA launcher: one thread per Philox block, grid-stride over 64-bit block indices.
// Same transforms as the CPU (detnoise/transforms.h); built with --fmad=false so the compiler
// cannot contract a*b+c into an fma that the CPU and the reference do not perform.
#include "fill_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace detnoise {
namespace {

constexpr int kThreadsPerBlock = 256;

// One whole Philox block's values (16 bytes, or 8 for 16-bit formats) in one store when the address
// allows it (every block of a draw that starts at element 0 of an allocation), else one per value.
template <typename Storage, int kPerBlock>
__device__ __forceinline__ void store_block(Storage* target, const Storage (&values)[kPerBlock]) {
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
  } else {
#pragma unroll
    for (int slot = 0; slot < kPerBlock; ++slot) target[slot] = values[slot];
  }
}

// One thread per Philox block of the range. With offset_on_device set (CUDA-graph-safe draws), the
// first block is read from device memory instead of request.offset.
template <typename Transform>
__global__ void fill_kernel(FillRequest request, const uint64_t* offset_on_device) {
  using Storage = typename Transform::Storage;
  constexpr uint64_t kPerBlock = Transform::kPerBlock;
  if (offset_on_device != nullptr) request.offset = *offset_on_device;
  const uint64_t begin = request.first_element;
  const uint64_t end = begin + request.count;
  const uint64_t first_block = begin / kPerBlock;
  const uint64_t num_blocks = (end + kPerBlock - 1) / kPerBlock - first_block;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  Storage* out = static_cast<Storage*>(request.out);
  for (uint64_t index = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       index < num_blocks; index += stride) {
    const uint64_t block = first_block + index;
    const uint64_t block_begin = block * kPerBlock;
    if (block_begin >= begin && block_begin + kPerBlock <= end) {
      // Whole block: values stay in registers (constant indices) and go out in one pass.
      Storage values[kPerBlock];
      Transform::block(philox_block(request.seed, request.stream, request.offset + block), values);
      store_block(out + (block_begin - begin), values);
    } else {
      // A partial block at either end of the range.
      fill_block_range<Transform>(request, block_begin < begin ? begin : block_begin,
                                  block_begin + kPerBlock > end ? end : block_begin + kPerBlock);
    }
  }
}

__global__ void advance_offset_kernel(uint64_t* offset_on_device, uint64_t blocks) {
  *offset_on_device += blocks;
}

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

template <typename Transform>
__global__ void fill_rows_kernel(RowsParams params) {
  using Storage = typename Transform::Storage;
  constexpr uint64_t kPerBlock = Transform::kPerBlock;
  const uint64_t blocks_per_row = (params.row_elements + kPerBlock - 1) / kPerBlock;
  const uint64_t total_blocks = blocks_per_row * params.rows;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t index = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       index < total_blocks; index += stride) {
    const uint64_t row = index / blocks_per_row;
    const uint64_t block = index - row * blocks_per_row;
    const RowDraw& draw = params.draws[row];
    const uint64_t first = block * kPerBlock;
    Storage* out = static_cast<Storage*>(params.out) + row * params.row_elements + first;
    if (first + kPerBlock <= params.row_elements) {
      Storage values[kPerBlock];
      Transform::block(philox_block(draw.seed, draw.stream, draw.offset + block), values);
      store_block(out, values);
    } else {
      const FillRequest request = row_request(params.kind, params.dtype, params.out,
                                              sizeof(Storage), params.row_elements, row, draw);
      fill_block_range<Transform>(request, first, params.row_elements);
    }
  }
}

template <typename Transform>
__global__ void fill_strided_kernel(StridedRequest request, uint64_t total) {
  using Storage = typename Transform::Storage;
  Storage* out = static_cast<Storage*>(request.out);
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t position = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; position < total;
       position += stride) {
    out[position] = draw_element<Transform>(request.seed, request.stream, request.offset,
                                            strided_element(request, position));
  }
}

std::string cuda_message(cudaError_t status) {
  return std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
}

// What every launch needs: `device` made current (the caller's device restored afterwards), its SM
// count for grid sizing, and the caller's stream.
class LaunchContext {
 public:
  LaunchContext(int device, uintptr_t stream_handle) : stream(reinterpret_cast<cudaStream_t>(stream_handle)) {
    status_ = cudaGetDevice(&previous_);
    if (status_ == cudaSuccess && previous_ != device) status_ = cudaSetDevice(device);
    if (status_ == cudaSuccess) status_ = cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, device);
  }
  ~LaunchContext() {
    int current = previous_;
    if (cudaGetDevice(&current) == cudaSuccess && current != previous_) cudaSetDevice(previous_);
  }
  std::string error() const { return status_ == cudaSuccess ? std::string() : cuda_message(status_); }

  // A grid-stride grid for `threads` threads: enough to fill the GPU, capped at 32 blocks per SM.
  unsigned grid(uint64_t threads) const {
    const uint64_t wanted = (threads + kThreadsPerBlock - 1) / kThreadsPerBlock;
    return static_cast<unsigned>(std::min<uint64_t>(wanted, static_cast<uint64_t>(sm_count_) * 32));
  }

  // After the launches: the launch error, if any.
  static std::string launch_error() {
    const cudaError_t status = cudaGetLastError();
    return status == cudaSuccess ? std::string() : cuda_message(status);
  }

  const cudaStream_t stream;

 private:
  int previous_ = 0;
  int sm_count_ = 0;
  cudaError_t status_;
};

uint64_t blocks_spanned(uint64_t begin, uint64_t count, uint64_t per_block) {
  return (begin + count + per_block - 1) / per_block - begin / per_block;
}

struct KernelLaunch {
  const FillRequest& request;
  const uint64_t* offset_on_device;
  const LaunchContext& context;
  template <typename Transform>
  void run() const {
    const uint64_t blocks = blocks_spanned(request.first_element, request.count, Transform::kPerBlock);
    fill_kernel<Transform><<<context.grid(blocks), kThreadsPerBlock, 0, context.stream>>>(request, offset_on_device);
  }
};

struct RowsLaunch {
  const RowsParams& params;
  const LaunchContext& context;
  template <typename Transform>
  void run() const {
    const uint64_t blocks = (params.row_elements + Transform::kPerBlock - 1) / Transform::kPerBlock * params.rows;
    fill_rows_kernel<Transform><<<context.grid(blocks), kThreadsPerBlock, 0, context.stream>>>(params);
  }
};

struct StridedLaunch {
  const StridedRequest& request;
  uint64_t total;
  const LaunchContext& context;
  template <typename Transform>
  void run() const {
    fill_strided_kernel<Transform><<<context.grid(total), kThreadsPerBlock, 0, context.stream>>>(request, total);
  }
};

constexpr const char* kUnsupported = "unsupported (kind, dtype) pair";

}  // namespace

std::string fill_cuda(const FillRequest& request, int device, uintptr_t stream_handle) {
  if (request.count == 0) return {};
  const LaunchContext context(device, stream_handle);
  if (!context.error().empty()) return context.error();
  if (!dispatch_transform(request.kind, request.dtype, KernelLaunch{request, nullptr, context})) return kUnsupported;
  return LaunchContext::launch_error();
}

std::string fill_cuda_device_offset(const FillRequest& request, uint64_t* offset_on_device, uint64_t blocks,
                                    int device, uintptr_t stream_handle) {
  const LaunchContext context(device, stream_handle);
  if (!context.error().empty()) return context.error();
  if (request.count > 0 &&
      !dispatch_transform(request.kind, request.dtype, KernelLaunch{request, offset_on_device, context}))
    return kUnsupported;
  advance_offset_kernel<<<1, 1, 0, context.stream>>>(offset_on_device, blocks);
  return LaunchContext::launch_error();
}

std::string fill_cuda_rows(Kind kind, DType dtype, void* out, uint64_t row_elements,
                           const RowDraw* draws, uint64_t rows, int device, uintptr_t stream_handle) {
  if (rows == 0 || row_elements == 0) return {};
  const LaunchContext context(device, stream_handle);
  if (!context.error().empty()) return context.error();
  const size_t row_bytes = row_elements * element_size(dtype);
  for (uint64_t first = 0; first < rows; first += kMaxRowsPerLaunch) {
    RowsParams params{};
    params.kind = kind;
    params.dtype = dtype;
    params.out = static_cast<unsigned char*>(out) + first * row_bytes;
    params.row_elements = row_elements;
    params.rows = static_cast<uint32_t>(std::min<uint64_t>(kMaxRowsPerLaunch, rows - first));
    for (uint32_t r = 0; r < params.rows; ++r) params.draws[r] = draws[first + r];
    if (!dispatch_transform(kind, dtype, RowsLaunch{params, context})) return kUnsupported;
    const std::string error = LaunchContext::launch_error();
    if (!error.empty()) return error;
  }
  return {};
}

std::string fill_cuda_strided(const StridedRequest& request, int device, uintptr_t stream_handle) {
  uint64_t total = 1;
  for (int dim = 0; dim < request.ndim; ++dim) total *= request.sizes[dim];
  if (total == 0) return {};
  const LaunchContext context(device, stream_handle);
  if (!context.error().empty()) return context.error();
  if (!dispatch_transform(request.kind, request.dtype, StridedLaunch{request, total, context})) return kUnsupported;
  return LaunchContext::launch_error();
}

int cuda_device_count(std::string* error) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    *error = cuda_message(status);
    return 0;
  }
  return count;
}

}  // namespace detnoise
