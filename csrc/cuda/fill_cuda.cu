// fill_cuda.cu — CUDA launcher: one thread per Philox block, grid-stride over 64-bit block indices.
// Same transforms as the CPU (detnoise/transforms.h); built with --fmad=false so the compiler
// cannot contract a*b+c into an fma that the CPU and the reference do not perform.
#include "fill_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <string>

namespace detnoise {
namespace {

constexpr int kThreadsPerBlock = 256;

template <typename Transform>
__global__ void fill_kernel(FillRequest request) {
  using Storage = typename Transform::Storage;
  constexpr uint64_t kPerBlock = Transform::kPerBlock;
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
      Storage* target = out + (block_begin - begin);
#pragma unroll
      for (uint64_t slot = 0; slot < kPerBlock; ++slot) target[slot] = values[slot];
    } else {
      // A partial block at either end of the range.
      fill_block_range<Transform>(request, block_begin < begin ? begin : block_begin,
                                  block_begin + kPerBlock > end ? end : block_begin + kPerBlock);
    }
  }
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
#pragma unroll
      for (uint64_t slot = 0; slot < kPerBlock; ++slot) out[slot] = values[slot];
    } else {
      const FillRequest request = row_request(params.kind, params.dtype, params.out,
                                              sizeof(Storage), params.row_elements, row, draw);
      fill_block_range<Transform>(request, first, params.row_elements);
    }
  }
}

template <typename Transform>
__global__ void fill_device_offset_kernel(FillRequest request, const uint64_t* offset_on_device) {
  request.offset = *offset_on_device;  // the same value for every thread: read before the advance kernel
  const uint64_t begin = request.first_element;
  const uint64_t end = begin + request.count;
  const uint64_t first_block = begin / Transform::kPerBlock;
  const uint64_t num_blocks = (end + Transform::kPerBlock - 1) / Transform::kPerBlock - first_block;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t index = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; index < num_blocks;
       index += stride) {
    const uint64_t block = first_block + index;
    const uint64_t lo = block * Transform::kPerBlock < begin ? begin : block * Transform::kPerBlock;
    const uint64_t hi = (block + 1) * Transform::kPerBlock > end ? end : (block + 1) * Transform::kPerBlock;
    fill_block_range<Transform>(request, lo, hi);
  }
}

__global__ void advance_offset_kernel(uint64_t* offset_on_device, uint64_t blocks) {
  *offset_on_device += blocks;
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

// Makes `device` current for the launch and restores the caller's device afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    status_ = cudaGetDevice(&previous_);
    if (status_ == cudaSuccess && previous_ != device) status_ = cudaSetDevice(device);
  }
  ~DeviceGuard() {
    int current = previous_;
    if (cudaGetDevice(&current) == cudaSuccess && current != previous_) cudaSetDevice(previous_);
  }
  cudaError_t status() const { return status_; }

 private:
  int previous_ = 0;
  cudaError_t status_;
};

struct KernelLaunch {
  const FillRequest& request;
  int sm_count;
  cudaStream_t stream;
  template <typename Transform>
  void run() const {
    constexpr uint64_t kPerBlock = Transform::kPerBlock;
    const uint64_t begin = request.first_element;
    const uint64_t end = begin + request.count;
    const uint64_t blocks = (end + kPerBlock - 1) / kPerBlock - begin / kPerBlock;
    const uint64_t wanted = (blocks + kThreadsPerBlock - 1) / kThreadsPerBlock;
    const unsigned grid =
        static_cast<unsigned>(std::min<uint64_t>(wanted, static_cast<uint64_t>(sm_count) * 32));
    fill_kernel<Transform><<<grid, kThreadsPerBlock, 0, stream>>>(request);
  }
};

struct RowsLaunch {
  const RowsParams& params;
  int sm_count;
  cudaStream_t stream;
  template <typename Transform>
  void run() const {
    constexpr uint64_t kPerBlock = Transform::kPerBlock;
    const uint64_t blocks = (params.row_elements + kPerBlock - 1) / kPerBlock * params.rows;
    const uint64_t wanted = (blocks + kThreadsPerBlock - 1) / kThreadsPerBlock;
    const unsigned grid =
        static_cast<unsigned>(std::min<uint64_t>(wanted, static_cast<uint64_t>(sm_count) * 32));
    fill_rows_kernel<Transform><<<grid, kThreadsPerBlock, 0, stream>>>(params);
  }
};

struct StridedLaunch {
  const StridedRequest& request;
  uint64_t total;
  int sm_count;
  cudaStream_t stream;
  template <typename Transform>
  void run() const {
    const uint64_t wanted = (total + kThreadsPerBlock - 1) / kThreadsPerBlock;
    const unsigned grid =
        static_cast<unsigned>(std::min<uint64_t>(wanted, static_cast<uint64_t>(sm_count) * 32));
    fill_strided_kernel<Transform><<<grid, kThreadsPerBlock, 0, stream>>>(request, total);
  }
};

struct DeviceOffsetLaunch {
  const FillRequest& request;
  const uint64_t* offset_on_device;
  int sm_count;
  cudaStream_t stream;
  template <typename Transform>
  void run() const {
    const uint64_t blocks = (request.count + Transform::kPerBlock - 1) / Transform::kPerBlock;
    const uint64_t wanted = (blocks + kThreadsPerBlock - 1) / kThreadsPerBlock;
    const unsigned grid =
        static_cast<unsigned>(std::min<uint64_t>(wanted, static_cast<uint64_t>(sm_count) * 32));
    fill_device_offset_kernel<Transform><<<grid, kThreadsPerBlock, 0, stream>>>(request, offset_on_device);
  }
};

}  // namespace

std::string fill_cuda_device_offset(const FillRequest& request, uint64_t* offset_on_device, uint64_t blocks,
                                    int device, uintptr_t stream_handle) {
  DeviceGuard guard(device);
  if (guard.status() != cudaSuccess) return cuda_message(guard.status());
  int sm_count = 0;
  cudaError_t status = cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device);
  if (status != cudaSuccess) return cuda_message(status);
  const auto stream = reinterpret_cast<cudaStream_t>(stream_handle);
  if (request.count > 0 &&
      !dispatch_transform(request.kind, request.dtype, DeviceOffsetLaunch{request, offset_on_device, sm_count, stream}))
    return "unsupported (kind, dtype) pair";
  advance_offset_kernel<<<1, 1, 0, stream>>>(offset_on_device, blocks);
  status = cudaGetLastError();
  return status == cudaSuccess ? std::string() : cuda_message(status);
}

std::string fill_cuda_strided(const StridedRequest& request, int device, uintptr_t stream_handle) {
  uint64_t total = 1;
  for (int dim = 0; dim < request.ndim; ++dim) total *= request.sizes[dim];
  if (total == 0) return {};
  DeviceGuard guard(device);
  if (guard.status() != cudaSuccess) return cuda_message(guard.status());
  int sm_count = 0;
  cudaError_t status = cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device);
  if (status != cudaSuccess) return cuda_message(status);
  const auto stream = reinterpret_cast<cudaStream_t>(stream_handle);
  if (!dispatch_transform(request.kind, request.dtype, StridedLaunch{request, total, sm_count, stream}))
    return "unsupported (kind, dtype) pair";
  status = cudaGetLastError();
  return status == cudaSuccess ? std::string() : cuda_message(status);
}

std::string fill_cuda_rows(Kind kind, DType dtype, void* out, uint64_t row_elements,
                           const RowDraw* draws, uint64_t rows, int device, uintptr_t stream_handle) {
  if (rows == 0 || row_elements == 0) return {};
  DeviceGuard guard(device);
  if (guard.status() != cudaSuccess) return cuda_message(guard.status());
  int sm_count = 0;
  cudaError_t status = cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device);
  if (status != cudaSuccess) return cuda_message(status);
  const auto stream = reinterpret_cast<cudaStream_t>(stream_handle);
  const size_t row_bytes = row_elements * element_size(dtype);
  for (uint64_t first = 0; first < rows; first += kMaxRowsPerLaunch) {
    RowsParams params{};
    params.kind = kind;
    params.dtype = dtype;
    params.out = static_cast<unsigned char*>(out) + first * row_bytes;
    params.row_elements = row_elements;
    params.rows = static_cast<uint32_t>(std::min<uint64_t>(kMaxRowsPerLaunch, rows - first));
    for (uint32_t r = 0; r < params.rows; ++r) params.draws[r] = draws[first + r];
    if (!dispatch_transform(kind, dtype, RowsLaunch{params, sm_count, stream}))
      return "unsupported (kind, dtype) pair";
    status = cudaGetLastError();
    if (status != cudaSuccess) return cuda_message(status);
  }
  return {};
}

std::string fill_cuda(const FillRequest& request, int device, uintptr_t stream_handle) {
  if (request.count == 0) return {};
  DeviceGuard guard(device);
  if (guard.status() != cudaSuccess) return cuda_message(guard.status());
  int sm_count = 0;
  cudaError_t status = cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device);
  if (status != cudaSuccess) return cuda_message(status);
  const auto stream = reinterpret_cast<cudaStream_t>(stream_handle);
  const bool supported =
      dispatch_transform(request.kind, request.dtype, KernelLaunch{request, sm_count, stream});
  if (!supported) return "unsupported (kind, dtype) pair";
  status = cudaGetLastError();
  return status == cudaSuccess ? std::string() : cuda_message(status);
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
