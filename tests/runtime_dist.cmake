# runtime_dist (after runtime.cmake, whose fake-cuda targets it uses): data-parallel training on the emu target, on the CPU (runtime/dist*.c; tests/dist/
# dist_emu.sh says what each mode checks). dist_build compiles the executables once (a fixture);
# the others share them. launch.sh is the torchrun-style launcher (RANK, WORLD_SIZE, LOCAL_RANK,
# MASTER_ADDR, MASTER_PORT); the mpirun case skips (77) where Open MPI is not installed.
set(DIST_EXES ${CMAKE_CURRENT_BINARY_DIR}/dist_exes)
set(DIST_ARGS ${DIST_EXES} $<TARGET_FILE:st_compare> ${CMAKE_CURRENT_SOURCE_DIR}/dist/launch.sh
    ${CMAKE_SOURCE_DIR}/tests/data/image_folder/train ${DEITC_TESTDATA}/deit_micro/init.safetensors)
add_test(NAME dist_build COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/dist/dist_emu.sh build ${DIST_ARGS})
set_tests_properties(dist_build PROPERTIES FIXTURES_SETUP dist_exes PASS_REGULAR_EXPRESSION "dist build ok"
  ENVIRONMENT "${DEITC_TEST_ENV};DEITC_DEITC=$<TARGET_FILE:deitc>;DEITC_MODEL=${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml")
foreach(mode env mpirun ti resume kill env_errors)
  add_test(NAME dist_emu_${mode} COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/dist/dist_emu.sh ${mode} ${DIST_ARGS})
  set_tests_properties(dist_emu_${mode} PROPERTIES FIXTURES_REQUIRED dist_exes ENVIRONMENT "${DEITC_TEST_ENV}"
    SKIP_RETURN_CODE 77 TIMEOUT 120)
endforeach()
set_tests_properties(dist_build dist_emu_env dist_emu_ti dist_emu_resume dist_emu_kill dist_emu_env_errors
  PROPERTIES LABELS dist)
# Open MPI's own allocations at exit are what LeakSanitizer would report: not run sanitized
set_tests_properties(dist_emu_mpirun PROPERTIES LABELS "dist;nosan")
if(TARGET rt_tiny_fake)
  add_test(NAME dist_cuda_no_nccl COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/dist/dist_emu.sh cuda_no_nccl ${DIST_ARGS})
  set_tests_properties(dist_cuda_no_nccl PROPERTIES LABELS dist PASS_REGULAR_EXPRESSION "dist cuda no nccl ok"
    ENVIRONMENT "${DEITC_TEST_ENV};RT_FAKE_EXE=$<TARGET_FILE:rt_tiny_fake>;RT_FAKE_LIB=$<TARGET_FILE:rt_fake_cuda>")
endif()
