# gpu_check: benchmarks/gpu_check, the one script for a machine with a GPU, proven here.
#   gpu_check_selftest:  its parsing, comparisons, two-call plan and report, and prepare + run end
#                        to end with a fake deitc (graph capture failing, --torch none/small, merge);
#   gpu_check_dry_run:   prepare + run with real emu executables of deit_micro-sized models, a fake
#                        per-op kernel package run first, and Debian's torch 1.13 (eager modes: it
#                        has no torch.compile) or, without it, faked PyTorch numbers;
#   gpu_check_dry_run_{timeout,raise,op_kernel_fail}: a run whose torch.compile mode never ends,
#                        one whose correctness step raises, one whose per-op kernel test fails:
#                        each must say FAIL for that reason and keep every other step's results
#                        (fp32 executables only: the failure paths do not depend on the precision,
#                        and gpu_check_dry_run builds and runs the fp16 and bf16 ones);
#   gpu_check_dry_run_torch2: the dry run with a current PyTorch (torch >= 2 and timm), every mode
#                        of DeiT-S's stand-in, torch.compile included, on the CPU. It needs a python
#                        with them (DEITC_TORCH_PYTHON at test time, else the DEITC_TORCH_PYTHON
#                        cache variable) and is reported as skipped without one.
find_package(Python3 COMPONENTS Interpreter)
if(EXISTS /usr/bin/python3)
  set(GPU_CHECK_PYTHON /usr/bin/python3)
elseif(Python3_Interpreter_FOUND)
  set(GPU_CHECK_PYTHON ${Python3_EXECUTABLE})
endif()
set(DEITC_TORCH_PYTHON /work/venv-torch/bin/python CACHE FILEPATH
    "a python with torch >= 2 and timm for gpu_check_dry_run_torch2 (skipped when it has none)")
if(GPU_CHECK_PYTHON)
  set(GPU_CHECK ${CMAKE_SOURCE_DIR}/benchmarks/gpu_check)
  set(FAKE_OPK ${CMAKE_SOURCE_DIR}/tests/tools/fake_op_kernel_test.sh)
  add_test(NAME gpu_check_selftest COMMAND ${GPU_CHECK_PYTHON} ${GPU_CHECK} selftest)
  add_test(NAME gpu_check_dry_run
           COMMAND ${GPU_CHECK_PYTHON} ${GPU_CHECK} dry-run --deitc $<TARGET_FILE:deitc> --python ${GPU_CHECK_PYTHON}
                   --torch-modes eager-fp32,eager-bf16 --op-kernel-test ${FAKE_OPK})
  add_test(NAME gpu_check_dry_run_timeout
           COMMAND ${GPU_CHECK_PYTHON} ${GPU_CHECK} dry-run --deitc $<TARGET_FILE:deitc> --fake-torch --torch small --precisions fp32
                   --fake-torch-hang compile-fp32 --torch-limit 5 --expect-fail "compile-fp32: timed out")
  add_test(NAME gpu_check_dry_run_raise
           COMMAND ${GPU_CHECK_PYTHON} ${GPU_CHECK} dry-run --deitc $<TARGET_FILE:deitc> --fake-torch --precisions fp32
                   --raise-in correctness --expect-fail "^step correctness raised RuntimeError")
  add_test(NAME gpu_check_dry_run_op_kernel_fail
           COMMAND ${GPU_CHECK_PYTHON} ${GPU_CHECK} dry-run --deitc $<TARGET_FILE:deitc> --fake-torch --torch none --precisions fp32
                   --op-kernel-test ${FAKE_OPK} --expect-fail "^per-op kernel test: 1 of 3 cases failed")
  add_test(NAME gpu_check_dry_run_torch2
           COMMAND sh -c "exec \"$0\" \"$1\" dry-run --deitc \"$2\" --torch small --require-torch 2 --python \"\${DEITC_TORCH_PYTHON:-$3}\""
                   ${GPU_CHECK_PYTHON} ${GPU_CHECK} $<TARGET_FILE:deitc> ${DEITC_TORCH_PYTHON})
  set_tests_properties(gpu_check_selftest PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS gpu_check TIMEOUT 300)
  # label nosan: scripts/test.sh --sanitize leaves these out. They test gpu_check's own Python
  # (a mode that times out, a step that raises, a failing per-op report, a real PyTorch's modes)
  # around the same deitc executables gpu_check_dry_run already runs under the sanitizers, and
  # under ASan each one rebuilds them for minutes on 2 cores.
  set_tests_properties(gpu_check_dry_run PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS gpu_check TIMEOUT 600)
  set_tests_properties(gpu_check_dry_run_timeout gpu_check_dry_run_raise
                       PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS "gpu_check;nosan" TIMEOUT 600)
  set_tests_properties(gpu_check_dry_run_op_kernel_fail PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV};FAKE_OP_KERNEL_FAIL=1"
                       LABELS "gpu_check;nosan" TIMEOUT 600)
  set_tests_properties(gpu_check_dry_run_torch2 PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS "gpu_check;torch2;nosan"
                       TIMEOUT 900 SKIP_RETURN_CODE 77)
endif()
