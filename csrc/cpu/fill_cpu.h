// fill_cpu.h — multi-threaded CPU launcher for a FillRequest.
#pragma once

#include "cpu_paths.h"
#include "detnoise/fill.h"

namespace detnoise {

// Whether launchers advise transparent huge pages for large untouched outputs (default on). Timing
// only: the values written never depend on it.
void set_huge_page_advice(bool enabled);
bool huge_page_advice();

// Returns false if (kind, dtype) is not a supported pair or `path` cannot run here. The output never
// depends on num_threads or path: threads split the element range on block boundaries, and every
// path computes each element from its own counter with the same operations.
bool fill_cpu(const FillRequest& request, int num_threads, CpuPath path = CpuPath::kAuto);

// A batch of `rows` rows of `row_elements` elements each, row r from draws[r]; threads split rows.
bool fill_cpu_rows(Kind kind, DType dtype, void* out, uint64_t row_elements, const RowDraw* draws,
                   uint64_t rows, int num_threads, CpuPath path = CpuPath::kAuto);

// A strided selection (StridedRequest); rows whose innermost step is 1 use the chunked path.
bool fill_cpu_strided(const StridedRequest& request, int num_threads, CpuPath path = CpuPath::kAuto);

}  // namespace detnoise
