// orders.h — SPEC §10.7's permutation and §10.8's exponential race, on the CPU, straight from the
// drawn buffers. Host code. detnoise._kinds computes the same with torch.sort / torch.argmin for
// CUDA tensors (and samples > 1 without replacement); tests/test_torch_patch.py holds them equal.
// Why native: torch's stable sort of 2^16 int64 keys took 1.3 ms here (torch.randperm: 0.25 ms),
// and the race's torch form makes three whole-size temporaries.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "detnoise/integers.h"  // drawn_word

namespace detnoise {

// Stable sort of one bucket of (key, index) pairs, held in two arrays: on entry in ascending index
// order, on exit in ascending (key, index) order. Buckets of uniform keys hold a few pairs
// (insertion sort); a large one (possible for any keys: all equal, say) goes through std::sort of
// the pairs, whose lexicographic order is the same.
inline void order_bucket(uint64_t* keys, int64_t* index, uint64_t count) {
  if (count > 32) {
    std::vector<std::pair<uint64_t, int64_t>> pairs(count);
    for (uint64_t i = 0; i < count; ++i) pairs[i] = {keys[i], index[i]};
    std::sort(pairs.begin(), pairs.end());
    for (uint64_t i = 0; i < count; ++i) index[i] = pairs[i].second;
    return;
  }
  for (uint64_t i = 1; i < count; ++i) {
    const uint64_t key = keys[i];
    const int64_t moving = index[i];
    uint64_t j = i;
    for (; j > 0 && keys[j - 1] > key; --j) {  // strict: equal keys keep their index order
      keys[j] = keys[j - 1];
      index[j] = index[j - 1];
    }
    keys[j] = key;
    index[j] = moving;
  }
}

// SPEC §10.7: out[0..n) = the indices 0..n-1 in ascending order of (W_k as unsigned, k). A bucket
// sort on the top bits (about n/4 buckets; the counts take at most n bytes), whose scatter carries
// each key beside its index (sorting a bucket then reads its keys in order, not from all over the
// draw: 3x faster at 2^16 keys), filled in index order, then each bucket sorted stably.
template <typename Count>
void order_keys_with(const unsigned char* words, uint64_t n, int64_t* out) {
  int bits = 0;
  while (bits < 22 && (uint64_t{4} << bits) <= n) ++bits;
  const uint64_t buckets = uint64_t{1} << bits;
  auto bucket = [bits](uint64_t word) -> uint64_t { return bits == 0 ? 0 : word >> (64 - bits); };
  std::vector<Count> end(buckets + 1, 0);  // end[b + 1]: bucket b's count, then its first free slot
  for (uint64_t k = 0; k < n; ++k) ++end[bucket(drawn_word(words, k)) + 1];
  for (uint64_t b = 1; b <= buckets; ++b) end[b] += end[b - 1];  // end[b]: where bucket b begins
  std::unique_ptr<uint64_t[]> keys(new uint64_t[n]);  // not zeroed: every slot is written below
  for (uint64_t k = 0; k < n; ++k) {
    const uint64_t word = drawn_word(words, k);
    const Count slot = end[bucket(word)]++;
    keys[slot] = word;
    out[slot] = static_cast<int64_t>(k);
  }
  // Now end[b] is where bucket b ends, and bucket b begins where bucket b - 1 ends.
  uint64_t begin = 0;
  for (uint64_t b = 0; b < buckets; ++b) {
    order_bucket(keys.get() + begin, out + begin, end[b] - begin);
    begin = end[b];
  }
}

inline void order_keys(const void* keys, uint64_t n, int64_t* out) {
  const unsigned char* bytes = static_cast<const unsigned char*>(keys);
  if (n <= UINT32_MAX) {
    order_keys_with<uint32_t>(bytes, n, out);
  } else {
    order_keys_with<uint64_t>(bytes, n, out);
  }
}

// SPEC §10.8's key for one category: X = ((z0 ⊗ z0) ⊕ (z1 ⊗ z1)) ⊗ 0.5 (§10.4), then X ⊘ p, each a
// separately rounded binary64 operation (no contraction: the build forbids it).
inline double race_key(const double* pair, double weight) {
  const double squares = pair[0] * pair[0] + pair[1] * pair[1];
  return squares * 0.5 / weight;
}

// One race: the first index of the least key over `categories` (pairs: (z0, z1) per category).
// A NaN key (0/0: X = +0 with p = 0) counts as least, and the first NaN wins, as in torch.argmin.
template <typename Weight>
int64_t race_winner(const double* pairs, const Weight* weights, uint64_t categories) {
  double best = race_key(pairs, static_cast<double>(weights[0]));
  if (std::isnan(best)) return 0;
  int64_t winner = 0;
  for (uint64_t i = 1; i < categories; ++i) {
    const double key = race_key(pairs + 2 * i, static_cast<double>(weights[i]));
    if (std::isnan(key)) return static_cast<int64_t>(i);
    if (key < best) {
      best = key;
      winner = static_cast<int64_t>(i);
    }
  }
  return winner;
}

// Races [first, last) of a draw laid out as (rows, rounds, categories, 2) binary64 normals; race q
// is round q % rounds of row q / rounds, whose weights are row q / rounds of `weights` (rows x
// categories, contiguous). out[q] = its winner.
template <typename Weight>
void race_winners(const double* pairs, const Weight* weights, uint64_t rounds, uint64_t categories,
                  uint64_t first, uint64_t last, int64_t* out) {
  for (uint64_t q = first; q < last; ++q)
    out[q] = race_winner(pairs + 2 * categories * q, weights + categories * (q / rounds), categories);
}

}  // namespace detnoise
