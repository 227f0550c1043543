# core: the IR (shape rules, verifier, printer, interpreter) and safetensors.
foreach(t test_safetensors test_ir test_interp_gemm)
  add_executable(${t} ${CMAKE_CURRENT_SOURCE_DIR}/core/${t}.c)
  target_link_libraries(${t} PRIVATE deitc_ir deitc_rt m)
  add_test(NAME ${t} COMMAND ${t})
  set_tests_properties(${t} PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS core)
endforeach()
# the 200,000-tensor and FIFO cases of test_safetensors hung before issue 15's fixes
set_tests_properties(test_safetensors PROPERTIES TIMEOUT 60)
add_executable(test_init ${CMAKE_CURRENT_SOURCE_DIR}/core/test_init.c)
target_link_libraries(test_init PRIVATE deitc_frontend deitc_ir deitc_rt m)
add_test(NAME test_init COMMAND test_init)
set_tests_properties(test_init PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS core)
# the interpreter's pooled values and host threads against its plain run: the same bits
add_executable(test_interp_values ${CMAKE_CURRENT_SOURCE_DIR}/core/test_interp_values.c)
target_link_libraries(test_interp_values PRIVATE deitc_passes deitc_frontend deitc_ir deitc_rt m)
add_test(NAME test_interp_values COMMAND test_interp_values)
set_tests_properties(test_interp_values PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS core)
