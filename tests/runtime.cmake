# runtime: the training executable's runtime (deitc_exe) without the code generator: the CPU
# GEMM against a naive one, and a hand-written plan (tests/runtime/tiny_plan.c) linked into an
# emu executable and a cuda one, driven end to end by test_exe.
add_executable(test_rt_gemm ${CMAKE_CURRENT_SOURCE_DIR}/runtime/test_gemm.c)
target_link_libraries(test_rt_gemm PRIVATE deitc_exe deitc_rt m)
add_test(NAME rt_gemm COMMAND test_rt_gemm)
add_test(NAME rt_gemm_generic COMMAND test_rt_gemm)
set_tests_properties(rt_gemm PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}")
set_tests_properties(rt_gemm_generic PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV};DEITC_GEMM_GENERIC=1")

add_executable(rt_tiny_emu ${CMAKE_CURRENT_SOURCE_DIR}/runtime/tiny_plan.c)
target_link_libraries(rt_tiny_emu PRIVATE deitc_exe deitc_rt m)
add_executable(rt_tiny_cuda ${CMAKE_CURRENT_SOURCE_DIR}/runtime/tiny_plan.c)
target_compile_definitions(rt_tiny_cuda PRIVATE TINY_CUDA=1)
target_link_libraries(rt_tiny_cuda PRIVATE deitc_exe deitc_rt m)

add_executable(test_rt_exe ${CMAKE_CURRENT_SOURCE_DIR}/runtime/test_exe.c)
target_link_libraries(test_rt_exe PRIVATE deitc_exe deitc_rt m)
add_test(NAME rt_exe COMMAND test_rt_exe $<TARGET_FILE:rt_tiny_emu> $<TARGET_FILE:rt_tiny_cuda>)
set_tests_properties(rt_exe PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}")
