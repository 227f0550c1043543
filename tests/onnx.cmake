# onnx.cmake: tests of the ONNX frontend (frontend/onnx*.c): loading every committed case
# (tests/data/onnx incl. the do_constant_folding=False / static batch / tanh GELU exports of
# onnx/export, deit_micro) against PyTorch's logits, bad inputs, the deitc command on .onnx
# models (run, training steps, inspect histograms vs YAML, the ONNX exports of the other
# oracle sizes, a static batch refused), a full-size DeiT-Ti exported
# at test time (skipped without torch), and the fuzz target replayed (libFuzzer with
# -DDEITC_FUZZ=ON and clang).
if(NOT DEITC_HAVE_ONNX)
  message(STATUS "ONNX tests skipped: the ONNX frontend is not built")
  return()
endif()

add_executable(test_onnx ${CMAKE_CURRENT_LIST_DIR}/onnx/test_onnx.c)
target_link_libraries(test_onnx PRIVATE deitc_frontend deitc_ir deitc_rt m)
foreach(mode load ops bad cli-run cli-train cli-inspect tiny)
  add_test(NAME onnx_${mode} COMMAND test_onnx ${mode})
  set_tests_properties(onnx_${mode} PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}")
endforeach()
set_tests_properties(onnx_tiny PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)
# Hostile ONNX files (issue 15), made at test time: sizes proven before allocation, out of
# memory as a message (ASan must return NULL for it), symbolic links, FIFOs, NaN, counts.
add_executable(test_onnx_hostile ${CMAKE_CURRENT_LIST_DIR}/onnx/test_onnx_hostile.c)
target_include_directories(test_onnx_hostile PRIVATE ${DEITC_ONNX_GEN_DIR})
target_link_libraries(test_onnx_hostile PRIVATE deitc_frontend deitc_ir deitc_rt m)
add_test(NAME onnx_hostile COMMAND test_onnx_hostile)
set_tests_properties(onnx_hostile PROPERTIES LABELS hostile TIMEOUT 60
  ENVIRONMENT "${DEITC_TEST_ENV};ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1")
# training through the ONNX model needs the training pass (passes/training.c)
set_tests_properties(onnx_cli-train PROPERTIES LABELS "training")

# `deitc run` on the ONNX exports beside the PyTorch oracles of other sizes (tests/data/<case>/,
# ../shared/tools/deit_ref.py): logits within 1e-4 and the losses of 3 AdamW steps within 1e-4.
# The model's own initializers are the weights (a folded export renames the Linear weights).
function(deitc_onnx_oracle_case name model)
  set(dir ${DEITC_TESTDATA}/${name})
  set(common -DDEITC=$<TARGET_FILE:deitc> -DCOMPARE=$<TARGET_FILE:st_compare>)
  add_test(NAME onnx_oracle_${name}_logits COMMAND ${CMAKE_COMMAND} ${common}
    "-DRUN=run;${dir}/${model};--input;${dir}/batch.safetensors"
    "-DCHECKS=${dir}/expected.safetensors|1e-4|logits"
    -P ${CMAKE_CURRENT_LIST_DIR}/tools/run_and_compare.cmake)
  add_test(NAME onnx_oracle_${name}_train COMMAND ${CMAKE_COMMAND} ${common}
    "-DRUN=run;${dir}/${model};--input;${dir}/batch.safetensors;--steps;3;--lr;1e-3;--weight-decay;0.05"
    "-DCHECKS=${dir}/expected.safetensors|1e-4|losses"
    -P ${CMAKE_CURRENT_LIST_DIR}/tools/run_and_compare.cmake)
  set_tests_properties(onnx_oracle_${name}_logits onnx_oracle_${name}_train PROPERTIES LABELS oracle)
  set_tests_properties(onnx_oracle_${name}_train PROPERTIES LABELS "oracle;training")
endfunction()
# head dim 16, 3 blocks, image 48, opset 14
deitc_onnx_oracle_case(deit_img48_h3_d3 deit_opset14.onnx)
# head dim 8, 1 block, image 24, patch 6, opset 15
deitc_onnx_oracle_case(deit_img24_h5_d1 deit_opset15.onnx)

# A static-batch export (batch 3) run on a batch of 2: refused by `deitc run`, saying why.
add_test(NAME onnx_static_batch_cli
  COMMAND sh -c "d=$(mktemp -d) && \"$0\" run \"$1\" --input \"$2\" -o \"$d/out.safetensors\" >\"$d/log\" 2>&1; r=$?; cat \"$d/log\"; grep -q 'fixed batch of 3, but batch 2 is asked for' \"$d/log\"; g=$?; rm -rf \"$d\"; [ $r -ne 0 ] && [ $g -eq 0 ]"
          $<TARGET_FILE:deitc> ${DEITC_TESTDATA}/onnx/export/gelu_tanh/deit_opset13_static_nofold.onnx
          ${DEITC_TESTDATA}/onnx/export/nofold/batch.safetensors)

# The fuzz target, replayed over the committed models plus deterministic mutations (any compiler).
set(ONNX_FUZZ_SEEDS ${CMAKE_SOURCE_DIR}/tests/data/onnx/bad ${CMAKE_SOURCE_DIR}/tests/data/onnx/ops ${CMAKE_SOURCE_DIR}/tests/data/onnx/small/deit_opset14.onnx
    ${CMAKE_SOURCE_DIR}/tests/data/onnx/export/gelu_tanh/deit_opset13_static_nofold.onnx
    ${CMAKE_SOURCE_DIR}/tests/data/onnx/small/deit_opset18.onnx ${CMAKE_SOURCE_DIR}/tests/data/onnx/small/deit_opset20_gelu.onnx
    ${CMAKE_SOURCE_DIR}/tests/data/onnx/timm/opset23.onnx)
add_executable(fuzz_onnx_replay ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_onnx.c ${CMAKE_CURRENT_LIST_DIR}/fuzz/replay_main.c)
target_link_libraries(fuzz_onnx_replay PRIVATE deitc_frontend deitc_ir deitc_rt m)
add_test(NAME onnx_fuzz_replay COMMAND fuzz_onnx_replay --mutations 200 ${ONNX_FUZZ_SEEDS})

if(DEITC_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "DEITC_FUZZ=ON needs clang (cmake -DCMAKE_C_COMPILER=clang)")
  endif()
  # the reader and the IR are compiled into the target so that the fuzzer sees their coverage
  file(GLOB FUZZ_ONNX_LIB_SOURCES ${CMAKE_SOURCE_DIR}/frontend/*.c ${CMAKE_SOURCE_DIR}/ir/*.c)
  add_executable(fuzz_onnx ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_onnx.c ${FUZZ_ONNX_LIB_SOURCES}
                 ${DEITC_ONNX_GEN_DIR}/onnx.pb-c.c)
  set_source_files_properties(${DEITC_ONNX_GEN_DIR}/onnx.pb-c.c PROPERTIES GENERATED TRUE COMPILE_OPTIONS "-w")
  add_dependencies(fuzz_onnx deitc_frontend) # runs protoc-c first
  target_include_directories(fuzz_onnx PRIVATE ${DEITC_ONNX_GEN_DIR})
  target_compile_definitions(fuzz_onnx PRIVATE DEITC_HAVE_ONNX=1)
  target_compile_options(fuzz_onnx PRIVATE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)
  target_link_options(fuzz_onnx PRIVATE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)
  target_link_libraries(fuzz_onnx PRIVATE deitc_rt ${YAML_LIB} ${PROTOBUF_C_LIB} m)
  add_test(NAME onnx_fuzz
           # libFuzzer takes corpus folders only: the seed files are copied into a fresh one
           COMMAND sh -c "d=$(mktemp -d) && mkdir $d/corpus && for s in \"$@\"; do if [ -d \"$s\" ]; then cp \"$s\"/* $d/corpus/; else cp \"$s\" $d/corpus/; fi; done && \"$0\" -max_total_time=20 -timeout=10 -rss_limit_mb=2048 -artifact_prefix=$d/ $d/corpus; r=$?; ls $d/crash-* $d/leak-* $d/timeout-* 2>/dev/null; rm -rf $d; exit $r"
                   $<TARGET_FILE:fuzz_onnx> ${ONNX_FUZZ_SEEDS})
endif()

# timm's own DeiT code (reduced, tests/onnx/export_timm.py), exported four ways: the legacy
# exporter at opset 17, dynamo (default), dynamo optimize=False (CastLike, unfolded transposes)
# and dynamo at opset 23 (the Attention op). Each: logits within 1e-4; timm's state_dict
# (timm.safetensors, also with a DDP 'module.' prefix and in float64) fully applied, logits
# within 1e-4; 3 AdamW steps from the file's own initializers give the losses within 1e-4 and
# weights under timm's names and layout that match PyTorch float64 (within 5e-3, and their
# changes within 5e-3 by tensor class; see oracle.cmake for the qkv bias's key third).
set(TIMM ${DEITC_TESTDATA}/onnx/timm)
set(timm_common -DDEITC=$<TARGET_FILE:deitc> -DCOMPARE=$<TARGET_FILE:st_compare>)
foreach(form legacy17 dynamo noopt opset23)
  add_test(NAME onnx_timm_${form}_logits COMMAND ${CMAKE_COMMAND} ${timm_common}
    "-DRUN=run;${TIMM}/${form}.onnx;--input;${TIMM}/batch.safetensors"
    "-DCHECKS=${TIMM}/expected.safetensors|1e-4|logits"
    -P ${CMAKE_CURRENT_LIST_DIR}/tools/run_and_compare.cmake)
  foreach(w timm timm_module timm_f64)
    add_test(NAME onnx_timm_${form}_${w} COMMAND ${CMAKE_COMMAND} ${timm_common}
      "-DRUN=run;${TIMM}/${form}.onnx;--weights;${TIMM}/${w}.safetensors;--input;${TIMM}/batch.safetensors"
      "-DCHECKS=${TIMM}/timm_expected.safetensors|1e-4|logits"
      -P ${CMAKE_CURRENT_LIST_DIR}/tools/run_and_compare.cmake)
  endforeach()
  add_test(NAME onnx_timm_${form}_train COMMAND ${CMAKE_COMMAND} ${timm_common}
    "-DRUN=run;${TIMM}/${form}.onnx;--input;${TIMM}/batch.safetensors;--steps;3;--lr;1e-3;--weight-decay;0.05"
    "-DCHECKS=${TIMM}/expected.safetensors|1e-4|losses;${TIMM}/after_steps.safetensors|5e-3|*;${TIMM}/after_steps.safetensors|5e-3|*|${TIMM}/init.safetensors|3e-3"
    -P ${CMAKE_CURRENT_LIST_DIR}/tools/run_and_compare.cmake)
  set_tests_properties(onnx_timm_${form}_logits onnx_timm_${form}_timm onnx_timm_${form}_timm_module
                       onnx_timm_${form}_timm_f64 PROPERTIES LABELS "onnx;timm")
  set_tests_properties(onnx_timm_${form}_train PROPERTIES LABELS "onnx;timm;training")
endforeach()
# the weights file of `deitc run --steps` holds exactly timm's state_dict names (no losses, no
# initializer names), the prefix is named when stripped, a timm file without its head is refused
# (naming --partial-init) and with --partial-init keeps the model's head, and the dynamo exports'
# IR has no more nodes than the legacy one's
add_test(NAME onnx_timm_files COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/onnx/timm_files.sh
         $<TARGET_FILE:deitc> $<TARGET_FILE:st_compare> ${TIMM})
set_tests_properties(onnx_timm_files PROPERTIES LABELS "onnx;timm")
# the same models trained by deitc (interpreter) and by the emu EXE, exported back to ONNX:
# initializer names are the original file's, onnxruntime gives deitc's logits (python3 with onnx
# and onnxruntime), and the trained weights load into timm with strict=True and give deitc's
# logits (DEITC_TORCH_PYTHON, else /work/venv-torch/bin/python as the other timm checks, else
# /usr/bin/python3, with torch and timm). Each skips (77) without them.
foreach(mode export timm)
  add_test(NAME onnx_timm_check_${mode} COMMAND sh -c "p=\${DEITC_TORCH_PYTHON:-/work/venv-torch/bin/python}; [ -x \"$p\" ] || p=/usr/bin/python3; exec \"$p\" \"$0\" \"$@\""
           ${CMAKE_CURRENT_LIST_DIR}/onnx/check_timm.py ${mode} ${TIMM})
  set_tests_properties(onnx_timm_check_${mode} PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" SKIP_RETURN_CODE 77
                       LABELS "onnx;timm" TIMEOUT 600)
endforeach()
