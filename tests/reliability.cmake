# reliability (issue 15): what deitc and the executables do with their outputs, checkpoints and
# command lines under hostile inputs and faults. Label "reliability" (the EXE tests also "runtime").

# the JSON writer, the metadata reader, CRC-32, escaped names in messages
add_executable(test_json ${CMAKE_CURRENT_SOURCE_DIR}/core/test_json.c)
target_link_libraries(test_json PRIVATE deitc_rt m)
add_test(NAME rt_json COMMAND test_json)
set_tests_properties(rt_json PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS "core;reliability")

# issue 15, the outputs and command lines: outputs that are inputs, devices and FIFOs written in
# place, divergence that never writes NaN, damaged checkpoints named, --resume's options, stdout
# write errors, options once and decimal, escaped file names, JSON that survives an odd model
# name (rt_tiny_odd: the tiny plan named with quotes, control characters and 1000+ characters),
# stale PATH.tmp.PID files removed
add_executable(rt_tiny_odd ${CMAKE_CURRENT_SOURCE_DIR}/runtime/tiny_plan.c)
target_compile_definitions(rt_tiny_odd PRIVATE TINY_ODD_NAME=1)
target_link_libraries(rt_tiny_odd PRIVATE deitc_exe deitc_rt m)
add_executable(test_outputs ${CMAKE_CURRENT_SOURCE_DIR}/runtime/test_outputs.c)
target_link_libraries(test_outputs PRIVATE deitc_rt m)
add_test(NAME exe_outputs COMMAND test_outputs $<TARGET_FILE:rt_tiny_emu> $<TARGET_FILE:rt_tiny_odd>)
set_tests_properties(exe_outputs PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS "runtime;reliability")

# issue 15, checkpoints under faults: SIGKILL at 20 seeded moments of a run that checkpoints every
# step (a micro DeiT on emu); each time the last checkpoint verifies, resumes and ends with the
# uninterrupted run's bytes. A bit flipped at every header byte and in each tensor is refused,
# naming the metadata or the tensor. The zero-padded -D values give a 596-character model name.
add_executable(test_faults ${CMAKE_CURRENT_SOURCE_DIR}/runtime/test_faults.c)
target_link_libraries(test_faults PRIVATE deitc_rt m)
add_test(NAME exe_checkpoint_faults COMMAND test_faults ${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml)
set_tests_properties(exe_checkpoint_faults PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS "runtime;reliability")
