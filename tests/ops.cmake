# ops: every emitted kernel on its own (tests/ops/op_kernel_test.c says how): coverage of the
# emitter's per-op table, each case on emu against the interpreter, and the cuda package that
# benchmarks/gpu_check runs first on a GPU (`op_kernel_test --make-cuda-package DIR --arch sm_XX`).
add_library(op_kernel_check_main STATIC ${CMAKE_CURRENT_SOURCE_DIR}/ops/op_kernel_check.c)
add_executable(op_kernel_test ${CMAKE_CURRENT_SOURCE_DIR}/ops/op_kernel_test.c ${CMAKE_CURRENT_SOURCE_DIR}/ops/op_cases.c)
target_link_libraries(op_kernel_test PRIVATE deitc_codegen deitc_passes deitc_ir deitc_rt ${CMAKE_DL_LIBS} m)
set(OKT_RUNTIME_LIB "$<TARGET_FILE:deitc_exe>:$<TARGET_FILE:deitc_rt>")
foreach(lib ${DEITC_IMAGE_LIBS})
  set(OKT_RUNTIME_LIB "${OKT_RUNTIME_LIB}:${lib}")
endforeach()
target_compile_definitions(op_kernel_test PRIVATE
  OKT_RUNTIME_DIR="${CMAKE_SOURCE_DIR}/runtime"
  OKT_RUNTIME_LIB="${OKT_RUNTIME_LIB}"
  OKT_DRIVER_LIB="$<TARGET_FILE:op_kernel_check_main>")
add_dependencies(op_kernel_test op_kernel_check_main deitc_exe deitc_rt)

add_test(NAME ops_coverage COMMAND op_kernel_test --coverage)
add_test(NAME ops_expr COMMAND op_kernel_test --expr)
add_test(NAME ops_kernels_emu COMMAND op_kernel_test --emu)
add_test(NAME ops_cuda_package COMMAND op_kernel_test --cuda-package)
set_tests_properties(ops_coverage ops_expr ops_kernels_emu ops_cuda_package PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS ops)
set_tests_properties(ops_cuda_package PROPERTIES SKIP_RETURN_CODE 77)
# the attention ops over the whole grid (head dims 32/64/96/128 x N 1..577, batch 1-3, heads
# 1-6: op_cases.c attention_cases), on emu: about 50 s of CPU, so not under the sanitizers
add_test(NAME ops_attention_grid COMMAND op_kernel_test --emu)
set_tests_properties(ops_attention_grid PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV};OKT_ATTENTION_GRID=1" LABELS "ops;nosan")
