// cpu_paths.h — the CPU kernel variants. Every one computes the same bits; they differ in speed.
#pragma once

#include <cstdint>

#include "detnoise/fill.h"

namespace detnoise {

enum class CpuPath : int {
  kAuto = -1,
  kScalar = 0,    // one block at a time (fill.h), the simplest statement of the stream
  kBaseline = 1,  // chunked, vectorised for the build's baseline ISA
  kAvx2 = 2,      // chunked, AVX2 Philox + AVX2-vectorised transforms (x86-64, chosen at run time)
};

bool fill_range_baseline(const FillRequest& request, uint64_t begin, uint64_t end);
#if defined(__x86_64__) || defined(_M_X64)
bool fill_range_avx2(const FillRequest& request, uint64_t begin, uint64_t end);
#endif

bool cpu_path_available(CpuPath path);
CpuPath best_cpu_path();

}  // namespace detnoise
