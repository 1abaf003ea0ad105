// fill_cpu.cpp — picks a CPU path (scalar, baseline-vectorised, AVX2) and splits a draw across
// the persistent thread pool by block-aligned element ranges (or by rows for a batch).
#include "fill_cpu.h"

#include <algorithm>
#include <atomic>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "thread_pool.h"

namespace detnoise {
namespace {

// Below this many elements per thread, handing work to another thread costs more than it saves
// (so a 16K-element latent stays on the calling thread).
constexpr uint64_t kMinElementsPerThread = 1u << 16;

using RangeFill = bool (*)(const FillRequest&, uint64_t, uint64_t);

std::atomic<bool> g_advise_huge_pages{true};

#if defined(__linux__) && defined(MADV_HUGEPAGE)
constexpr uintptr_t kHugePage = uintptr_t{1} << 21;
// Outputs smaller than this hold at most one whole 2 MiB page: not worth two system calls.
constexpr uint64_t kAdviseMinBytes = uint64_t{4} << 20;
#endif

// A new tensor's memory is untouched, and with transparent huge pages in "madvise" mode each 4 KiB
// page faults on its first write: about 60% of a plain 64 MiB draw's time on the project VM
// (benchmarks/NOTES.md). Advised, the pages fault 2 MiB at a time. Only whole 2 MiB pages inside
// [out, out + bytes) are advised, and only while still untouched (a reused or out= buffer is left
// alone, so khugepaged is never asked to copy one). Every failure (no THP, a file or shared
// mapping, another OS) is ignored: the advice changes timing only, never a value.
void advise_huge_pages(void* out, uint64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (bytes < kAdviseMinBytes || !g_advise_huge_pages.load(std::memory_order_relaxed)) return;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(out);
  const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t last = (begin + bytes) & ~(kHugePage - 1);
  if (first >= last) return;
  unsigned char resident = 0;
  if (mincore(reinterpret_cast<void*>(first), 1, &resident) != 0 || (resident & 1)) return;
  (void)madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)out;
  (void)bytes;
#endif
}

struct ScalarFill {
  const FillRequest& request;
  uint64_t begin;
  uint64_t end;
  template <typename Transform>
  void run() const {
    fill_block_range<Transform>(request, begin, end);
  }
};

bool fill_range_scalar(const FillRequest& request, uint64_t begin, uint64_t end) {
  return dispatch_transform(request.kind, request.dtype, ScalarFill{request, begin, end});
}

RangeFill range_fill(CpuPath path) {
  switch (path == CpuPath::kAuto ? best_cpu_path() : path) {
    case CpuPath::kScalar: return fill_range_scalar;
    case CpuPath::kBaseline: return fill_range_baseline;
#if defined(__x86_64__) || defined(_M_X64)
    case CpuPath::kAvx2: return fill_range_avx2;
#endif
    default: return nullptr;
  }
}

uint64_t worker_count(uint64_t elements, int num_threads) {
  const uint64_t useful = std::max<uint64_t>(1, elements / kMinElementsPerThread);
  return std::min<uint64_t>(static_cast<uint64_t>(std::max(num_threads, 1)), useful);
}

struct StridedRowsFill {
  const StridedRequest& request;
  RangeFill contiguous;
  uint64_t first_row;
  uint64_t last_row;
  template <typename Transform>
  void run() const {
    using Storage = typename Transform::Storage;
    const int last = request.ndim - 1;
    const uint64_t row_length = request.sizes[last];
    const uint64_t step = request.strides[last];
    Storage* out = static_cast<Storage*>(request.out);
    for (uint64_t row = first_row; row < last_row; ++row) {
      const uint64_t start = strided_element(request, row * row_length);
      Storage* target = out + row * row_length;
      if (step == 1) {
        const FillRequest run{request.kind, request.dtype, target, row_length, start,
                              request.seed, request.stream, request.offset};
        contiguous(run, start, start + row_length);
      } else {
        for (uint64_t i = 0; i < row_length; ++i) {
          target[i] = draw_element<Transform>(request.seed, request.stream, request.offset, start + i * step);
        }
      }
    }
  }
};

}  // namespace

bool fill_cpu_strided(const StridedRequest& request, int num_threads, CpuPath path) {
  if (!cpu_path_available(path) || request.ndim < 1 || request.ndim > kMaxStridedDims) return false;
  const RangeFill contiguous = range_fill(path);
  uint64_t total = 1;
  for (int dim = 0; dim < request.ndim; ++dim) total *= request.sizes[dim];
  if (!dispatch_transform(request.kind, request.dtype, StridedRowsFill{request, contiguous, 0, 0})) return false;
  if (total == 0) return true;
  advise_huge_pages(request.out, total * element_size(request.dtype));
  const uint64_t rows = total / request.sizes[request.ndim - 1];
  const uint64_t workers = std::min<uint64_t>(worker_count(total, num_threads), rows);
  const uint64_t rows_per_worker = (rows + workers - 1) / workers;
  parallel_for(workers, [&](uint64_t index) {
    const uint64_t first = index * rows_per_worker;
    const uint64_t last = std::min(rows, first + rows_per_worker);
    if (first < last) dispatch_transform(request.kind, request.dtype, StridedRowsFill{request, contiguous, first, last});
  });
  return true;
}

void set_huge_page_advice(bool enabled) { g_advise_huge_pages.store(enabled, std::memory_order_relaxed); }

bool huge_page_advice() { return g_advise_huge_pages.load(std::memory_order_relaxed); }

bool cpu_path_available(CpuPath path) {
  switch (path) {
    case CpuPath::kAuto:
    case CpuPath::kScalar:
    case CpuPath::kBaseline: return true;
#if defined(__x86_64__) || defined(_M_X64)
    case CpuPath::kAvx2: return __builtin_cpu_supports("avx2");
#endif
    default: return false;
  }
}

CpuPath best_cpu_path() {
  return cpu_path_available(CpuPath::kAvx2) ? CpuPath::kAvx2 : CpuPath::kBaseline;
}

bool fill_cpu(const FillRequest& request, int num_threads, CpuPath path) {
  if (!cpu_path_available(path)) return false;
  const RangeFill fill = range_fill(path);
  const uint64_t begin = request.first_element;
  const uint64_t end = begin + request.count;
  if (!fill(request, begin, begin)) return false;  // validates (kind, dtype) before any thread starts
  advise_huge_pages(request.out, request.count * element_size(request.dtype));
  const uint64_t per_block = request.dtype == DType::kFloat64 ? 2 : 4;
  const uint64_t workers = worker_count(request.count, num_threads);
  // Chunk boundaries fall on block boundaries so no block is computed twice.
  const uint64_t blocks = (end + per_block - 1) / per_block - begin / per_block;
  const uint64_t blocks_per_worker = (blocks + workers - 1) / workers;
  parallel_for(workers, [&](uint64_t index) {
    const uint64_t first_block = begin / per_block + index * blocks_per_worker;
    const uint64_t chunk_begin = std::max(begin, first_block * per_block);
    const uint64_t chunk_end = std::min(end, (first_block + blocks_per_worker) * per_block);
    if (chunk_begin < chunk_end) fill(request, chunk_begin, chunk_end);
  });
  return true;
}

bool fill_cpu_rows(Kind kind, DType dtype, void* out, uint64_t row_elements, const RowDraw* draws,
                   uint64_t rows, int num_threads, CpuPath path) {
  if (!cpu_path_available(path)) return false;
  const RangeFill fill = range_fill(path);
  if (rows == 0) return true;
  const FillRequest probe = row_request(kind, dtype, out, element_size(dtype), row_elements, 0, draws[0]);
  if (!fill(probe, 0, 0)) return false;
  advise_huge_pages(out, rows * row_elements * element_size(dtype));
  const uint64_t workers = std::min<uint64_t>(worker_count(rows * row_elements, num_threads), rows);
  const uint64_t rows_per_worker = (rows + workers - 1) / workers;
  parallel_for(workers, [&](uint64_t index) {
    const uint64_t last = std::min(rows, (index + 1) * rows_per_worker);
    for (uint64_t row = index * rows_per_worker; row < last; ++row) {
      fill(row_request(kind, dtype, out, element_size(dtype), row_elements, row, draws[row]), 0, row_elements);
    }
  });
  return true;
}

}  // namespace detnoise
