// launch_context.h — what every CUDA launch needs around it (device switch and restore, SM count,
// error attribution, readable errors), written against a small `Api` of CUDA runtime queries so
// that tests/native/kernel_driver.cpp can run this exact logic against a scripted mock without a GPU.
// fill_cuda.cu instantiates it with the real runtime.
//
// Api provides static functions (status codes are cudaError_t values as int, 0 = success):
//   int get_device(int*); int set_device(int); int primary_context_active(int device, bool*);
//   int multiprocessor_count(int device, int*); int compute_capability(int device, int*, int*);
//   int get_last_error(); int peek_at_last_error(); std::string error_text(int status);
//   int driver_version(); int runtime_version(); const char* built_architectures();
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace detnoise {

// The cudaError_t values this file tells apart (stable parts of the runtime ABI).
namespace cuda_status {
constexpr int kSuccess = 0;
constexpr int kInitializationError = 3;
constexpr int kStubLibrary = 34;
constexpr int kInsufficientDriver = 35;
constexpr int kNoDevice = 100;
constexpr int kSystemNotReady = 802;
constexpr int kSystemDriverMismatch = 803;
constexpr int kCompatNotSupportedOnDevice = 804;
constexpr int kInvalidDeviceFunction = 98;
constexpr int kNoKernelImageForDevice = 209;
constexpr int kUnsupportedPtxVersion = 222;
constexpr int kEccUncorrectable = 214;
constexpr int kIllegalAddress = 700;
constexpr int kLaunchTimeout = 702;
constexpr int kAssert = 710;
constexpr int kHardwareStackError = 714;
constexpr int kLaunchFailure = 719;
}  // namespace cuda_status

// "12.8" from a CUDA version number such as 12080.
inline std::string cuda_version_text(int version) {
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

// The command that rebuilds detnoise for the GPUs of the machine it runs on.
constexpr const char* kReinstallCommand =
    "pip install --no-build-isolation --force-reinstall --no-deps . (from a detnoise source checkout, "
    "on this machine, with nvcc on PATH; or add -C cmake.define.CMAKE_CUDA_ARCHITECTURES=<NN> for compute "
    "capability N.N)";

// Errors that leave the CUDA context unusable: every later call in the process fails the same way.
// They come from a kernel that faulted, often an earlier one of torch's, not from the launch that
// reports them.
inline bool is_sticky_cuda_error(int status) {
  using namespace cuda_status;
  return status == kIllegalAddress || status == kLaunchTimeout || status == kAssert ||
         (status >= kHardwareStackError && status <= kLaunchFailure) || status == kEccUncorrectable;
}

// Why a driver cannot run this build, and the two ways out (issue 14 item 6).
inline std::string driver_advice(int driver_version, int runtime_version) {
  const std::string runtime = cuda_version_text(runtime_version);
  const std::string driver = driver_version > 0 ? "CUDA " + cuda_version_text(driver_version) : "no CUDA version";
  return "the NVIDIA driver supports " + driver + ", but detnoise was built with the CUDA " + runtime +
         " toolkit, whose runtime it links statically and which needs a driver for CUDA " +
         std::to_string(runtime_version / 1000) + ".x or newer. Either update the NVIDIA driver, or rebuild "
         "detnoise with a CUDA toolkit no newer than the driver supports (for example the one matching "
         "torch.version.cuda): put that toolkit's nvcc on PATH and run pip install --no-build-isolation "
         "--force-reinstall --no-deps . from a source checkout";
}

// Whether a driver of this version can run code from a runtime of that one: same major version or
// newer (CUDA minor-version compatibility); 0 means no driver at all, which is not this problem.
inline bool driver_too_old(int driver_version, int runtime_version) {
  return driver_version > 0 && driver_version / 1000 < runtime_version / 1000;
}

// Errors of CUDA's setup (no driver, too old a driver, no device): they too come back on every
// call, but they are not a broken context, and their message must name the setup's fix.
inline bool is_setup_cuda_error(int status) {
  using namespace cuda_status;
  return status == kInitializationError || status == kStubLibrary || status == kInsufficientDriver ||
         status == kNoDevice || (status >= kSystemNotReady && status <= kCompatNotSupportedOnDevice);
}

template <typename Api>
class BasicLaunchContext {
 public:
  static constexpr int kMaxCachedDevices = 64;

  BasicLaunchContext(int device, uintptr_t stream_handle) : stream_handle(stream_handle), device_(device) {
    // An error already pending on this thread (a failed call of someone else's, or a fault of an
    // earlier kernel) must not be blamed on this draw: take it off now. A sticky one cannot be
    // taken off: it is still there when asked again, and nothing can run.
    const int pending = Api::get_last_error();
    if (pending != cuda_status::kSuccess && (is_sticky_cuda_error(pending) || Api::peek_at_last_error() == pending)) {
      error_ = classify(pending);
      return;
    }
    int status = Api::get_device(&previous_);
    if (status == cuda_status::kSuccess && previous_ != device) {
      // Restore the caller's device afterwards only if it has a context: in a thread that never
      // used CUDA, get_device says 0, and switching back to 0 would create GPU 0's context
      // (hundreds of MB) for a draw on another GPU. torch's device guard follows the same rule.
      bool active = false;
      restore_ = Api::primary_context_active(previous_, &active) == cuda_status::kSuccess && active;
      status = Api::set_device(device);
      if (status != cuda_status::kSuccess) restore_ = false;
    }
    if (status == cuda_status::kSuccess) status = cached_sm_count(device, &sm_count_);
    if (status != cuda_status::kSuccess) {
      error_ = describe(status);
      Api::get_last_error();  // ours, reported here: leave nothing for the next caller to trip on
    }
  }

  ~BasicLaunchContext() {
    if (restore_ && Api::set_device(previous_) != cuda_status::kSuccess) Api::get_last_error();
  }

  BasicLaunchContext(const BasicLaunchContext&) = delete;
  BasicLaunchContext& operator=(const BasicLaunchContext&) = delete;

  // "" when the context is ready to launch, else why not.
  const std::string& error() const { return error_; }
  int sm_count() const { return sm_count_; }

  // Right after each launch: "" or what went wrong with it. The pending error was cleared when the
  // context was made, so an error now belongs to this launch, unless it is a sticky fault, which
  // is named as such (the kernel did not run, and the process must be restarted).
  std::string check_launch() const {
    const int status = Api::get_last_error();
    if (status == cuda_status::kSuccess) return {};
    if (is_sticky_cuda_error(status) || Api::peek_at_last_error() == status) return classify(status);
    return describe(status);
  }

  const uintptr_t stream_handle;

 private:
  // The SM count per device, asked once per process (issue 14 item 10): it cannot change.
  static int cached_sm_count(int device, int* count) {
    static std::atomic<int> cache[kMaxCachedDevices];
    if (device >= 0 && device < kMaxCachedDevices) {
      *count = cache[device].load(std::memory_order_relaxed);
      if (*count > 0) return cuda_status::kSuccess;
    }
    const int status = Api::multiprocessor_count(device, count);
    if (status == cuda_status::kSuccess && device >= 0 && device < kMaxCachedDevices) {
      cache[device].store(*count, std::memory_order_relaxed);
    }
    return status;
  }

  // An error that survives being cleared: CUDA's setup failing, or a dead context.
  std::string classify(int status) const {
    return is_setup_cuda_error(status) ? describe(status) : sticky_message(status);
  }

  std::string sticky_message(int status) const {
    return Api::error_text(status) +
           " (a sticky error: the CUDA context of this process was already broken by an earlier kernel fault, "
           "not by this detnoise draw; no CUDA work can run until the process is restarted)";
  }

  std::string describe(int status) const {
    using namespace cuda_status;
    const std::string text = Api::error_text(status);
    if (status == kNoKernelImageForDevice || status == kInvalidDeviceFunction) {
      int major = 0, minor = 0;
      Api::compute_capability(device_, &major, &minor);
      Api::get_last_error();
      return text + ": this detnoise build has no kernel for GPU " + std::to_string(device_) +
             " (compute capability " + std::to_string(major) + "." + std::to_string(minor) +
             "); it was built for CUDA architectures " + Api::built_architectures() + ". Reinstall: " +
             kReinstallCommand;
    }
    if (status == kInsufficientDriver || status == kUnsupportedPtxVersion || status == kSystemDriverMismatch ||
        status == kCompatNotSupportedOnDevice) {
      return text + ": " + driver_advice(Api::driver_version(), Api::runtime_version());
    }
    return text;
  }

  const int device_;
  int previous_ = 0;
  bool restore_ = false;
  int sm_count_ = 0;
  std::string error_;
};

}  // namespace detnoise
