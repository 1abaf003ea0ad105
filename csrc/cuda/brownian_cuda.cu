// brownian_cuda.cu — Brownian tree queries on CUDA: one launch per query, one thread per Philox
// block of a row (grid-stride). The kernel is the host/device body of detnoise/brownian.h, which
// the CPU's scalar path also runs; built with --fmad=false like every detnoise kernel.
#include "brownian_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <string>

namespace detnoise {
namespace {

constexpr int kThreadsPerBlock = 128;

__global__ void brownian_kernel(BrownianRequest request) {
  brownian_thread(static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x,
                  static_cast<uint64_t>(gridDim.x) * blockDim.x, request);
}

std::string cuda_message(cudaError_t status) {
  return std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
}

}  // namespace

std::string brownian_cuda(const BrownianRequest& request, int device, uintptr_t stream_handle) {
  const uint64_t items = brownian_blocks_per_row(request) * request.rows;
  if (items == 0) return {};
  int previous = 0;
  cudaError_t status = cudaGetDevice(&previous);
  if (status == cudaSuccess && previous != device) status = cudaSetDevice(device);
  int sm_count = 0;
  if (status == cudaSuccess) status = cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device);
  if (status == cudaSuccess) {
    // Every item walks the whole tree depth, so a thread per item (up to 32 blocks per SM).
    const uint64_t wanted = (items + kThreadsPerBlock - 1) / kThreadsPerBlock;
    const unsigned grid = static_cast<unsigned>(std::min<uint64_t>(wanted, static_cast<uint64_t>(sm_count) * 32));
    brownian_kernel<<<grid, kThreadsPerBlock, 0, reinterpret_cast<cudaStream_t>(stream_handle)>>>(request);
    status = cudaGetLastError();
  }
  if (previous != device) cudaSetDevice(previous);
  return status == cudaSuccess ? std::string() : cuda_message(status);
}

}  // namespace detnoise
