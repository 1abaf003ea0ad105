// fill_cpu.h — multi-threaded CPU launcher for a FillRequest.
#pragma once

#include "detnoise/fill.h"

namespace detnoise {

// Returns false if (kind, dtype) is not a supported pair. The output never depends on num_threads:
// threads split the element range on block boundaries and each element is computed from its own
// counter.
bool fill_cpu(const FillRequest& request, int num_threads);

}  // namespace detnoise
