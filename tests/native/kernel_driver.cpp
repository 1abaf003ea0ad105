// kernel_driver.cpp — runs the CUDA kernels' own per-thread bodies (csrc/cuda/kernel_bodies.h) on
// the CPU, for every simulated thread of real launch shapes, and the launch logic
// (csrc/cuda/launch_context.h) against a scripted CUDA runtime. Built with g++ by
// tests/test_kernel_driver.py; needs no GPU and no CUDA toolkit.
//   kernel_driver kernels   every kind and dtype x whole/rows/strided/graph-safe draws x launch
//                           shapes, bit-compared with the CPU launcher; every output element
//                           must be written exactly once and nothing outside the output at all
//   kernel_driver context   device restore, error attribution and messages, SM-count cache
// Prints one line per failure and a summary line; exits 1 on any failure.
#include <cstdint>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "cpu/fill_cpu.h"
#include "cuda/kernel_bodies.h"
#include "cuda/launch_context.h"

namespace {

int failures = 0;
int checks = 0;

void expect(bool ok, const std::string& what) {
  ++checks;
  if (!ok) {
    ++failures;
    std::cout << "FAIL " << what << "\n";
  }
}

// ---- write accounting ------------------------------------------------------------------------------
// The bodies are run with a Storage type whose assignment counts each store into the output buffer
// (and flags any store elsewhere); its layout is the real Storage's, so the bytes compare directly.
struct WriteLog {
  const unsigned char* begin = nullptr;
  size_t bytes = 0;
  size_t width = 1;
  std::vector<uint32_t> counts;
  uint64_t stray = 0;  // stores outside the output
  void start(const void* out, size_t elements, size_t element_width) {
    begin = static_cast<const unsigned char*>(out);
    bytes = elements * element_width;
    width = element_width;
    counts.assign(elements, 0);
    stray = 0;
  }
  void note(const void* target) {
    const auto* byte = static_cast<const unsigned char*>(target);
    if (byte >= begin && byte < begin + bytes && (byte - begin) % width == 0) ++counts[(byte - begin) / width];
    else ++stray;
  }
} write_log;

template <typename T>
struct Tallied {
  T value;
  Tallied() = default;
  Tallied(const Tallied&) = default;
  Tallied& operator=(const Tallied& other) {
    value = other.value;
    write_log.note(this);
    return *this;
  }
};

template <typename Inner>
struct TalliedTransform {
  using Storage = Tallied<typename Inner::Storage>;
  static constexpr int kPerBlock = Inner::kPerBlock;
  static_assert(sizeof(Storage) == sizeof(typename Inner::Storage), "same layout as the real storage");
  static void block(const detnoise::Words4& words, Storage* out) {
    typename Inner::Storage raw[kPerBlock];
    Inner::block(words, raw);
    for (int i = 0; i < kPerBlock; ++i) out[i].value = raw[i];  // a register, not a store to memory
  }
};

// ---- launch shapes ---------------------------------------------------------------------------------
// The shapes the launcher picks for 1 SM, an A100 (108), an H100/H200 (132) and a B200-class GPU
// (170), plus the largest CTA at the grid cap of a 1-SM GPU and a single small CTA (so that every
// draw but the smallest takes many turns of the grid-stride loop).
std::vector<std::pair<std::string, detnoise::LaunchShape>> shapes_for(uint64_t work_items) {
  std::vector<std::pair<std::string, detnoise::LaunchShape>> shapes;
  for (int sms : {1, 108, 132, 170}) {
    shapes.emplace_back(std::to_string(sms) + " SMs", detnoise::launch_shape(work_items, sms));
  }
  shapes.emplace_back("256-thread CTAs at the 1-SM cap",
                      detnoise::LaunchShape{static_cast<unsigned>(detnoise::kMaxThreadsPerSm / 256), 256});
  shapes.emplace_back("one 64-thread CTA", detnoise::LaunchShape{1, 64});
  return shapes;
}

template <typename Body>
void run_grid(const detnoise::LaunchShape& shape, const Body& body) {
  const uint64_t threads = shape.threads();
  for (uint64_t thread = 0; thread < threads; ++thread) body(thread, threads);
}

const char* kind_name(detnoise::Kind kind) {
  return kind == detnoise::Kind::kBits ? "bits" : kind == detnoise::Kind::kUniform ? "uniform" : "normal";
}
const char* dtype_name(detnoise::DType dtype) {
  switch (dtype) {
    case detnoise::DType::kUInt32: return "uint32";
    case detnoise::DType::kFloat32: return "float32";
    case detnoise::DType::kFloat64: return "float64";
    case detnoise::DType::kFloat16: return "float16";
    default: return "bfloat16";
  }
}

// Compares one simulated launch's output with the CPU launcher's and its write counts with 1.
void compare(const std::string& what, const std::vector<unsigned char>& got, const std::vector<unsigned char>& want) {
  size_t unwritten = 0, repeated = 0;
  for (uint32_t count : write_log.counts) {
    unwritten += count == 0;
    repeated += count > 1;
  }
  std::ostringstream detail;
  detail << what << ": " << unwritten << " elements never written, " << repeated << " written more than once, "
         << write_log.stray << " stores outside the output";
  expect(unwritten == 0 && repeated == 0 && write_log.stray == 0, detail.str());
  expect(got.size() == want.size() && std::memcmp(got.data(), want.data(), got.size()) == 0,
         what + ": values differ from the CPU launcher");
}

struct Pair {
  detnoise::Kind kind;
  detnoise::DType dtype;
};
const Pair kPairs[] = {
    {detnoise::Kind::kBits, detnoise::DType::kUInt32},      {detnoise::Kind::kUniform, detnoise::DType::kFloat32},
    {detnoise::Kind::kUniform, detnoise::DType::kFloat64},  {detnoise::Kind::kUniform, detnoise::DType::kFloat16},
    {detnoise::Kind::kUniform, detnoise::DType::kBFloat16}, {detnoise::Kind::kNormal, detnoise::DType::kFloat32},
    {detnoise::Kind::kNormal, detnoise::DType::kFloat64},   {detnoise::Kind::kNormal, detnoise::DType::kFloat16},
    {detnoise::Kind::kNormal, detnoise::DType::kBFloat16},
};

std::string pair_text(const Pair& pair) { return std::string(kind_name(pair.kind)) + "/" + dtype_name(pair.dtype); }

// ---- whole draws, graph-safe draws -------------------------------------------------------------------
struct FillCase {
  uint64_t count, first_element, seed, stream, offset;
};

struct FillVisitor {
  FillCase c;
  Pair pair;
  bool offset_in_memory;
  uint64_t* launches;
  template <typename Transform>
  void run() const {
    const size_t width = detnoise::element_size(pair.dtype);
    std::vector<unsigned char> want(c.count * width), got(c.count * width);
    const detnoise::FillRequest reference{pair.kind, pair.dtype, want.data(), c.count, c.first_element,
                                          c.seed,    c.stream,   c.offset};
    detnoise::fill_cpu(reference, 1);
    detnoise::FillRequest request = reference;
    request.out = got.data();
    uint64_t offset_cell = c.offset;
    // The graph-safe kernel must take its offset from memory: the argument is deliberately wrong.
    if (offset_in_memory) request.offset = c.offset ^ 0x5a5a5a5a5a5aULL;
    using Tallied = TalliedTransform<Transform>;
    for (const auto& [shape_name, shape] : shapes_for(detnoise::fill_work_items<Transform>(request))) {
      std::fill(got.begin(), got.end(), 0xA5);
      write_log.start(got.data(), c.count, width);
      run_grid(shape, [&](uint64_t thread, uint64_t threads) {
        detnoise::fill_thread<Tallied>(thread, threads, request, offset_in_memory ? &offset_cell : nullptr);
      });
      ++*launches;
      std::ostringstream what;
      what << (offset_in_memory ? "graph-safe " : "fill ") << pair_text(pair) << " n=" << c.count
           << " first=" << c.first_element << " offset=" << c.offset << " [" << shape_name << "]";
      compare(what.str(), got, want);
    }
    if (offset_in_memory) {
      const uint64_t blocks = (c.count + Transform::kPerBlock - 1) / Transform::kPerBlock;
      detnoise::advance_offset_thread(0, &offset_cell, blocks);
      for (uint64_t thread = 1; thread < 64; ++thread) detnoise::advance_offset_thread(thread, &offset_cell, blocks);
      expect(offset_cell == c.offset + blocks, "graph-safe advance " + pair_text(pair) + " moves the offset once");
    }
  }
};

// ---- rows ----------------------------------------------------------------------------------------------
struct RowsVisitor {
  uint64_t rows, row_elements;
  Pair pair;
  uint64_t* launches;
  template <typename Transform>
  void run() const {
    const size_t width = detnoise::element_size(pair.dtype);
    const uint64_t count = rows * row_elements;
    std::vector<detnoise::RowDraw> draws(rows);
    for (uint64_t r = 0; r < rows; ++r) {
      // Rows far apart in seed, stream and offset, some offsets past 2^32 and near 2^64.
      draws[r] = {r * 0x9E3779B97F4A7C15ULL, r % 3, r % 4 == 1 ? (1ULL << 32) - 2 + r : r % 4 == 2 ? ~0ULL - 5000 : r};
    }
    std::vector<unsigned char> want(count * width), got(count * width);
    detnoise::fill_cpu_rows(pair.kind, pair.dtype, want.data(), row_elements, draws.data(), rows, 1);
    using Tallied = TalliedTransform<Transform>;
    // Shapes follow the first launch's work (every launch but the last has 96 rows).
    const auto first_params = detnoise::rows_params(pair.kind, pair.dtype, got.data(), row_elements, draws.data(), rows, 0);
    for (const auto& [shape_name, shape] : shapes_for(detnoise::rows_work_items<Tallied>(first_params))) {
      std::fill(got.begin(), got.end(), 0xA5);
      write_log.start(got.data(), count, width);
      // As the launcher does: one launch per kMaxRowsPerLaunch rows.
      for (uint64_t first = 0; first < rows; first += detnoise::kMaxRowsPerLaunch) {
        const auto params = detnoise::rows_params(pair.kind, pair.dtype, got.data(), row_elements, draws.data(), rows, first);
        run_grid(shape, [&](uint64_t thread, uint64_t threads) {
          detnoise::fill_rows_thread<Tallied>(thread, threads, params);
        });
        ++*launches;
      }
      std::ostringstream what;
      what << "rows " << pair_text(pair) << " rows=" << rows << " row_elements=" << row_elements << " [" << shape_name << "]";
      compare(what.str(), got, want);
    }
  }
};

// ---- strided selections ------------------------------------------------------------------------------
struct StridedCase {
  std::vector<uint64_t> sizes, strides;
  uint64_t base, offset;
};

struct StridedVisitor {
  StridedCase c;
  Pair pair;
  uint64_t* launches;
  template <typename Transform>
  void run() const {
    const size_t width = detnoise::element_size(pair.dtype);
    detnoise::StridedRequest request{};
    request.kind = pair.kind;
    request.dtype = pair.dtype;
    request.ndim = static_cast<int>(c.sizes.size());
    uint64_t total = 1;
    for (int dim = 0; dim < request.ndim; ++dim) {
      request.sizes[dim] = c.sizes[dim];
      request.strides[dim] = c.strides[dim];
      total *= c.sizes[dim];
    }
    request.base = c.base;
    request.seed = 0xDEADBEEFCAFEF00DULL;
    request.stream = 3;
    request.offset = c.offset;
    std::vector<unsigned char> want(total * width), got(total * width);
    request.out = want.data();
    detnoise::fill_cpu_strided(request, 1);
    request.out = got.data();
    using Tallied = TalliedTransform<Transform>;
    const detnoise::StridedPlan plan = detnoise::plan_strided<Tallied>(request);
    for (const auto& [shape_name, shape] : shapes_for(detnoise::strided_work_items(plan))) {
      std::fill(got.begin(), got.end(), 0xA5);
      write_log.start(got.data(), total, width);
      run_grid(shape, [&](uint64_t thread, uint64_t threads) {
        detnoise::fill_strided_thread<Tallied>(thread, threads, plan);
      });
      ++*launches;
      std::ostringstream what;
      what << "strided " << pair_text(pair) << (plan.spans > 0 ? " (contiguous rows)" : " (per element)")
           << " sizes";
      for (uint64_t size : c.sizes) what << " " << size;
      what << " strides";
      for (uint64_t stride : c.strides) what << " " << stride;
      what << " base=" << c.base << " [" << shape_name << "]";
      compare(what.str(), got, want);
    }
  }
};

int run_kernels() {
  uint64_t launches = 0;
  const uint64_t two32 = 1ULL << 32;
  const std::vector<FillCase> fills = {
      {1, 0, 1, 2, 0},
      {3, 0, 2, 0, two32 - 1},
      {5, 1, 3, 7, 9},
      {4097, 0, 42, 0, two32 - 2},
      {4099, 7, ~0ULL, 5, (1ULL << 63) + 5},
      {70001, 0, 11, 1, 0},
      {1001, two32 + 3, 5, 9, two32},                 // element indices past 2^32
      {37, (1ULL << 62) + 1, 6, 0, 0},                // far into the draw
      {19, 0, 8, 8, ~0ULL - 100},                     // offsets near 2^64
  };
  for (const Pair& pair : kPairs) {
    for (const FillCase& c : fills) {
      detnoise::dispatch_transform(pair.kind, pair.dtype, FillVisitor{c, pair, false, &launches});
    }
    for (const FillCase& c : {fills[1], fills[3], fills[4], fills[6]}) {
      detnoise::dispatch_transform(pair.kind, pair.dtype, FillVisitor{c, pair, true, &launches});
    }
  }
  // Larger than one grid of the largest GPU here (170 SMs x 8192 threads): every shape strides.
  const uint64_t big = 4 * 170 * detnoise::kMaxThreadsPerSm + 13;
  for (const Pair& pair : {kPairs[0], kPairs[5], kPairs[6]}) {
    detnoise::dispatch_transform(pair.kind, pair.dtype, FillVisitor{{big, 0, 77, 0, 5}, pair, false, &launches});
  }
  for (const Pair& pair : kPairs) {
    for (uint64_t rows : {1, 95, 96, 97}) {
      for (uint64_t row_elements : {1, 6, 4099}) {
        if (rows > 1 && row_elements == 4099 && pair.kind != detnoise::Kind::kNormal) continue;  // time
        detnoise::dispatch_transform(pair.kind, pair.dtype, RowsVisitor{rows, row_elements, pair, &launches});
      }
    }
  }
  const std::vector<StridedCase> strided = {
      {{2, 2, 35, 57}, {16384, 4096, 64, 1}, 4096 + 5 * 64 + 3, 0},  // x[:, 1:3, 5:40, 3:60] of (2,4,64,64)
      {{1000}, {1}, 3, two32 - 7},
      {{4, 9}, {1000, 1}, two32 + 1, 7},                                // elements past 2^32
      {{3, 4, 2}, {1 << 20, 3, 1}, 1, (1ULL << 63) + 1},                // rows of 2 elements
      {{3, 17}, {100, 2}, 11, 0},                                       // innermost step 2
      {{64, 32}, {1, 64}, 0, 5},                                        // a transpose
      {{5, 1}, {7, 1}, 2, 0},                                           // rows of 1 element
  };
  for (const Pair& pair : kPairs) {
    for (const StridedCase& c : strided) {
      detnoise::dispatch_transform(pair.kind, pair.dtype, StridedVisitor{c, pair, &launches});
    }
  }
  std::cout << "kernels: " << launches << " simulated launches, " << checks << " checks, " << failures
            << " failures\n";
  return failures == 0 ? 0 : 1;
}

// ---- launch context against a scripted runtime ------------------------------------------------------
struct MockApi {
  static inline int current = 0;
  static inline int pending = 0;
  static inline bool pending_is_sticky = false;
  static inline bool context_active[8] = {};
  static inline std::vector<int> set_device_calls;
  static inline int fail_set_device_with = 0;
  static inline int sm_queries = 0;
  static inline int driver = 13000;

  static void reset() {
    current = 0;
    pending = 0;
    pending_is_sticky = false;
    for (bool& active : context_active) active = false;
    set_device_calls.clear();
    fail_set_device_with = 0;
    driver = 13000;
  }
  static int get_device(int* device) {
    *device = current;
    return 0;
  }
  static int set_device(int device) {
    set_device_calls.push_back(device);
    if (fail_set_device_with != 0) {
      pending = fail_set_device_with;
      return fail_set_device_with;
    }
    current = device;
    context_active[device] = true;
    return 0;
  }
  static int primary_context_active(int device, bool* active) {
    *active = context_active[device];
    return 0;
  }
  static int multiprocessor_count(int, int* count) {
    ++sm_queries;
    *count = 132;
    return 0;
  }
  static int compute_capability(int, int* major, int* minor) {
    *major = 8;
    *minor = 6;
    return 0;
  }
  static int get_last_error() {
    const int status = pending;
    if (!pending_is_sticky) pending = 0;
    return status;
  }
  static int peek_at_last_error() { return pending; }
  static std::string error_text(int status) { return "cudaError" + std::to_string(status); }
  static int driver_version() { return driver; }
  static int runtime_version() { return 13000; }
  static const char* built_architectures() { return "75-real,80-real,90"; }
};

using MockContext = detnoise::BasicLaunchContext<MockApi>;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

int run_context() {
  using namespace detnoise::cuda_status;
  // An error someone else left pending is not this draw's: the launch succeeds.
  MockApi::reset();
  MockApi::pending = 1;  // e.g. a failed cudaSetDevice of another library
  {
    MockContext context(0, 0);
    expect(context.error().empty(), "a pending non-sticky error does not fail the context: " + context.error());
    expect(context.check_launch().empty(), "a pending non-sticky error is not blamed on the launch");
  }
  // A launch error of this launch is reported as such.
  MockApi::reset();
  {
    MockContext context(0, 0);
    MockApi::pending = 9;  // cudaErrorInvalidConfiguration from this launch
    const std::string error = context.check_launch();
    expect(contains(error, "cudaError9") && !contains(error, "sticky"), "a launch error is the launch's: " + error);
  }
  // A sticky fault already there: named as a dead context, before any launch.
  MockApi::reset();
  MockApi::pending = kIllegalAddress;
  MockApi::pending_is_sticky = true;
  {
    MockContext context(0, 0);
    expect(contains(context.error(), "sticky") && contains(context.error(), "earlier kernel fault"),
           "a pending sticky fault is named as one: " + context.error());
  }
  // A sticky fault showing up at the launch (an earlier kernel faulted meanwhile).
  MockApi::reset();
  {
    MockContext context(0, 0);
    MockApi::pending = kLaunchFailure;
    MockApi::pending_is_sticky = true;
    expect(contains(context.check_launch(), "sticky"), "a sticky fault at the launch is not called a launch error");
  }
  // A thread that never used CUDA (get_device says 0, GPU 0 has no context) drawing on GPU 2: no
  // switch back to 0, which would create GPU 0's context.
  MockApi::reset();
  { MockContext context(2, 0); }
  expect(MockApi::set_device_calls == std::vector<int>{2}, "no restore to a device without a context");
  // With a context on the caller's device: switched back afterwards.
  MockApi::reset();
  MockApi::context_active[0] = true;
  { MockContext context(2, 0); }
  expect(MockApi::set_device_calls == std::vector<int>({2, 0}), "the caller's device is restored");
  // Already on the device: no switch at all.
  MockApi::reset();
  MockApi::current = 1;
  MockApi::context_active[1] = true;
  { MockContext context(1, 0); }
  expect(MockApi::set_device_calls.empty(), "no switch when already on the device");
  // The SM count is asked once per device.
  MockApi::reset();
  const int queries_before = MockApi::sm_queries;
  for (int i = 0; i < 3; ++i) {
    MockContext context(3, 0);
    expect(context.sm_count() == 132, "SM count");
  }
  expect(MockApi::sm_queries == queries_before + 1, "SM count queried once for device 3 over three draws");
  // No kernel image: the GPU's compute capability, what was built, and the reinstall command.
  MockApi::reset();
  {
    MockContext context(0, 0);
    MockApi::pending = kNoKernelImageForDevice;
    const std::string error = context.check_launch();
    expect(contains(error, "compute capability 8.6") && contains(error, "75-real,80-real,90") &&
               contains(error, "pip install --no-build-isolation --force-reinstall"),
           "no-kernel-image error names capability, built architectures and the fix: " + error);
  }
  // An insufficient driver (the first runtime call fails): versions and both fixes; nothing left pending.
  MockApi::reset();
  MockApi::driver = 12080;
  MockApi::fail_set_device_with = kInsufficientDriver;
  {
    MockContext context(1, 0);
    const std::string& error = context.error();
    expect(contains(error, "supports CUDA 12.8") && contains(error, "CUDA 13.0 toolkit") &&
               contains(error, "update the NVIDIA driver") && contains(error, "rebuild"),
           "insufficient driver names the versions and the fixes: " + error);
    expect(MockApi::pending == 0, "a failed context leaves no error pending for the next caller");
  }
  expect(MockApi::set_device_calls == std::vector<int>{1}, "a failed switch is not undone");
  // A driver too old for the runtime fails CUDA's setup, which then fails every call: that is not a
  // dead context, and the message must still be the driver's fix.
  MockApi::reset();
  MockApi::driver = 12080;
  MockApi::pending = kInsufficientDriver;
  MockApi::pending_is_sticky = true;
  {
    MockContext context(0, 0);
    expect(contains(context.error(), "update the NVIDIA driver") && !contains(context.error(), "sticky"),
           "a persistent setup error is not called a kernel fault: " + context.error());
  }
  expect(detnoise::driver_too_old(12080, 13000) && !detnoise::driver_too_old(13000, 13000) &&
             !detnoise::driver_too_old(13020, 13000) && !detnoise::driver_too_old(0, 13000),
         "driver rule: same major version or newer; 0 = no driver");
  // The launch shape rule: small latents spread over every SM, big draws capped.
  const detnoise::LaunchShape sdxl = detnoise::launch_shape(16384, 132);  // (1,4,128,128) float32
  expect(sdxl.threads_per_cta == 64 && sdxl.ctas == 256, "a (1,4,128,128) latent gets 256 CTAs of 64 threads");
  const detnoise::LaunchShape huge = detnoise::launch_shape(1ULL << 30, 132);
  expect(huge.threads_per_cta == 256 && huge.threads() == 132 * detnoise::kMaxThreadsPerSm, "big draws: capped grid");
  std::cout << "context: " << checks << " checks, " << failures << " failures\n";
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "kernels") return run_kernels();
  if (mode == "context") return run_context();
  std::cerr << "usage: kernel_driver kernels|context\n";
  return 2;
}
