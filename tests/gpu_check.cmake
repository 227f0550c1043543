# gpu_check: benchmarks/gpu_check, the one script for a machine with a GPU, proven here.
#   gpu_check_selftest: its parsing, comparisons, budget and report, and prepare + run end to
#                       end with a fake deitc (needs nothing built);
#   gpu_check_dry_run:  prepare + run with real emu executables of deit_micro-sized models and a
#                       CPU (or fake) PyTorch baseline, as `run` will go on the GPU machine.
# Both run with Debian's python3 when it is there (it has torch, so the baseline script runs).
find_package(Python3 COMPONENTS Interpreter)
if(EXISTS /usr/bin/python3)
  set(GPU_CHECK_PYTHON /usr/bin/python3)
elseif(Python3_Interpreter_FOUND)
  set(GPU_CHECK_PYTHON ${Python3_EXECUTABLE})
endif()
if(GPU_CHECK_PYTHON)
  add_test(NAME gpu_check_selftest
           COMMAND ${GPU_CHECK_PYTHON} ${CMAKE_SOURCE_DIR}/benchmarks/gpu_check selftest)
  add_test(NAME gpu_check_dry_run
           COMMAND ${GPU_CHECK_PYTHON} ${CMAKE_SOURCE_DIR}/benchmarks/gpu_check dry-run
                   --deitc $<TARGET_FILE:deitc>)
  set_tests_properties(gpu_check_selftest PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS gpu_check TIMEOUT 60)
  set_tests_properties(gpu_check_dry_run PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS gpu_check TIMEOUT 180)
endif()
