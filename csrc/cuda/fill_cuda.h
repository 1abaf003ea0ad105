// fill_cuda.h — CUDA launcher for a FillRequest (host-callable, no torch types).
#pragma once

#include <cstdint>
#include <string>

#include "detnoise/fill.h"

namespace detnoise {

// Enqueues the draw on `stream_handle` (a cudaStream_t as an integer, 0 = legacy default stream)
// of `device`; request.out must be device memory there. Returns "" or the CUDA error text.
std::string fill_cuda(const FillRequest& request, int device, uintptr_t stream_handle);

// A batch of rows, row r from draws[r] (see fill_cpu_rows); one launch per kMaxRowsPerLaunch rows.
std::string fill_cuda_rows(Kind kind, DType dtype, void* out, uint64_t row_elements,
                           const RowDraw* draws, uint64_t rows, int device, uintptr_t stream_handle);

// A strided selection (StridedRequest): one thread per Philox block of each contiguous row when the
// innermost stride is 1, else one thread per output element.
std::string fill_cuda_strided(const StridedRequest& request, int device, uintptr_t stream_handle);

// CUDA-graph-safe draw: the kernel reads the first block from *offset_on_device (ignoring
// request.offset) and a second kernel then adds `blocks` to it, both on `stream_handle`, so a captured
// graph replayed N times makes the N consecutive draws that N eager calls would.
std::string fill_cuda_device_offset(const FillRequest& request, uint64_t* offset_on_device, uint64_t blocks,
                                    int device, uintptr_t stream_handle);

// The installed driver's CUDA version (0 without a driver), the version of the CUDA runtime this
// module links statically (e.g. 13000), and the architectures it was built for ("75-real,...,120").
struct CudaVersions {
  int driver;
  int runtime;
  std::string architectures;
};
CudaVersions cuda_versions();

// Number of visible CUDA devices; 0 with *error set when the driver or a device is missing.
int cuda_device_count(std::string* error);

}  // namespace detnoise
