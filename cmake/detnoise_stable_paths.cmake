# detnoise_stable_paths.cmake — keeps the compile commands the same from one `pip install` to the
# next, so that a second install of the same checkout (with other extras, say) recompiles nothing.
#
# Why a second install would rebuild: pip builds in an isolated environment, a new temporary folder
# each time, holding scikit-build-core and pybind11. scikit-build-core notices the new environment
# and deletes <build>/CMakeCache.txt and <build>/CMakeFiles (its cached paths point into the old
# one), so CMake configures afresh, and
#  - the objects of targets defined in the top-level CMakeLists.txt lived in <build>/CMakeFiles:
#    the targets are defined in csrc/CMakeLists.txt, so their objects live in <build>/csrc;
#  - ninja rebuilds an object whose command line changed (it keeps a hash of each in .ninja_log),
#    and bindings.cpp's held -isystem <isolated environment>/pybind11/include: compiled against a
#    copy of those headers at a fixed path instead, its command stays the same.
# The CUDA kernels' commands name only csrc/, nvcc and the flags, so they never depended on it.
# Correctness rests on ninja as in any incremental build: a changed source or header (it records
# every header an object read), command line, compiler version or pybind11 header rebuilds.

# Copies pybind11's headers to <build>/pybind11-include, rewriting only those whose content differs
# (a file left untouched keeps its time stamp, so nothing that includes it looks out of date), and
# points pybind11's targets there.
function(detnoise_pin_pybind11_headers)
  if(NOT pybind11_INCLUDE_DIR OR NOT IS_DIRECTORY "${pybind11_INCLUDE_DIR}")
    message(STATUS "detnoise: pybind11's include folder unknown; bindings.cpp recompiles on each isolated install")
    return()
  endif()
  set(pinned "${CMAKE_BINARY_DIR}/pybind11-include")
  file(GLOB_RECURSE headers RELATIVE "${pybind11_INCLUDE_DIR}" "${pybind11_INCLUDE_DIR}/*")
  file(GLOB_RECURSE stale RELATIVE "${pinned}" "${pinned}/*")
  foreach(header IN LISTS headers)
    get_filename_component(folder "${pinned}/${header}" DIRECTORY)
    file(MAKE_DIRECTORY "${folder}")
    file(COPY_FILE "${pybind11_INCLUDE_DIR}/${header}" "${pinned}/${header}" ONLY_IF_DIFFERENT)
  endforeach()
  # A header that a newer pybind11 no longer ships must not stay findable.
  list(REMOVE_ITEM stale ${headers})
  foreach(header IN LISTS stale)
    file(REMOVE "${pinned}/${header}")
  endforeach()

  # pybind11 3.x: pybind11::pybind11_headers carries the folder (pybind11::headers links it);
  # look at both, and replace the folder wherever it is named, however it is spelled.
  file(REAL_PATH "${pybind11_INCLUDE_DIR}" original)
  set(replaced FALSE)
  foreach(target IN ITEMS pybind11::pybind11_headers pybind11::headers)
    if(NOT TARGET ${target})
      continue()
    endif()
    get_target_property(folders ${target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT folders)
      continue()
    endif()
    set(pinned_folders)
    foreach(folder IN LISTS folders)
      if(IS_DIRECTORY "${folder}")
        file(REAL_PATH "${folder}" real)
        if(real STREQUAL original)
          set(folder "${pinned}")
          set(replaced TRUE)
        endif()
      endif()
      list(APPEND pinned_folders "${folder}")
    endforeach()
    set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${pinned_folders}")
  endforeach()
  if(NOT replaced)
    message(STATUS "detnoise: pybind11's targets do not name ${pybind11_INCLUDE_DIR}; "
                   "bindings.cpp recompiles on each isolated install")
  endif()
endfunction()
