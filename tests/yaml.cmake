# yaml.cmake: tests of the YAML frontend and the layer builders (frontend/yaml.c, layers.c,
# load.c), the bad-input table (tests/data/bad_yaml) and the fuzz target.
add_executable(test_yaml ${CMAKE_CURRENT_LIST_DIR}/frontend/test_yaml.c)
target_link_libraries(test_yaml PRIVATE deitc_frontend deitc_ir deitc_rt m)
add_test(NAME yaml_unit COMMAND test_yaml unit)
add_test(NAME yaml_bad_inputs COMMAND test_yaml bad)
add_test(NAME yaml_oracle_logits COMMAND test_yaml oracle)
set_tests_properties(yaml_unit yaml_bad_inputs yaml_oracle_logits PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}")

# Hostile YAML (issue 15): deep nesting refused before libyaml (it hung), FIFOs, the size cap.
add_executable(test_yaml_limits ${CMAKE_CURRENT_LIST_DIR}/frontend/test_yaml_limits.c)
target_link_libraries(test_yaml_limits PRIVATE deitc_frontend deitc_ir deitc_rt m)
add_test(NAME yaml_limits COMMAND test_yaml_limits)
set_tests_properties(yaml_limits PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS hostile TIMEOUT 30)
# the pre-scan's depth against libyaml's own (PyYAML) on emitted documents; skipped without it
if(EXISTS /usr/bin/python3)
  add_test(NAME yaml_depth_vs_pyyaml COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/frontend/yaml_depth_vs_pyyaml.py
                                     $<TARGET_FILE:test_yaml_limits> 300)
  set_tests_properties(yaml_depth_vs_pyyaml PROPERTIES LABELS hostile TIMEOUT 120 SKIP_RETURN_CODE 77)
endif()

# The fuzz target replayed over the seed corpus plus deterministic mutations (any compiler).
set(YAML_FUZZ_SEEDS ${CMAKE_SOURCE_DIR}/models ${CMAKE_SOURCE_DIR}/tests/data/bad_yaml
    ${CMAKE_CURRENT_LIST_DIR}/fuzz/seeds)
add_executable(fuzz_yaml_replay ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_yaml.c
               ${CMAKE_CURRENT_LIST_DIR}/fuzz/replay_main.c)
target_link_libraries(fuzz_yaml_replay PRIVATE deitc_frontend deitc_ir deitc_rt m)
add_test(NAME yaml_fuzz_replay COMMAND fuzz_yaml_replay --mutations 2000 ${YAML_FUZZ_SEEDS}
                                 ${CMAKE_CURRENT_LIST_DIR}/frontend/micro.yaml)

# libFuzzer (clang, -DDEITC_FUZZ=ON): the frontend and IR sources are compiled into the target
# so that the fuzzer sees their coverage; the ctest runs it for 20 s from a temp corpus.
if(DEITC_FUZZ AND NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(WARNING "DEITC_FUZZ=ON needs clang (CC=clang cmake ...): fuzz_yaml not built")
elseif(DEITC_FUZZ)
  file(GLOB FUZZ_YAML_LIB_SOURCES ${CMAKE_SOURCE_DIR}/frontend/*.c ${CMAKE_SOURCE_DIR}/ir/*.c)
  list(FILTER FUZZ_YAML_LIB_SOURCES EXCLUDE REGEX "onnx\\.c$")
  add_executable(fuzz_yaml ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_yaml.c ${FUZZ_YAML_LIB_SOURCES})
  target_compile_options(fuzz_yaml PRIVATE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)
  target_link_options(fuzz_yaml PRIVATE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)
  target_link_libraries(fuzz_yaml PRIVATE deitc_rt ${YAML_LIB} m)
  add_test(NAME yaml_fuzz
           COMMAND sh -c "d=$(mktemp -d) && \"$0\" -max_total_time=20 -timeout=10 -rss_limit_mb=2048 -artifact_prefix=$d/ $d \"$@\"; r=$?; ls $d/crash-* $d/leak-* $d/timeout-* 2>/dev/null; rm -rf $d; exit $r"
                   $<TARGET_FILE:fuzz_yaml> ${YAML_FUZZ_SEEDS})
endif()

# -D makes another model, and its name says which (so `EXE info` and saved files do not claim
# the YAML file's model)
add_test(NAME yaml_define_renames COMMAND deitc inspect ${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml -D depth=2 -D gelu=tanh)
set_tests_properties(yaml_define_renames PROPERTIES PASS_REGULAR_EXPRESSION "model: deit_tiny_patch16_224\\.depth-2\\.gelu-tanh\n")
