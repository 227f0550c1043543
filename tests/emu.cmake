# emu: the CUDA-emulation header (runtime/cuda_emu.h) and the kernel prelude
# (runtime/kernel_prelude.cuh), tested on hand-written kernels (tests/emu/test_kernels.cu):
# on the emu against plain C, under AddressSanitizer, and compiled by NVRTC for sm_80/sm_90.
find_package(Threads REQUIRED)
set(EMU_TEST_DIR ${CMAKE_CURRENT_SOURCE_DIR}/emu)

function(emu_test_exe name)
  add_executable(${name} ${EMU_TEST_DIR}/emu_test.cc)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/runtime ${EMU_TEST_DIR})
  target_compile_definitions(${name} PRIVATE DEITC_EMU ${ARGN})
  target_compile_options(${name} PRIVATE -O2)
  target_link_libraries(${name} PRIVATE Threads::Threads m)
endfunction()

emu_test_exe(emu_test)
emu_test_exe(emu_test_ucontext EMU_USE_UCONTEXT)
emu_test_exe(emu_test_asan)
target_compile_options(emu_test_asan PRIVATE -fsanitize=address -fno-omit-frame-pointer)
target_link_options(emu_test_asan PRIVATE -fsanitize=address)

add_test(NAME emu_kernels COMMAND emu_test)
add_test(NAME emu_kernels_2threads COMMAND emu_test)
set_tests_properties(emu_kernels_2threads PROPERTIES ENVIRONMENT "DEITC_EMU_THREADS=2")
add_test(NAME emu_kernels_ucontext COMMAND emu_test_ucontext)
add_test(NAME emu_kernels_asan COMMAND emu_test_asan)
add_test(NAME emu_deadlock COMMAND emu_test deadlock)
set_tests_properties(emu_deadlock PROPERTIES PASS_REGULAR_EXPRESSION "emu: deadlock in kernel 'bad_barrier', block \\(0,0,0\\) of 64 threads: 1 exited \\(first: thread \\(5,0,0\\)\\)")
add_test(NAME emu_no_fibers COMMAND emu_test nofibers)
set_tests_properties(emu_no_fibers PROPERTIES PASS_REGULAR_EXPRESSION "kernel 'bad_barrier' uses __syncthreads but was launched with needs_fibers=false")
add_test(NAME emu_partial_warp COMMAND emu_test partialwarp)
set_tests_properties(emu_partial_warp PROPERTIES PASS_REGULAR_EXPRESSION "kernel 'warp_ops': __shfl_xor_sync in a partial warp \\(thread \\(32,0,0\\), 48 threads")
add_test(NAME emu_asan_oob COMMAND emu_test_asan oob)
set_tests_properties(emu_asan_oob PROPERTIES PASS_REGULAR_EXPRESSION "heap-buffer-overflow.*bad_oob")
add_test(NAME emu_bench_switch COMMAND emu_test bench)
add_test(NAME emu_bench_switch_ucontext COMMAND emu_test_ucontext bench)
set_tests_properties(emu_bench_switch emu_bench_switch_ucontext PROPERTIES LABELS bench)

if(TARGET CUDA::nvrtc)
  add_executable(emu_nvrtc ${EMU_TEST_DIR}/emu_nvrtc.cc)
  # libnvrtc itself, not CUDA::nvrtc: that target also links the driver stub (libcuda.so.1),
  # which machines without a GPU driver cannot load
  get_target_property(EMU_NVRTC_LIB CUDA::nvrtc IMPORTED_LOCATION)
  target_include_directories(emu_nvrtc PRIVATE ${CUDAToolkit_INCLUDE_DIRS})
  target_link_libraries(emu_nvrtc PRIVATE ${EMU_NVRTC_LIB})
  add_test(NAME emu_nvrtc COMMAND emu_nvrtc)
  set_tests_properties(emu_nvrtc PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}")
else()
  message(STATUS "emu: NVRTC not found, emu_nvrtc test skipped")
endif()
