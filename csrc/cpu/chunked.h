// chunked.h — the CPU fill loop that compilers vectorise: Philox words for a chunk of blocks go to
// structure-of-arrays buffers, then every block is transformed by the same per-block code as the
// scalar path (detnoise/transforms.h), then stored. Included once per instruction set
// (path_baseline.cpp, path_avx2.cpp) with DETNOISE_CPU_PATH naming the namespace and PhiloxChunk
// supplying the words; nothing here may change a value, only how many are computed at once.
#pragma once

#include <algorithm>

#include "detnoise/fill.h"

namespace detnoise {

constexpr int kChunkBlocks = 64;

// words[m][j] = word m of block first_block + j, for j < kChunkBlocks.
using ChunkWords = uint32_t[4][kChunkBlocks];

// Fills a partial first block of [begin, end) with the scalar path; returns where whole blocks start.
template <typename Transform>
uint64_t fill_leading_partial_block(const FillRequest& request, uint64_t begin, uint64_t end) {
  constexpr uint64_t kPerBlock = Transform::kPerBlock;
  const uint64_t aligned = std::min(end, (begin + kPerBlock - 1) / kPerBlock * kPerBlock);
  if (begin < aligned) fill_block_range<Transform>(request, begin, aligned);
  return aligned;  // begin <= aligned <= end
}

template <typename Transform, typename PhiloxChunk>
void fill_chunked(const FillRequest& request, uint64_t begin, uint64_t end) {
  using Storage = typename Transform::Storage;
  constexpr uint64_t kPerBlock = Transform::kPerBlock;
  constexpr uint64_t kChunkElements = kChunkBlocks * kPerBlock;
  Storage* out = static_cast<Storage*>(request.out);
  uint64_t element = fill_leading_partial_block<Transform>(request, begin, end);
  alignas(64) ChunkWords words;
  while (end - element >= kChunkElements) {
    PhiloxChunk::run(request.seed, request.stream, request.offset + element / kPerBlock, words);
    Storage* target = out + (element - request.first_element);
    for (int j = 0; j < kChunkBlocks; ++j) {
      Storage values[kPerBlock];
      Transform::block(Words4{{words[0][j], words[1][j], words[2][j], words[3][j]}}, values);
      for (uint64_t slot = 0; slot < kPerBlock; ++slot) target[j * kPerBlock + slot] = values[slot];
    }
    element += kChunkElements;
  }
  if (element < end) fill_block_range<Transform>(request, element, end);
}

template <typename PhiloxChunk>
struct ChunkedFill {
  const FillRequest& request;
  uint64_t begin;
  uint64_t end;
  template <typename Transform>
  void run() const {
    fill_chunked<Transform, PhiloxChunk>(request, begin, end);
  }
};

// Portable words for a chunk: the scalar Philox, one block at a time.
struct PhiloxChunkPortable {
  static void run(uint64_t seed, uint64_t stream, uint64_t first_block, ChunkWords& words) {
    for (int j = 0; j < kChunkBlocks; ++j) {
      const Words4 block = philox_block(seed, stream, first_block + static_cast<uint64_t>(j));
      for (int m = 0; m < 4; ++m) words[m][j] = block.w[m];
    }
  }
};

}  // namespace detnoise
