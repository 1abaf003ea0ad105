// digest_driver.cpp — the C++ core's own test driver, built without Python or torch.
// Reads lines "kind dtype seed stream offset first_element n" (kind: bits|uniform|normal; dtype:
// uint32|float32|float64|float16|bfloat16) and prints the SHA-256 of each draw's little-endian bytes.
// tests/test_native_driver.py builds it with g++, clang++, the sanitizers and an aarch64 cross
// compiler, and compares every digest with the numpy reference.
#include <cstdint>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "cpu/fill_cpu.h"
#include "sha256.h"

namespace {

bool parse_kind(const std::string& text, detnoise::Kind* kind) {
  if (text == "bits") *kind = detnoise::Kind::kBits;
  else if (text == "uniform") *kind = detnoise::Kind::kUniform;
  else if (text == "normal") *kind = detnoise::Kind::kNormal;
  else return false;
  return true;
}

bool parse_dtype(const std::string& text, detnoise::DType* dtype, size_t* width) {
  if (text == "uint32") { *dtype = detnoise::DType::kUInt32; *width = 4; }
  else if (text == "float32") { *dtype = detnoise::DType::kFloat32; *width = 4; }
  else if (text == "float64") { *dtype = detnoise::DType::kFloat64; *width = 8; }
  else if (text == "float16") { *dtype = detnoise::DType::kFloat16; *width = 2; }
  else if (text == "bfloat16") { *dtype = detnoise::DType::kBFloat16; *width = 2; }
  else return false;
  return true;
}

}  // namespace

int main() {
  std::string line;
  int status = 0;
  while (std::getline(std::cin, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string kind_text, dtype_text;
    uint64_t seed, stream, offset, first_element, count;
    if (!(fields >> kind_text >> dtype_text >> seed >> stream >> offset >> first_element >> count)) {
      std::cerr << "bad line: " << line << "\n";
      return 2;
    }
    detnoise::Kind kind;
    detnoise::DType dtype;
    size_t width;
    if (!parse_kind(kind_text, &kind) || !parse_dtype(dtype_text, &dtype, &width)) {
      std::cerr << "bad kind or dtype: " << line << "\n";
      return 2;
    }
    // Exact-size buffers, so AddressSanitizer sees any write past the end of a draw.
    std::vector<unsigned char> single(count * width), other(count * width);
    detnoise::FillRequest request{kind, dtype, single.data(), count, first_element, seed, stream, offset};
    if (!detnoise::fill_cpu(request, 1, detnoise::CpuPath::kScalar)) {
      std::cerr << "unsupported pair: " << line << "\n";
      return 2;
    }
    // Every other path this CPU can run, at 1 and 3 threads, must give the scalar path's bytes.
    request.out = other.data();
    for (auto path : {detnoise::CpuPath::kScalar, detnoise::CpuPath::kBaseline, detnoise::CpuPath::kAvx2}) {
      if (!detnoise::cpu_path_available(path)) continue;
      for (int threads : {1, 3}) {
        detnoise::fill_cpu(request, threads, path);
        if (count > 0 && std::memcmp(single.data(), other.data(), single.size()) != 0) {
          std::cerr << "path " << static_cast<int>(path) << " with " << threads << " threads differs: " << line << "\n";
          status = 1;
        }
      }
    }
    detnoise_test::Sha256 hash;
    hash.update(single.data(), single.size());  // the host is little-endian (checked by the test)
    std::cout << hash.hex_digest() << "\n";
  }
  return status;
}
