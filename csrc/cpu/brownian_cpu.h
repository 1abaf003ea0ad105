// brownian_cpu.h — CPU launcher for a Brownian tree query (BrownianRequest, detnoise/brownian.h).
#pragma once

#include "cpu_paths.h"
#include "detnoise/brownian.h"

namespace detnoise {

// Writes the query's results and saved points. The scalar path runs the per-thread body the CUDA
// kernel runs; the others draw each node's Gaussians for a span of elements with the chunked fill
// and apply the same per-element arithmetic. The output depends on neither path nor thread count.
void brownian_cpu(const BrownianRequest& request, int num_threads, CpuPath path);

}  // namespace detnoise
