// bindings.cpp — the only pybind11 file: exposes the CPU (and, when built, CUDA) launchers to
// detnoise._core. Buffers arrive as integer addresses, so the extension never links libtorch.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <algorithm>
#include <string>
#include <tuple>
#include <vector>

#include "cpu/brownian_cpu.h"
#include "cpu/fill_cpu.h"
#include "cpu/thread_pool.h"
#include "detnoise/integers.h"
#include "detnoise/orders.h"
#include "detnoise/philox.h"
#include "detnoise/torch_state.h"
#ifdef DETNOISE_WITH_CUDA
#include "cuda/brownian_cuda.h"
#include "cuda/fill_cuda.h"
#endif

namespace py = pybind11;

namespace {

// Element range [first, first + count) of a draw at block `offset`: refuses ranges whose element
// or block indices would wrap past 2^64, so no kernel ever computes a wrapped bound.
void check_draw_range(int dtype, uint64_t first, uint64_t count, uint64_t offset) {
  if (count == 0) return;
  const uint64_t per_block = dtype == static_cast<int>(detnoise::DType::kFloat64) ? 2 : 4;
  if (first > UINT64_MAX - count + 1 || first + (count - 1) > UINT64_MAX - per_block)
    throw std::overflow_error("element range passes 2^64");
  const uint64_t last_block = (first + count - 1) / per_block;
  if (last_block > UINT64_MAX - offset) throw std::overflow_error("draw passes block 2^64 of the stream");
}

detnoise::FillRequest make_request(int kind, int dtype, uintptr_t out, uint64_t count,
                                   uint64_t first_element, uint64_t seed, uint64_t stream,
                                   uint64_t offset) {
  if (kind < 0 || kind > 2) throw std::invalid_argument("kind must be 0 (bits), 1 (uniform) or 2 (normal)");
  if (dtype < 0 || dtype > 4) throw std::invalid_argument("unknown dtype code " + std::to_string(dtype));
  if (count > 0 && out == 0) throw std::invalid_argument("output address is null");
  check_draw_range(dtype, first_element, count, offset);
  return {static_cast<detnoise::Kind>(kind), static_cast<detnoise::DType>(dtype),
          reinterpret_cast<void*>(out), count, first_element, seed, stream, offset};
}

detnoise::CpuPath cpu_path(int path) {
  const auto value = static_cast<detnoise::CpuPath>(path);
  if (path < -1 || path > 2 || !detnoise::cpu_path_available(value))
    throw std::invalid_argument("CPU path " + std::to_string(path) + " is not available on this machine");
  return value;
}

void fill_cpu(int kind, int dtype, uintptr_t out, uint64_t count, uint64_t first_element,
              uint64_t seed, uint64_t stream, uint64_t offset, int num_threads, int path) {
  const auto request = make_request(kind, dtype, out, count, first_element, seed, stream, offset);
  const auto chosen = cpu_path(path);
  bool supported;
  {
    py::gil_scoped_release release;
    supported = detnoise::fill_cpu(request, num_threads, chosen);
  }
  if (!supported) throw std::invalid_argument("unsupported (kind, dtype) pair");
}

// How many parts a CPU job of `elements` splits into: up to `num_threads`, at most `units` (the
// pieces that cannot be split), and at least 2^16 elements each.
uint64_t cpu_parts(int num_threads, uint64_t units, uint64_t elements) {
  const uint64_t threads = static_cast<uint64_t>(num_threads > 0 ? num_threads : 1);
  return std::max<uint64_t>(1, std::min<uint64_t>({threads, units, elements >> 16}));
}

// SPEC §10.6 on the CPU: `count` drawn 64-bit words at `buffer` become int64 low + floor(W*span/2^64)
// in place, on up to `num_threads` threads (one per 2^16 elements at most).
void scale_words_cpu(uintptr_t buffer, uint64_t count, uint64_t span, int64_t low, int num_threads) {
  if (span < 1 || span > (uint64_t{1} << 63)) throw std::invalid_argument("span must be in [1, 2^63]");
  if (low > 0 && span > static_cast<uint64_t>(INT64_MAX) - static_cast<uint64_t>(low) + 1)
    throw std::overflow_error("low + span passes 2^63");
  if (count == 0) return;
  unsigned char* bytes = reinterpret_cast<unsigned char*>(buffer);
  const uint64_t parts = cpu_parts(num_threads, count, count);
  py::gil_scoped_release release;
  detnoise::parallel_for(parts, [&](uint64_t part) {
    const uint64_t begin = count * part / parts, end = count * (part + 1) / parts;
    detnoise::scale_words_in_place(bytes + 8 * begin, end - begin, span, low);
  });
}

// SPEC §10.7 on the CPU: `out` (n int64) = the stable ascending order of the n drawn 64-bit words at
// `keys`.
void order_keys_cpu(uintptr_t keys, uint64_t n, uintptr_t out) {
  if (n > 0 && (keys == 0 || out == 0)) throw std::invalid_argument("buffer address is null");
  if (n > static_cast<uint64_t>(INT64_MAX)) throw std::overflow_error("n passes 2^63");
  py::gil_scoped_release release;
  detnoise::order_keys(reinterpret_cast<const void*>(keys), n, reinterpret_cast<int64_t*>(out));
}

// SPEC §10.8's races on the CPU: `pairs` holds (rows, rounds, categories, 2) binary64 normals,
// `weights` (rows, categories) contiguous float32 (weight_bits 32) or float64 (64); out[q] (int64,
// rows * rounds) = the winner of race q, on up to `num_threads` threads (one per 2^16 keys at most).
void race_winners_cpu(uintptr_t pairs, uintptr_t weights, int weight_bits, uint64_t rows, uint64_t rounds,
                      uint64_t categories, uintptr_t out, int num_threads) {
  if (weight_bits != 32 && weight_bits != 64) throw std::invalid_argument("weights must be float32 or float64");
  if (categories == 0) throw std::invalid_argument("a race needs at least one category");
  const uint64_t races = rows * rounds;
  if (rounds != 0 && races / rounds != rows) throw std::overflow_error("rows * rounds passes 2^64");
  if (races == 0) return;
  if (races > UINT64_MAX / categories / 16) throw std::overflow_error("draw passes 2^64 bytes");
  if (pairs == 0 || weights == 0 || out == 0) throw std::invalid_argument("buffer address is null");
  const double* z = reinterpret_cast<const double*>(pairs);
  int64_t* winners = reinterpret_cast<int64_t*>(out);
  const uint64_t parts = cpu_parts(num_threads, races, races * categories);
  py::gil_scoped_release release;
  detnoise::parallel_for(parts, [&](uint64_t part) {
    const uint64_t first = races * part / parts, last = races * (part + 1) / parts;
    if (weight_bits == 32) {
      detnoise::race_winners(z, reinterpret_cast<const float*>(weights), rounds, categories, first, last, winners);
    } else {
      detnoise::race_winners(z, reinterpret_cast<const double*>(weights), rounds, categories, first, last, winners);
    }
  });
}

py::list cpu_paths() {
  py::list names;
  const char* all[] = {"scalar", "baseline", "avx2"};
  for (int path = 0; path < 3; ++path) {
    if (detnoise::cpu_path_available(static_cast<detnoise::CpuPath>(path))) names.append(all[path]);
  }
  return names;
}

std::vector<detnoise::RowDraw> row_draws(const std::vector<uint64_t>& seeds,
                                         const std::vector<uint64_t>& streams,
                                         const std::vector<uint64_t>& offsets) {
  if (seeds.size() != streams.size() || seeds.size() != offsets.size())
    throw std::invalid_argument("seeds, streams and offsets must have one entry per row");
  std::vector<detnoise::RowDraw> draws(seeds.size());
  for (size_t r = 0; r < seeds.size(); ++r) draws[r] = {seeds[r], streams[r], offsets[r]};
  return draws;
}

void check_rows(int kind, int dtype, uintptr_t out, uint64_t row_elements,
                const std::vector<detnoise::RowDraw>& draws) {
  if (!draws.empty() && row_elements > UINT64_MAX / draws.size()) throw std::overflow_error("batch too large");
  make_request(kind, dtype, out, row_elements * draws.size(), 0, 0, 0, 0);
  for (const auto& draw : draws) check_draw_range(dtype, 0, row_elements, draw.offset);
}

void fill_cpu_rows(int kind, int dtype, uintptr_t out, uint64_t row_elements,
                   const std::vector<uint64_t>& seeds, const std::vector<uint64_t>& streams,
                   const std::vector<uint64_t>& offsets, int num_threads, int path) {
  const auto draws = row_draws(seeds, streams, offsets);
  check_rows(kind, dtype, out, row_elements, draws);
  const auto chosen = cpu_path(path);
  bool supported;
  {
    py::gil_scoped_release release;
    supported = detnoise::fill_cpu_rows(static_cast<detnoise::Kind>(kind), static_cast<detnoise::DType>(dtype),
                                        reinterpret_cast<void*>(out), row_elements, draws.data(),
                                        draws.size(), num_threads, chosen);
  }
  if (!supported) throw std::invalid_argument("unsupported (kind, dtype) pair");
}

detnoise::StridedRequest strided_request(int kind, int dtype, uintptr_t out, const std::vector<uint64_t>& sizes,
                                         const std::vector<uint64_t>& strides, uint64_t base, uint64_t seed,
                                         uint64_t stream, uint64_t offset) {
  if (sizes.empty() || sizes.size() != strides.size() || sizes.size() > detnoise::kMaxStridedDims)
    throw std::invalid_argument("strided draws take 1 to 8 dimensions with one stride each");
  make_request(kind, dtype, out, 0, 0, seed, stream, offset);
  // The largest element index the selection reaches must not wrap, nor pass block 2^64.
  uint64_t last = base, total = 1;
  for (size_t dim = 0; dim < sizes.size(); ++dim) {
    uint64_t reach = 0;
    if (sizes[dim] == 0) total = 0;
    if (sizes[dim] > 0 && (__builtin_mul_overflow(sizes[dim] - 1, strides[dim], &reach) ||
                           __builtin_add_overflow(last, reach, &last)))
      throw std::overflow_error("strided selection passes element 2^64");
    if (__builtin_mul_overflow(total, sizes[dim], &total)) throw std::overflow_error("selection too large");
  }
  if (total > 0) {
    if (out == 0) throw std::invalid_argument("output address is null");
    check_draw_range(dtype, last, 1, offset);
  }
  detnoise::StridedRequest request{};
  request.kind = static_cast<detnoise::Kind>(kind);
  request.dtype = static_cast<detnoise::DType>(dtype);
  request.out = reinterpret_cast<void*>(out);
  request.ndim = static_cast<int>(sizes.size());
  for (size_t dim = 0; dim < sizes.size(); ++dim) {
    request.sizes[dim] = sizes[dim];
    request.strides[dim] = strides[dim];
  }
  request.base = base;
  request.seed = seed;
  request.stream = stream;
  request.offset = offset;
  return request;
}

void fill_cpu_strided(int kind, int dtype, uintptr_t out, const std::vector<uint64_t>& sizes,
                      const std::vector<uint64_t>& strides, uint64_t base, uint64_t seed, uint64_t stream,
                      uint64_t offset, int num_threads, int path) {
  const auto request = strided_request(kind, dtype, out, sizes, strides, base, seed, stream, offset);
  const auto chosen = cpu_path(path);
  bool supported;
  {
    py::gil_scoped_release release;
    supported = detnoise::fill_cpu_strided(request, num_threads, chosen);
  }
  if (!supported) throw std::invalid_argument("unsupported (kind, dtype) pair");
}

py::tuple philox4x32_10(py::tuple counter, py::tuple key) {
  if (counter.size() != 4 || key.size() != 2)
    throw std::invalid_argument("philox4x32_10 takes a 4-word counter and a 2-word key");
  detnoise::Words4 ctr{};
  for (int i = 0; i < 4; ++i) ctr.w[i] = counter[i].cast<uint32_t>();
  const auto out = detnoise::philox4x32_10(ctr, key[0].cast<uint32_t>(), key[1].cast<uint32_t>());
  return py::make_tuple(out.w[0], out.w[1], out.w[2], out.w[3]);
}

#ifdef DETNOISE_WITH_CUDA
void fill_cuda(int kind, int dtype, uintptr_t out, uint64_t count, uint64_t first_element,
               uint64_t seed, uint64_t stream, uint64_t offset, int device, uintptr_t cuda_stream) {
  const auto request = make_request(kind, dtype, out, count, first_element, seed, stream, offset);
  std::string error;
  {
    py::gil_scoped_release release;
    error = detnoise::fill_cuda(request, device, cuda_stream);
  }
  if (!error.empty()) throw std::runtime_error("detnoise CUDA launch failed: " + error);
}

void fill_cuda_rows(int kind, int dtype, uintptr_t out, uint64_t row_elements,
                    const std::vector<uint64_t>& seeds, const std::vector<uint64_t>& streams,
                    const std::vector<uint64_t>& offsets, int device, uintptr_t cuda_stream) {
  const auto draws = row_draws(seeds, streams, offsets);
  check_rows(kind, dtype, out, row_elements, draws);
  std::string error;
  {
    py::gil_scoped_release release;
    error = detnoise::fill_cuda_rows(static_cast<detnoise::Kind>(kind), static_cast<detnoise::DType>(dtype),
                                     reinterpret_cast<void*>(out), row_elements, draws.data(), draws.size(),
                                     device, cuda_stream);
  }
  if (!error.empty()) throw std::runtime_error("detnoise CUDA launch failed: " + error);
}

void fill_cuda_strided(int kind, int dtype, uintptr_t out, const std::vector<uint64_t>& sizes,
                       const std::vector<uint64_t>& strides, uint64_t base, uint64_t seed, uint64_t stream,
                       uint64_t offset, int device, uintptr_t cuda_stream) {
  const auto request = strided_request(kind, dtype, out, sizes, strides, base, seed, stream, offset);
  std::string error;
  {
    py::gil_scoped_release release;
    error = detnoise::fill_cuda_strided(request, device, cuda_stream);
  }
  if (!error.empty()) throw std::runtime_error("detnoise CUDA launch failed: " + error);
}

void fill_cuda_device_offset(int kind, int dtype, uintptr_t out, uint64_t count, uint64_t seed, uint64_t stream,
                             uintptr_t offset_on_device, uint64_t blocks, int device, uintptr_t cuda_stream) {
  const auto request = make_request(kind, dtype, out, count, 0, seed, stream, 0);
  if (offset_on_device == 0) throw std::invalid_argument("offset address is null");
  std::string error;
  {
    py::gil_scoped_release release;
    error = detnoise::fill_cuda_device_offset(request, reinterpret_cast<uint64_t*>(offset_on_device), blocks,
                                              device, cuda_stream);
  }
  if (!error.empty()) throw std::runtime_error("detnoise CUDA launch failed: " + error);
}

py::tuple cuda_device_count() {
  std::string error;
  const int count = detnoise::cuda_device_count(&error);
  return py::make_tuple(count, error);
}
#endif

// (driver CUDA version or 0, linked runtime version or 0, built architectures "75-real,...,120" or "").
py::tuple cuda_versions() {
#ifdef DETNOISE_WITH_CUDA
  const auto versions = detnoise::cuda_versions();
  return py::make_tuple(versions.driver, versions.runtime, versions.architectures);
#else
  return py::make_tuple(0, 0, std::string());
#endif
}

// ---- Brownian tree queries (docs/SPEC.md §9, detnoise/brownian.h) -----------------------------
// A point is (mode, leaf, beta, known address, save address); rows go to the launcher 32 at a time.
using BrownianPointArgs = std::tuple<int, uint64_t, double, uintptr_t, uintptr_t>;

template <typename Launch>
void brownian_query(int dtype, uintptr_t out, uint64_t n, const std::vector<uint64_t>& seeds, int depth,
                    double sigma_end, const std::vector<double>& sigma, const std::vector<BrownianPointArgs>& points,
                    const Launch& launch) {
  namespace dn = detnoise;
  if (dtype < 1 || dtype > 4) throw std::invalid_argument("Brownian trees take float32, float64, float16 or bfloat16");
  if (depth < 0 || depth > dn::kBrownianMaxDepth || sigma.size() != static_cast<size_t>(depth))
    throw std::invalid_argument("depth must be in [0, 52] with one sigma per level");
  if (points.size() != 2) throw std::invalid_argument("a query has two points (s, t)");
  if (!seeds.empty() && n > UINT64_MAX / 16 / seeds.size()) throw std::overflow_error("tree too large");
  const size_t compute_size = dtype == static_cast<int>(dn::DType::kFloat64) ? 8 : 4;
  const size_t out_size = dn::element_size(static_cast<dn::DType>(dtype));
  dn::BrownianRequest request{};
  request.dtype = static_cast<dn::DType>(dtype);
  request.n = n;
  request.depth = depth;
  request.sigma_end = sigma_end;
  for (int d = 0; d < depth; ++d) request.sigma[d] = sigma[d];
  for (int p = 0; p < 2; ++p) {
    const auto& [mode, leaf, beta, known, save] = points[p];
    if (mode < 0 || mode > 3) throw std::invalid_argument("unknown point mode");
    if (mode == static_cast<int>(dn::BrownianMode::kDescend) &&
        ((depth < 64 && leaf >> depth != 0) || !(beta >= 0.0 && beta < 1.0)))
      throw std::invalid_argument("leaf must be below 2^depth and beta in [0, 1)");
    if (mode == static_cast<int>(dn::BrownianMode::kKnown) && known == 0 && n > 0)
      throw std::invalid_argument("a known point needs its values");
  }
  for (size_t first = 0; first < seeds.size(); first += dn::kBrownianMaxRows) {
    const size_t rows = std::min<size_t>(dn::kBrownianMaxRows, seeds.size() - first);
    const uint64_t skip = first * n;
    request.rows = static_cast<uint32_t>(rows);
    for (size_t r = 0; r < rows; ++r) request.seeds[r] = seeds[first + r];
    request.out = out == 0 ? nullptr : reinterpret_cast<unsigned char*>(out) + skip * out_size;
    for (int p = 0; p < 2; ++p) {
      const auto& [mode, leaf, beta, known, save] = points[p];
      request.point[p] = {static_cast<dn::BrownianMode>(mode), leaf, beta,
                          known == 0 ? nullptr : reinterpret_cast<const unsigned char*>(known) + skip * compute_size,
                          save == 0 ? nullptr : reinterpret_cast<unsigned char*>(save) + skip * compute_size};
    }
    launch(request);
  }
}

void brownian_cpu(int dtype, uintptr_t out, uint64_t n, const std::vector<uint64_t>& seeds, int depth,
                  double sigma_end, const std::vector<double>& sigma, const std::vector<BrownianPointArgs>& points,
                  int num_threads, int path) {
  const auto chosen = cpu_path(path);
  py::gil_scoped_release release;
  brownian_query(dtype, out, n, seeds, depth, sigma_end, sigma, points,
                 [&](const detnoise::BrownianRequest& request) { detnoise::brownian_cpu(request, num_threads, chosen); });
}

#ifdef DETNOISE_WITH_CUDA
void brownian_cuda(int dtype, uintptr_t out, uint64_t n, const std::vector<uint64_t>& seeds, int depth,
                   double sigma_end, const std::vector<double>& sigma, const std::vector<BrownianPointArgs>& points,
                   int device, uintptr_t cuda_stream) {
  std::string error;
  {
    py::gil_scoped_release release;
    brownian_query(dtype, out, n, seeds, depth, sigma_end, sigma, points,
                   [&](const detnoise::BrownianRequest& request) {
                     if (error.empty()) error = detnoise::brownian_cuda(request, device, cuda_stream);
                   });
  }
  if (!error.empty()) throw std::runtime_error("detnoise CUDA launch failed: " + error);
}
#endif

// A torch CPU generator state's position record (SPEC §3), read and written in place at ``address``
// (the 5056 bytes of a state tensor from get_state()). None where the state holds no valid record.
py::object torch_record_read(uintptr_t address) {
  uint64_t seed, stream, block;
  if (!detnoise::torch_record_read(reinterpret_cast<const uint8_t*>(address), &seed, &stream, &block)) {
    return py::none();
  }
  return py::make_tuple(seed, stream, block);
}

void torch_record_write(uintptr_t address, uint64_t seed, uint64_t stream, uint64_t block) {
  detnoise::torch_record_write(reinterpret_cast<uint8_t*>(address), seed, stream, block);
}

// A draw's reservation on a recorded state: (seed, stream, start) and the record moved to
// start + blocks, or None (the state unchanged) without a valid record or if the block count wraps
// (the caller's general path then raises).
py::object torch_record_advance(uintptr_t address, uint64_t blocks) {
  auto* state = reinterpret_cast<uint8_t*>(address);
  uint64_t seed, stream, start;
  if (!detnoise::torch_record_read(state, &seed, &stream, &start) || start + blocks < start) {
    return py::none();
  }
  detnoise::torch_record_write(state, seed, stream, start + blocks);
  return py::make_tuple(seed, stream, start);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "detnoise native kernels (Philox4x32-10 stream v1); see docs/SPEC.md";
  m.def("torch_record_read", &torch_record_read, py::arg("address"),
        "The (seed, stream, block) recorded in a 5056-byte torch CPU generator state, or None (SPEC §3).");
  m.def("torch_record_write", &torch_record_write, py::arg("address"), py::arg("seed"), py::arg("stream"),
        py::arg("block"), "Writes the record of (seed, stream, block) into a 5056-byte torch CPU state.");
  m.def("torch_record_advance", &torch_record_advance, py::arg("address"), py::arg("blocks"),
        "(seed, stream, start) of a recorded state, whose record moves to start + blocks; or None.");
  m.def("philox4x32_10", &philox4x32_10, py::arg("counter"), py::arg("key"),
        "One Philox4x32-10 block: 4 counter words and 2 key words -> 4 output words.");
  m.def("fill_cpu", &fill_cpu, py::arg("kind"), py::arg("dtype"), py::arg("out"), py::arg("count"),
        py::arg("first_element"), py::arg("seed"), py::arg("stream"), py::arg("offset"),
        py::arg("num_threads"), py::arg("path"));
  m.def("fill_cpu_rows", &fill_cpu_rows, py::arg("kind"), py::arg("dtype"), py::arg("out"),
        py::arg("row_elements"), py::arg("seeds"), py::arg("streams"), py::arg("offsets"),
        py::arg("num_threads"), py::arg("path"));
  m.def("fill_cpu_strided", &fill_cpu_strided, py::arg("kind"), py::arg("dtype"), py::arg("out"),
        py::arg("sizes"), py::arg("strides"), py::arg("base"), py::arg("seed"), py::arg("stream"),
        py::arg("offset"), py::arg("num_threads"), py::arg("path"));
  m.def("brownian_cpu", &brownian_cpu, py::arg("dtype"), py::arg("out"), py::arg("n"), py::arg("seeds"),
        py::arg("depth"), py::arg("sigma_end"), py::arg("sigma"), py::arg("points"), py::arg("num_threads"),
        py::arg("path"), "One Brownian tree query W(t) - W(s) (docs/SPEC.md §9) for rows of n elements.");
  m.def("scale_words_cpu", &scale_words_cpu, py::arg("buffer"), py::arg("count"), py::arg("span"), py::arg("low"),
        py::arg("num_threads"), "SPEC 10.6 in place: 64-bit words -> int64 low + floor(W * span / 2^64)");
  m.def("order_keys_cpu", &order_keys_cpu, py::arg("keys"), py::arg("n"), py::arg("out"),
        "SPEC 10.7: out = indices of the n drawn 64-bit words in ascending (unsigned word, index) order");
  m.def("race_winners_cpu", &race_winners_cpu, py::arg("pairs"), py::arg("weights"), py::arg("weight_bits"),
        py::arg("rows"), py::arg("rounds"), py::arg("categories"), py::arg("out"), py::arg("num_threads"),
        "SPEC 10.8: the first index of the least X/p of each race");
  m.def("cpu_paths", &cpu_paths, "names of the CPU kernel paths that can run on this machine");
  m.def("cuda_versions", &cuda_versions,
        "(driver CUDA version or 0, linked CUDA runtime version or 0, built CUDA architectures or '')");
  m.def("set_huge_page_advice", &detnoise::set_huge_page_advice, py::arg("enabled"),
        "Advise transparent huge pages for large untouched CPU outputs (default on; timing only)");
  m.def("huge_page_advice", &detnoise::huge_page_advice);
#ifdef DETNOISE_WITH_CUDA
  m.attr("built_with_cuda") = true;
  m.def("fill_cuda_rows", &fill_cuda_rows, py::arg("kind"), py::arg("dtype"), py::arg("out"),
        py::arg("row_elements"), py::arg("seeds"), py::arg("streams"), py::arg("offsets"),
        py::arg("device"), py::arg("cuda_stream"));
  m.def("fill_cuda", &fill_cuda, py::arg("kind"), py::arg("dtype"), py::arg("out"), py::arg("count"),
        py::arg("first_element"), py::arg("seed"), py::arg("stream"), py::arg("offset"),
        py::arg("device"), py::arg("cuda_stream"));
  m.def("fill_cuda_strided", &fill_cuda_strided, py::arg("kind"), py::arg("dtype"), py::arg("out"),
        py::arg("sizes"), py::arg("strides"), py::arg("base"), py::arg("seed"), py::arg("stream"),
        py::arg("offset"), py::arg("device"), py::arg("cuda_stream"));
  m.def("fill_cuda_device_offset", &fill_cuda_device_offset, py::arg("kind"), py::arg("dtype"), py::arg("out"),
        py::arg("count"), py::arg("seed"), py::arg("stream"), py::arg("offset_on_device"), py::arg("blocks"),
        py::arg("device"), py::arg("cuda_stream"));
  m.def("brownian_cuda", &brownian_cuda, py::arg("dtype"), py::arg("out"), py::arg("n"), py::arg("seeds"),
        py::arg("depth"), py::arg("sigma_end"), py::arg("sigma"), py::arg("points"), py::arg("device"),
        py::arg("cuda_stream"));
  m.def("cuda_device_count", &cuda_device_count,
        "(number of visible CUDA devices, error text when that number is 0 for a reason)");
#else
  m.attr("built_with_cuda") = false;
#endif
}
