// brownian_cuda.h — CUDA launcher for a Brownian tree query (host-callable, no torch types).
#pragma once

#include <cstdint>
#include <string>

#include "detnoise/brownian.h"

namespace detnoise {

// Enqueues the query on `stream_handle` (a cudaStream_t as an integer) of `device`: one kernel
// launch. request.out, and the points' known/save buffers, must be device memory there. Returns ""
// or the CUDA error text.
std::string brownian_cuda(const BrownianRequest& request, int device, uintptr_t stream_handle);

}  // namespace detnoise
