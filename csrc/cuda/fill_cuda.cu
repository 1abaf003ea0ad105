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

}  // namespace

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
