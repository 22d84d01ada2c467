# Finds the optional dependencies. Each SLAK_WITH_<X> defaults to ON where <X>
# is found; set explicitly to ON, a missing dependency is a configure error
# that names the Debian or PyPI package providing it.

# Each option is a cache string: AUTO (the default: ON where found), ON or OFF.
# The resolved value is a normal variable of the same name, ON or OFF.
macro(slak_option name)
  set(SLAK_WITH_${name} AUTO CACHE STRING "Build the parts that need ${name}: AUTO, ON or OFF")
  set_property(CACHE SLAK_WITH_${name} PROPERTY STRINGS AUTO ON OFF)
  set(_slak_want_${name} ${SLAK_WITH_${name}})
endmacro()

# slak_dependency(NAME PACKAGE_HINT FOUND_VAR): resolves SLAK_WITH_<NAME>.
macro(slak_dependency name hint found)
  if(_slak_want_${name} STREQUAL "AUTO")
    if(${found})
      set(SLAK_WITH_${name} ON)
    else()
      set(SLAK_WITH_${name} OFF)
    endif()
  elseif(_slak_want_${name})
    if(NOT ${found})
      message(FATAL_ERROR
        "SLAK_WITH_${name}=ON but ${name} was not found. Install it with: ${hint} "
        "(scripts/setup.sh does), or configure with -DSLAK_WITH_${name}=OFF.")
    endif()
    set(SLAK_WITH_${name} ON)
  else()
    set(SLAK_WITH_${name} OFF)
  endif()
endmacro()

foreach(dep MLIR TORCH HALIDE OPENCL CUDA)
  slak_option(${dep})
endforeach()

# MLIR / LLVM 22.
if(_slak_want_MLIR)
  # MLIR must find its own LLVM (22), never the LLVM 14 that Halide 14 brings.
  if(NOT LLVM_DIR OR LLVM_DIR MATCHES "llvm-14")
    set(LLVM_DIR /usr/lib/llvm-22/lib/cmake/llvm CACHE PATH "LLVM 22 CMake directory" FORCE)
  endif()
  find_package(MLIR CONFIG QUIET
    HINTS ${MLIR_DIR} /usr/lib/llvm-22/lib/cmake/mlir)
endif()
slak_dependency(MLIR "apt-get install libmlir-22-dev mlir-22-tools llvm-22-dev llvm-22-tools" MLIR_FOUND)
if(SLAK_WITH_MLIR)
  list(APPEND CMAKE_MODULE_PATH "${MLIR_CMAKE_DIR}" "${LLVM_CMAKE_DIR}")
  include(TableGen)
  include(AddLLVM)
  include(AddMLIR)
  find_program(SLAK_LIT NAMES lit llvm-lit HINTS ${LLVM_TOOLS_BINARY_DIR} /usr/lib/llvm-22/bin)
  find_program(SLAK_FILECHECK FileCheck HINTS ${LLVM_TOOLS_BINARY_DIR} /usr/lib/llvm-22/bin)
  if(NOT SLAK_LIT OR NOT SLAK_FILECHECK)
    message(FATAL_ERROR "lit or FileCheck not found: apt-get install llvm-22-tools")
  endif()
endif()

# LibTorch from the torch wheel (project venv first, then any python3 with torch).
if(_slak_want_TORCH)
  if(NOT Torch_DIR)
    foreach(py ${CMAKE_SOURCE_DIR}/.venv/bin/python python3)
      execute_process(COMMAND ${py} -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
        OUTPUT_VARIABLE _torch_prefix RESULT_VARIABLE _torch_rc ERROR_QUIET
        OUTPUT_STRIP_TRAILING_WHITESPACE)
      if(_torch_rc EQUAL 0 AND _torch_prefix)
        set(Torch_DIR ${_torch_prefix}/Torch)
        set(SLAK_PYTHON ${py})
        break()
      endif()
    endforeach()
  endif()
  if(Torch_DIR)
    find_package(Torch CONFIG QUIET)
  endif()
endif()
slak_dependency(TORCH "scripts/setup.sh (pip install torch into .venv)" Torch_FOUND)
# ATen's at::parallel_for is a header template that splits work with
# `#pragma omp parallel` only where the including file is compiled with
# -fopenmp; elsewhere it runs the whole range on the calling thread.
# slak_torch_openmp gives a target that flag and links the libgomp LibTorch
# itself loads (the wheel ships its own next to libtorch_cpu.so), so the
# loops run on LibTorch's OpenMP team and no second OpenMP runtime is loaded.
if(SLAK_WITH_TORCH AND NOT TARGET slak_torch_openmp)
  get_filename_component(_slak_torch_lib "${TORCH_LIBRARY}" DIRECTORY)
  find_library(SLAK_TORCH_GOMP NAMES libgomp.so.1 gomp PATHS "${_slak_torch_lib}" NO_DEFAULT_PATH)
  add_library(slak_torch_openmp INTERFACE)
  # GCC's -fopenmp emits libgomp's ABI; other compilers take their own runtime.
  if(SLAK_TORCH_GOMP AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(slak_torch_openmp INTERFACE -fopenmp)
    target_link_libraries(slak_torch_openmp INTERFACE "${SLAK_TORCH_GOMP}")
  else()
    find_package(OpenMP COMPONENTS CXX)
    if(OpenMP_CXX_FOUND)
      target_link_libraries(slak_torch_openmp INTERFACE OpenMP::OpenMP_CXX)
    else()
      message(WARNING "No OpenMP for at::parallel_for: the fused BatchNorm, the GELU and the "
                      "linears' transposes run on one thread")
    endif()
  endif()
endif()
# The Python whose torch the build uses: the package's and pytest's.
if(_slak_want_TORCH AND NOT SLAK_PYTHON)
  foreach(py ${CMAKE_SOURCE_DIR}/.venv/bin/python python3)
    execute_process(COMMAND ${py} -c "import torch" RESULT_VARIABLE _rc OUTPUT_QUIET ERROR_QUIET)
    if(_rc EQUAL 0)
      set(SLAK_PYTHON ${py})
      break()
    endif()
  endforeach()
endif()

# Halide (Debian's Halide 14: works with CMake 3.25 and beside LLVM 22).
# Halide 14's config finds LLVM 14, which would overwrite MLIR's LLVM_*
# variables: look it up inside a function so that only its targets escape.
function(slak_find_halide)
  find_package(Halide CONFIG QUIET)
  set(Halide_FOUND ${Halide_FOUND} PARENT_SCOPE)
endfunction()
if(_slak_want_HALIDE)
  slak_find_halide()
  if(SLAK_WITH_MLIR)
    set(LLVM_DIR /usr/lib/llvm-22/lib/cmake/llvm CACHE PATH "LLVM 22 CMake directory" FORCE)
  endif()
endif()
slak_dependency(HALIDE "apt-get install libhalide14-0-dev" Halide_FOUND)

# OpenCL (PoCL on the CPU in CI).
if(_slak_want_OPENCL)
  find_package(OpenCL QUIET)
endif()
slak_dependency(OPENCL "apt-get install ocl-icd-opencl-dev opencl-headers pocl-opencl-icd" OpenCL_FOUND)

# CUDA: only the headers and nvcc/NVRTC are needed at build time; the driver
# and NVRTC are dlopen()ed at run time.
if(_slak_want_CUDA)
  find_package(CUDAToolkit QUIET)
endif()
slak_dependency(CUDA "the CUDA toolkit (nvcc, NVRTC) under /usr/local/cuda" CUDAToolkit_FOUND)

find_package(GTest QUIET)
if(NOT GTest_FOUND)
  message(FATAL_ERROR "GoogleTest not found: apt-get install libgtest-dev libgmock-dev")
endif()
find_package(nlohmann_json 3 QUIET)
if(NOT nlohmann_json_FOUND)
  message(FATAL_ERROR "nlohmann_json not found: apt-get install nlohmann-json3-dev")
endif()
find_package(SQLite3 QUIET)
