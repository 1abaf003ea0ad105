// torch_state.h — the position record in a torch CPU generator's state (Note [Torch generator
// positions], docs/SPEC.md §3): (seed, stream, block) and a SHA-256 check value in the low halves of
// Mersenne Twister slots 0-7 of torch's 5056-byte CPUGeneratorImplState. Host only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "detnoise/sha256.h"

namespace detnoise {

constexpr size_t kTorchCpuStateSize = 5056;
constexpr size_t kTorchRecordByte = 24;                  // MT slot 0
constexpr size_t kTorchWordsEnd = 24 + 624 * 8;          // after the last MT slot
constexpr char kTorchPositionDomain[] = "detnoise/torch-position/v1";

inline uint32_t load_le32(const uint8_t* bytes) {
  return uint32_t(bytes[0]) | uint32_t(bytes[1]) << 8 | uint32_t(bytes[2]) << 16 | uint32_t(bytes[3]) << 24;
}

inline void store_le32(uint8_t* bytes, uint32_t value) {
  for (int i = 0; i < 4; ++i) bytes[i] = static_cast<uint8_t>(value >> (8 * i));
}

// u64(SHA-256(domain ‖ u64le seed, stream, block ‖ state[0:24] ‖ state[5016:5056])[0:8]).
inline uint64_t torch_record_check(uint64_t seed, uint64_t stream, uint64_t block, const uint8_t* state) {
  Sha256 hash;
  hash.update(kTorchPositionDomain, sizeof kTorchPositionDomain - 1);
  uint8_t position[24];
  const uint64_t values[3] = {seed, stream, block};
  for (int k = 0; k < 3; ++k) {
    for (int i = 0; i < 8; ++i) position[8 * k + i] = static_cast<uint8_t>(values[k] >> (8 * i));
  }
  hash.update(position, sizeof position);
  hash.update(state, kTorchRecordByte);
  hash.update(state + kTorchWordsEnd, kTorchCpuStateSize - kTorchWordsEnd);
  const uint32_t* words = hash.finish();  // big-endian words: the digest's first 8 bytes, read little-endian
  uint64_t check = 0;
  for (int i = 0; i < 8; ++i) {
    const uint64_t byte = (words[i / 4] >> (24 - 8 * (i % 4))) & 0xFF;
    check |= byte << (8 * i);
  }
  return check;
}

// r_k: the low 4 bytes of MT slot k.
inline uint64_t torch_record_value(const uint8_t* state, int pair) {
  const uint8_t* slot = state + kTorchRecordByte + 16 * pair;
  return uint64_t(load_le32(slot)) | uint64_t(load_le32(slot + 8)) << 32;
}

// Whether ``state`` holds a valid record, and which position.
inline bool torch_record_read(const uint8_t* state, uint64_t* seed, uint64_t* stream, uint64_t* block) {
  *seed = torch_record_value(state, 0);
  *stream = torch_record_value(state, 1);
  *block = torch_record_value(state, 2);
  return torch_record_value(state, 3) == torch_record_check(*seed, *stream, *block, state);
}

// Writes the record of (seed, stream, block) into slots 0-7 (high halves 0, as torch writes them).
inline void torch_record_write(uint8_t* state, uint64_t seed, uint64_t stream, uint64_t block) {
  const uint64_t values[4] = {seed, stream, block, torch_record_check(seed, stream, block, state)};
  for (int k = 0; k < 4; ++k) {
    uint8_t* slot = state + kTorchRecordByte + 16 * k;
    std::memset(slot, 0, 16);
    store_le32(slot, static_cast<uint32_t>(values[k]));
    store_le32(slot + 8, static_cast<uint32_t>(values[k] >> 32));
  }
}

}  // namespace detnoise
