// path_baseline.cpp — the chunked CPU path for the build's baseline instruction set (SSE2 on
// x86-64, NEON on aarch64): portable code the compiler vectorises.
#include "chunked.h"
#include "cpu_paths.h"

namespace detnoise {

bool fill_range_baseline(const FillRequest& request, uint64_t begin, uint64_t end) {
  return dispatch_transform(request.kind, request.dtype,
                            ChunkedFill<PhiloxChunkPortable>{request, begin, end});
}

}  // namespace detnoise
