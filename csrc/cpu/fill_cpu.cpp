// fill_cpu.cpp — splits a draw across std::threads by block-aligned element ranges.
#include "fill_cpu.h"

#include <algorithm>
#include <thread>
#include <vector>

namespace detnoise {
namespace {

// Below this many elements per thread, starting a thread costs more than it saves.
constexpr uint64_t kMinElementsPerThread = 1u << 16;

template <typename Transform>
void fill_threaded(const FillRequest& request, int num_threads) {
  constexpr uint64_t kPerBlock = Transform::kPerBlock;
  const uint64_t begin = request.first_element;
  const uint64_t end = begin + request.count;
  const uint64_t useful = std::max<uint64_t>(1, request.count / kMinElementsPerThread);
  const uint64_t workers = std::min<uint64_t>(std::max(num_threads, 1), useful);
  if (workers <= 1) {
    fill_block_range<Transform>(request, begin, end);
    return;
  }
  // Chunk boundaries fall on block boundaries so no block is computed twice.
  const uint64_t blocks = (end + kPerBlock - 1) / kPerBlock - begin / kPerBlock;
  const uint64_t blocks_per_worker = (blocks + workers - 1) / workers;
  std::vector<std::thread> threads;
  threads.reserve(workers - 1);
  auto chunk = [&](uint64_t index) {
    const uint64_t first_block = begin / kPerBlock + index * blocks_per_worker;
    const uint64_t chunk_begin = std::max(begin, first_block * kPerBlock);
    const uint64_t chunk_end = std::min(end, (first_block + blocks_per_worker) * kPerBlock);
    if (chunk_begin < chunk_end) fill_block_range<Transform>(request, chunk_begin, chunk_end);
  };
  for (uint64_t index = 1; index < workers; ++index) {
    try {
      threads.emplace_back(chunk, index);
    } catch (...) {  // no thread to be had: do that chunk here rather than fail half-written
      chunk(index);
    }
  }
  chunk(0);
  for (auto& thread : threads) thread.join();
}

struct ThreadedFill {
  const FillRequest& request;
  int num_threads;
  template <typename Transform>
  void run() const {
    fill_threaded<Transform>(request, num_threads);
  }
};

template <typename Transform>
void fill_rows_threaded(Kind kind, DType dtype, void* out, uint64_t row_elements,
                        const RowDraw* draws, uint64_t rows, int num_threads) {
  const uint64_t total = rows * row_elements;
  const uint64_t useful = std::max<uint64_t>(1, total / kMinElementsPerThread);
  const uint64_t workers = std::min<uint64_t>({static_cast<uint64_t>(std::max(num_threads, 1)), useful, rows});
  auto rows_of = [&](uint64_t index) {
    const uint64_t per_worker = (rows + workers - 1) / workers;
    for (uint64_t row = index * per_worker; row < std::min(rows, (index + 1) * per_worker); ++row) {
      const FillRequest request = row_request(kind, dtype, out, element_size(dtype), row_elements, row, draws[row]);
      fill_block_range<Transform>(request, 0, row_elements);
    }
  };
  std::vector<std::thread> threads;
  for (uint64_t index = 1; index < workers; ++index) {
    try {
      threads.emplace_back(rows_of, index);
    } catch (...) {
      rows_of(index);
    }
  }
  rows_of(0);
  for (auto& thread : threads) thread.join();
}

struct ThreadedRowsFill {
  Kind kind;
  DType dtype;
  void* out;
  uint64_t row_elements;
  const RowDraw* draws;
  uint64_t rows;
  int num_threads;
  template <typename Transform>
  void run() const {
    fill_rows_threaded<Transform>(kind, dtype, out, row_elements, draws, rows, num_threads);
  }
};

}  // namespace

bool fill_cpu_rows(Kind kind, DType dtype, void* out, uint64_t row_elements, const RowDraw* draws,
                   uint64_t rows, int num_threads) {
  return dispatch_transform(kind, dtype,
                            ThreadedRowsFill{kind, dtype, out, row_elements, draws, rows, num_threads});
}

bool fill_cpu(const FillRequest& request, int num_threads) {
  return dispatch_transform(request.kind, request.dtype, ThreadedFill{request, num_threads});
}

}  // namespace detnoise
