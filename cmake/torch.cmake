# LibTorch from the project venv's pinned `torch` wheel (scripts/install-deps.sh installs it).
if(NOT Torch_DIR AND NOT CMAKE_PREFIX_PATH MATCHES "torch")
  if(NOT EXISTS "${BLOCKLAB_PYTHON}")
    message(FATAL_ERROR "blocklab: no Python at ${BLOCKLAB_PYTHON}. Run scripts/install-deps.sh first, "
                        "or pass -DBLOCKLAB_PYTHON=/path/to/python (with torch) or -DTorch_DIR=...")
  endif()
  execute_process(COMMAND "${BLOCKLAB_PYTHON}" -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
                  OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "blocklab: '${BLOCKLAB_PYTHON} -c import torch' failed. Run scripts/install-deps.sh.")
  endif()
  list(APPEND CMAKE_PREFIX_PATH "${_torch_prefix}")
endif()
# LibTorch's CMake config still reads the legacy CUDA variables; keep its noise down.
set(TORCH_CUDA_ARCH_LIST "9.0" CACHE STRING "CUDA architectures for LibTorch's checks")
# LibTorch warns when CMAKE_CUDA_ARCHITECTURES is set (we set it below for our kernels).
set(_blocklab_cuda_arch "${CMAKE_CUDA_ARCHITECTURES}")
unset(CMAKE_CUDA_ARCHITECTURES CACHE)
unset(CMAKE_CUDA_ARCHITECTURES)
find_package(Torch REQUIRED)
if(_blocklab_cuda_arch)
  set(CMAKE_CUDA_ARCHITECTURES "${_blocklab_cuda_arch}" CACHE STRING "CUDA architectures" FORCE)
endif()

add_library(blocklab_torch INTERFACE)
target_link_libraries(blocklab_torch INTERFACE ${TORCH_LIBRARIES})
target_include_directories(blocklab_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
target_compile_definitions(blocklab_torch INTERFACE BLOCKLAB_TORCH_VERSION="${Torch_VERSION}")
# libtorch.so exports its own copies of std::filesystem functions (built with a newer
# libstdc++); resolved from there, some of them crash (remove_all, seen here). Loading the
# system libstdc++ first makes every std:: symbol resolve to it.
target_link_options(blocklab_torch INTERFACE "LINKER:--push-state,--no-as-needed,-lstdc++,--pop-state")

# The CUDA path: built whenever LibTorch is CUDA-enabled and nvcc is found.
set(BLOCKLAB_WITH_CUDA OFF)
if(BLOCKLAB_CUDA AND CAFFE2_USE_CUDA)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90)  # H100 / H200
    endif()
    enable_language(CUDA)
    set(CMAKE_CUDA_STANDARD 17)
    set(BLOCKLAB_WITH_CUDA ON)
    target_compile_definitions(blocklab_torch INTERFACE BLOCKLAB_WITH_CUDA=1)
  endif()
endif()
message(STATUS "blocklab: LibTorch ${Torch_VERSION}, CUDA path ${BLOCKLAB_WITH_CUDA}")
