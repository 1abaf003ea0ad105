# detnoise_driver_check.cmake — the build-time half of the driver rule (README "CUDA driver"):
# warns when nvcc's CUDA major version differs from the one torch was built for. Kept in its own
# file so that tests/test_build_flags.py can run it with `cmake -P` without a CUDA build.

# nvcc_version: e.g. "13.0.88"; torch_cuda: torch.version.cuda, e.g. "12.8", or "" (no torch, or a
# CPU-only torch): then there is nothing to compare.
function(detnoise_check_torch_cuda nvcc_version torch_cuda)
  if(NOT torch_cuda MATCHES "^([0-9]+)\\.")
    return()
  endif()
  set(torch_major "${CMAKE_MATCH_1}")
  if(NOT nvcc_version MATCHES "^([0-9]+)\\.")
    return()
  endif()
  set(nvcc_major "${CMAKE_MATCH_1}")
  if(NOT nvcc_major EQUAL torch_major)
    message(WARNING
      "detnoise: nvcc is CUDA ${nvcc_version} but torch was built for CUDA ${torch_cuda}. detnoise links the CUDA "
      "${nvcc_major} runtime statically, so it needs an NVIDIA driver for CUDA ${nvcc_major}.x or newer, which a "
      "machine set up for torch's CUDA ${torch_cuda} may not have (every draw then fails with "
      "cudaErrorInsufficientDriver). Build with a CUDA ${torch_major}.x toolkit (put its nvcc on PATH or set "
      "CUDACXX), or make sure the driver supports CUDA ${nvcc_major}.")
  endif()
endfunction()

# `cmake -DNVCC_VERSION=... -DTORCH_CUDA=... -P detnoise_driver_check.cmake` runs the check alone.
if(CMAKE_SCRIPT_MODE_FILE STREQUAL CMAKE_CURRENT_LIST_FILE)
  detnoise_check_torch_cuda("${NVCC_VERSION}" "${TORCH_CUDA}")
endif()
