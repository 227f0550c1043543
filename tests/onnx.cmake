# onnx.cmake: tests of the ONNX frontend (frontend/onnx.c): loading every committed case
# (tests/data/onnx, deit_micro) against PyTorch's logits, bad inputs, the deitc command on
# .onnx models (run, training steps, inspect histograms vs YAML), a full-size DeiT-Ti exported
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
# training through the ONNX model needs the training pass (passes/training.c)
set_tests_properties(onnx_cli-train PROPERTIES LABELS "training")

# The fuzz target, replayed over the committed models plus deterministic mutations (any compiler).
set(ONNX_FUZZ_SEEDS ${CMAKE_SOURCE_DIR}/tests/data/onnx/bad ${CMAKE_SOURCE_DIR}/tests/data/onnx/ops ${CMAKE_SOURCE_DIR}/tests/data/onnx/small/deit_opset14.onnx
    ${CMAKE_SOURCE_DIR}/tests/data/onnx/small/deit_opset18.onnx ${CMAKE_SOURCE_DIR}/tests/data/onnx/small/deit_opset20_gelu.onnx)
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
  target_compile_options(fuzz_onnx PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_options(fuzz_onnx PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_onnx PRIVATE deitc_rt ${YAML_LIB} ${PROTOBUF_C_LIB} m)
  add_test(NAME onnx_fuzz
           # libFuzzer takes corpus folders only: the seed files are copied into a fresh one
           COMMAND sh -c "d=$(mktemp -d) && mkdir $d/corpus && for s in \"$@\"; do if [ -d \"$s\" ]; then cp \"$s\"/* $d/corpus/; else cp \"$s\" $d/corpus/; fi; done && \"$0\" -max_total_time=20 -timeout=10 -rss_limit_mb=2048 -artifact_prefix=$d/ $d/corpus; r=$?; ls $d/crash-* $d/leak-* $d/timeout-* 2>/dev/null; rm -rf $d; exit $r"
                   $<TARGET_FILE:fuzz_onnx> ${ONNX_FUZZ_SEEDS})
endif()
