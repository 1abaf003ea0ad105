// fill_cuda.cu — CUDA launchers. Every kernel is a one-line __global__ around its per-thread body in
// kernel_bodies.h (one thread per Philox block, grid-stride over 64-bit indices); the launch logic
// and error attribution live in launch_context.h. Built with --fmad=false so that the compiler
// cannot contract a*b+c into an fma that the CPU and the reference do not perform.
#include "fill_cuda.h"

#include <cuda.h>
#include <cuda_runtime.h>

#include <string>

#include "cuda/kernel_bodies.h"
#include "cuda/launch_context.h"

#ifndef DETNOISE_CUDA_ARCHITECTURES
#define DETNOISE_CUDA_ARCHITECTURES "unknown"
#endif

namespace detnoise {
namespace {

__device__ __forceinline__ uint64_t global_thread() {
  return static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ uint64_t global_threads() { return static_cast<uint64_t>(gridDim.x) * blockDim.x; }

template <typename Transform>
__global__ void fill_kernel(FillRequest request, const uint64_t* offset_on_device) {
  fill_thread<Transform>(global_thread(), global_threads(), request, offset_on_device);
}

__global__ void advance_offset_kernel(uint64_t* offset_on_device, uint64_t blocks) {
  advance_offset_thread(global_thread(), offset_on_device, blocks);
}

template <typename Transform>
__global__ void fill_rows_kernel(RowsParams params) {
  fill_rows_thread<Transform>(global_thread(), global_threads(), params);
}

template <typename Transform>
__global__ void fill_strided_kernel(StridedPlan plan) {
  fill_strided_thread<Transform>(global_thread(), global_threads(), plan);
}

// The CUDA runtime behind LaunchContext (see launch_context.h for the contract).
struct CudaRuntimeApi {
  static int get_device(int* device) { return cudaGetDevice(device); }
  static int set_device(int device) { return cudaSetDevice(device); }
  static int get_last_error() { return cudaGetLastError(); }
  static int peek_at_last_error() { return cudaPeekAtLastError(); }
  static int multiprocessor_count(int device, int* count) {
    return cudaDeviceGetAttribute(count, cudaDevAttrMultiProcessorCount, device);
  }
  static int compute_capability(int device, int* major, int* minor) {
    const cudaError_t status = cudaDeviceGetAttribute(major, cudaDevAttrComputeCapabilityMajor, device);
    return status != cudaSuccess ? status : cudaDeviceGetAttribute(minor, cudaDevAttrComputeCapabilityMinor, device);
  }
  // The driver API's own answer, looked up through the runtime so that the module links no libcuda.
  static int primary_context_active(int device, bool* active) {
    using GetState = CUresult (*)(CUdevice, unsigned int*, int*);
    using DeviceGet = CUresult (*)(CUdevice*, int);
    static GetState get_state = nullptr;
    static DeviceGet device_get = nullptr;
    static const bool found = [] {
      cudaDriverEntryPointQueryResult result;
      return cudaGetDriverEntryPointByVersion("cuDevicePrimaryCtxGetState", reinterpret_cast<void**>(&get_state),
                                              12000, cudaEnableDefault, &result) == cudaSuccess &&
             cudaGetDriverEntryPointByVersion("cuDeviceGet", reinterpret_cast<void**>(&device_get), 12000,
                                              cudaEnableDefault, &result) == cudaSuccess &&
             get_state != nullptr && device_get != nullptr;
    }();
    if (!found) {
      cudaGetLastError();
      *active = true;  // cannot tell: restore, as before
      return cudaSuccess;
    }
    CUdevice handle = 0;
    unsigned int flags = 0;
    int is_active = 0;
    if (device_get(&handle, device) != CUDA_SUCCESS || get_state(handle, &flags, &is_active) != CUDA_SUCCESS) {
      *active = true;
      return cudaSuccess;
    }
    *active = is_active != 0;
    return cudaSuccess;
  }
  static std::string error_text(int status) {
    const auto error = static_cast<cudaError_t>(status);
    return std::string(cudaGetErrorName(error)) + ": " + cudaGetErrorString(error);
  }
  static int driver_version() {
    int version = 0;
    if (cudaDriverGetVersion(&version) != cudaSuccess) cudaGetLastError();
    return version;
  }
  static int runtime_version() {
    int version = 0;
    cudaRuntimeGetVersion(&version);
    return version;
  }
  static const char* built_architectures() { return DETNOISE_CUDA_ARCHITECTURES; }
};

using LaunchContext = BasicLaunchContext<CudaRuntimeApi>;

template <typename Kernel, typename... Args>
std::string launch(const LaunchContext& context, uint64_t work_items, Kernel kernel, Args... args) {
  const LaunchShape shape = launch_shape(work_items, context.sm_count());
  kernel<<<shape.ctas, shape.threads_per_cta, 0, reinterpret_cast<cudaStream_t>(context.stream_handle)>>>(args...);
  return context.check_launch();
}

struct KernelLaunch {
  const FillRequest& request;
  const uint64_t* offset_on_device;
  const LaunchContext& context;
  std::string* error;
  template <typename Transform>
  void run() const {
    *error = launch(context, fill_work_items<Transform>(request), fill_kernel<Transform>, request, offset_on_device);
  }
};

struct RowsLaunch {
  const RowsParams& params;
  const LaunchContext& context;
  std::string* error;
  template <typename Transform>
  void run() const {
    *error = launch(context, rows_work_items<Transform>(params), fill_rows_kernel<Transform>, params);
  }
};

struct StridedLaunch {
  const StridedRequest& request;
  const LaunchContext& context;
  std::string* error;
  template <typename Transform>
  void run() const {
    const StridedPlan plan = plan_strided<Transform>(request);
    if (plan.total == 0) return;
    *error = launch(context, strided_work_items(plan), fill_strided_kernel<Transform>, plan);
  }
};

constexpr const char* kUnsupported = "unsupported (kind, dtype) pair";

}  // namespace

std::string fill_cuda(const FillRequest& request, int device, uintptr_t stream_handle) {
  if (request.count == 0) return {};
  const LaunchContext context(device, stream_handle);
  if (!context.error().empty()) return context.error();
  std::string error;
  if (!dispatch_transform(request.kind, request.dtype, KernelLaunch{request, nullptr, context, &error}))
    return kUnsupported;
  return error;
}

std::string fill_cuda_device_offset(const FillRequest& request, uint64_t* offset_on_device, uint64_t blocks,
                                    int device, uintptr_t stream_handle) {
  const LaunchContext context(device, stream_handle);
  if (!context.error().empty()) return context.error();
  std::string error;
  if (request.count > 0 &&
      !dispatch_transform(request.kind, request.dtype, KernelLaunch{request, offset_on_device, context, &error}))
    return kUnsupported;
  if (!error.empty()) return error;
  advance_offset_kernel<<<1, 1, 0, reinterpret_cast<cudaStream_t>(stream_handle)>>>(offset_on_device, blocks);
  return context.check_launch();
}

std::string fill_cuda_rows(Kind kind, DType dtype, void* out, uint64_t row_elements,
                           const RowDraw* draws, uint64_t rows, int device, uintptr_t stream_handle) {
  if (rows == 0 || row_elements == 0) return {};
  const LaunchContext context(device, stream_handle);
  if (!context.error().empty()) return context.error();
  for (uint64_t first = 0; first < rows; first += kMaxRowsPerLaunch) {
    const RowsParams params = rows_params(kind, dtype, out, row_elements, draws, rows, first);
    std::string error;
    if (!dispatch_transform(kind, dtype, RowsLaunch{params, context, &error})) return kUnsupported;
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
  std::string error;
  if (!dispatch_transform(request.kind, request.dtype, StridedLaunch{request, context, &error})) return kUnsupported;
  return error;
}

int cuda_device_count(std::string* error) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear the "no device" error
    *error = CudaRuntimeApi::error_text(status);
    return 0;
  }
  return count;
}

CudaVersions cuda_versions() {
  return {CudaRuntimeApi::driver_version(), CudaRuntimeApi::runtime_version(), DETNOISE_CUDA_ARCHITECTURES};
}

}  // namespace detnoise
