# The safetensors reader under fuzzing: replayed over the oracle files plus deterministic
# mutations with any compiler; with clang and -DDEITC_FUZZ=ON, libFuzzer for 20 s.
set(ST_FUZZ_SEEDS ${DEITC_TESTDATA}/deit_img24_h5_d1)
add_executable(fuzz_safetensors_replay ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_safetensors.c
               ${CMAKE_CURRENT_LIST_DIR}/fuzz/replay_main.c)
target_link_libraries(fuzz_safetensors_replay PRIVATE deitc_rt m)
add_test(NAME safetensors_fuzz_replay COMMAND fuzz_safetensors_replay --mutations 300 ${ST_FUZZ_SEEDS})
set_tests_properties(safetensors_fuzz_replay PROPERTIES LABELS fuzz)
if(DEITC_FUZZ AND CMAKE_C_COMPILER_ID MATCHES "Clang")
  add_executable(fuzz_safetensors ${CMAKE_CURRENT_LIST_DIR}/fuzz/fuzz_safetensors.c
                 ${CMAKE_SOURCE_DIR}/runtime/safetensors.c ${CMAKE_SOURCE_DIR}/runtime/common.c
                 ${CMAKE_SOURCE_DIR}/runtime/input.c ${CMAKE_SOURCE_DIR}/runtime/json.c
                 ${CMAKE_SOURCE_DIR}/runtime/checksum.c ${CMAKE_SOURCE_DIR}/runtime/output.c)
  target_compile_options(fuzz_safetensors PRIVATE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)
  target_link_options(fuzz_safetensors PRIVATE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)
  add_test(NAME safetensors_fuzz
           COMMAND sh -c "d=$(mktemp -d) && \"$0\" -max_total_time=20 -timeout=10 -rss_limit_mb=2048 -artifact_prefix=$d/ $d \"$@\"; r=$?; ls $d/crash-* $d/leak-* $d/timeout-* 2>/dev/null; rm -rf $d; exit $r"
                   $<TARGET_FILE:fuzz_safetensors> ${ST_FUZZ_SEEDS})
  set_tests_properties(safetensors_fuzz PROPERTIES LABELS fuzz)
endif()
