# detnoise_build_estimate.cmake — the line CMake prints before the CUDA kernels compile: how many
# architectures, which, and roughly how long nvcc takes here. Kept in its own file so that
# tests/test_build_flags.py can run it with `cmake -P` without a CUDA build.
#
# The cost model, measured with nvcc 13.0 on this project's 2-core Xeon (idle; benchmarks/NOTES.md,
# "Build time"): each architecture costs fill_cuda.cu about 2.4 s and brownian_cuda.cu about 0.5 s
# of CPU time, on top of about 0.9 s and 0.5 s of front end. nvcc compiles one file's architectures
# one after the other, so however many cores there are, the build takes at least fill_cuda.cu's
# share; with fewer cores than files it takes the total CPU time divided by the cores.

set(detnoise_fill_ms_per_arch 2400)
set(detnoise_fill_front_ms 900)
set(detnoise_other_ms_per_arch 500)
set(detnoise_other_front_ms 500)

# Seconds of wall time to compile the kernels for `count` architectures on `cores` cores (integer).
function(detnoise_cuda_build_seconds count cores out)
  if(cores LESS 1)
    set(cores 1)
  endif()
  math(EXPR fill_ms "${count} * ${detnoise_fill_ms_per_arch} + ${detnoise_fill_front_ms}")
  math(EXPR other_ms "${count} * ${detnoise_other_ms_per_arch} + ${detnoise_other_front_ms}")
  math(EXPR spread_ms "(${fill_ms} + ${other_ms}) / ${cores}")
  if(spread_ms GREATER fill_ms)
    set(fill_ms "${spread_ms}")
  endif()
  math(EXPR seconds "(${fill_ms} + 500) / 1000")
  set(${out} "${seconds}" PARENT_SCOPE)
endfunction()

# "about 30 s" / "about 2 minutes": rough on purpose (a busy machine takes longer).
function(detnoise_rough_duration seconds out)
  if(seconds LESS 10)
    set(text "a few seconds")
  elseif(seconds LESS 90)
    math(EXPR rounded "(${seconds} + 5) / 10 * 10")
    set(text "about ${rounded} s")
  else()
    math(EXPR minutes "(${seconds} + 30) / 60")
    set(text "about ${minutes} minutes")
  endif()
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

# architectures: the CMake list that nvcc builds (after `native` is resolved); cores: this machine's;
# native: TRUE when the list is this machine's GPU alone.
function(detnoise_announce_cuda_build architectures cores native)
  list(LENGTH architectures count)
  if(count EQUAL 1)
    set(what "1 architecture")
  else()
    set(what "${count} architectures")
  endif()
  detnoise_cuda_build_seconds(${count} ${cores} seconds)
  detnoise_rough_duration(${seconds} duration)
  string(REPLACE ";" ", " listed "${architectures}")
  if(native)
    set(hint "this machine's GPU only")
  else()
    string(CONCAT hint "no GPU visible, so every supported one; -C cmake.define.CMAKE_CUDA_ARCHITECTURES=native "
           "on a machine with its GPU visible builds for that GPU only")
  endif()
  if(cores EQUAL 1)
    set(on "1 core")
  else()
    set(on "${cores} cores")
  endif()
  string(CONCAT line "detnoise: CUDA kernels for ${what} (${listed}): compiling them takes ${duration} on ${on} "
         "when idle, once per build directory; ninja skips them while csrc/ is unchanged (${hint})")
  message(STATUS "${line}")
endfunction()

# `cmake -DARCHITECTURES="75-real;120" -DCORES=2 [-DNATIVE=ON] -P detnoise_build_estimate.cmake`
if(CMAKE_SCRIPT_MODE_FILE STREQUAL CMAKE_CURRENT_LIST_FILE)
  if(NOT DEFINED NATIVE)
    set(NATIVE OFF)
  endif()
  detnoise_announce_cuda_build("${ARCHITECTURES}" "${CORES}" ${NATIVE})
endif()
