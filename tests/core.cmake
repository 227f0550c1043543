# core: the IR (shape rules, verifier, printer, interpreter) and safetensors.
foreach(t test_safetensors test_ir)
  add_executable(${t} ${CMAKE_CURRENT_SOURCE_DIR}/core/${t}.c)
  target_link_libraries(${t} PRIVATE deitc_ir deitc_rt m)
  add_test(NAME ${t} COMMAND ${t})
  set_tests_properties(${t} PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS core)
endforeach()
