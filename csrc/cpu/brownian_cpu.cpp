// brownian_cpu.cpp — Brownian tree queries on the CPU: spans of elements split across the thread
// pool; each node's Gaussians for a span come from the vectorised fill (one call per node).
#include "brownian_cpu.h"

#include <algorithm>
#include <vector>

#include "fill_cpu.h"
#include "thread_pool.h"

namespace detnoise {
namespace {

// Elements per span: the six scratch arrays (float64: 6 x 16 KiB) stay in L2, and a fill call's
// fixed cost is small next to 2048 normals.
constexpr uint64_t kSpanElements = 2048;
// As in fill_cpu.cpp: below this many normals per thread a hand-off costs more than it saves.
constexpr uint64_t kMinNormalsPerThread = 1u << 16;

uint64_t worker_count(const BrownianRequest& request, int num_threads, uint64_t items) {
  const uint64_t normals = request.n * request.rows * static_cast<uint64_t>(2 * request.depth + 2);
  const uint64_t useful = std::max<uint64_t>(1, normals / kMinNormalsPerThread);
  return std::min({static_cast<uint64_t>(std::max(num_threads, 1)), useful, items});
}

// Z_node for elements [first, first + lanes) of one row: an ordinary normal draw (SPEC §9.2).
template <typename T>
struct BrownianFillSource {
  uint64_t key;
  uint64_t first;
  uint64_t lanes;
  CpuPath path;
  void operator()(uint64_t node, T* z) const {
    const FillRequest draw{Kind::kNormal, BrownianNormal<T>::kDType, z, lanes, first, key, node, 0};
    fill_cpu(draw, 1, path);
  }
};

template <typename T>
void run_spans(const BrownianRequest& request, int num_threads, CpuPath path) {
  const uint64_t spans_per_row = (request.n + kSpanElements - 1) / kSpanElements;
  const uint64_t spans = spans_per_row * request.rows;
  const uint64_t workers = worker_count(request, num_threads, spans);
  parallel_for(workers, [&](uint64_t worker) {
    std::vector<T> buffer(6 * kSpanElements);
    const BrownianScratch scratch{buffer.data(), buffer.data() + kSpanElements,
                                  {buffer.data() + 2 * kSpanElements, buffer.data() + 3 * kSpanElements},
                                  {buffer.data() + 4 * kSpanElements, buffer.data() + 5 * kSpanElements}};
    for (uint64_t span = worker; span < spans; span += workers) {
      const uint64_t row = span / spans_per_row;
      const uint64_t first = (span - row * spans_per_row) * kSpanElements;
      const uint64_t lanes = std::min(kSpanElements, request.n - first);
      const BrownianFillSource<T> source{request.seeds[row] ^ kBrownianKeyTweak, first, lanes, path};
      brownian_span<T>(request, row, first, lanes, source, scratch);
    }
  });
}

}  // namespace

void brownian_cpu(const BrownianRequest& request, int num_threads, CpuPath path) {
  if (request.n == 0 || request.rows == 0) return;
  if (path == CpuPath::kScalar) {
    // The device body as it stands: one Philox block per work item.
    const uint64_t items = brownian_blocks_per_row(request) * request.rows;
    const uint64_t workers = worker_count(request, num_threads, items);
    parallel_for(workers, [&](uint64_t worker) { brownian_thread(worker, workers, request); });
    return;
  }
  if (brownian_computes_in_f64(request)) {
    run_spans<double>(request, num_threads, path);
  } else {
    run_spans<float>(request, num_threads, path);
  }
}

}  // namespace detnoise
