# codegen: schedule + memory plan invariants, NVRTC compiles of every kernel (sm_80, sm_90, no
# spills), byte-identical output, error messages, and emu executables trained end to end
# against the PyTorch oracle and the interpreter (tests/codegen/test_codegen.c says how).
add_executable(test_codegen ${CMAKE_CURRENT_SOURCE_DIR}/codegen/test_codegen.c)
target_link_libraries(test_codegen PRIVATE deitc_codegen deitc_passes deitc_frontend deitc_ir deitc_rt ${CMAKE_DL_LIBS} m)
add_dependencies(test_codegen deitc)

set(CG_MICRO -D img_size=32 -D patch_size=8 -D num_classes=10 -D embed_dim=64 -D depth=2 -D num_heads=2)
add_test(NAME codegen_plan COMMAND test_codegen plan)
add_test(NAME codegen_nvrtc COMMAND test_codegen nvrtc deit_tiny deit_small deit_base)
# the other precisions' kernels (fp32's are tf32's: only the GEMMs' compute type differs)
add_test(NAME codegen_nvrtc_bf16 COMMAND test_codegen nvrtc --precision bf16 deit_tiny deit_small deit_base)
add_test(NAME codegen_nvrtc_tf32 COMMAND test_codegen nvrtc --precision tf32 deit_tiny deit_small deit_base)
add_test(NAME codegen_identical COMMAND test_codegen identical)
add_test(NAME codegen_errors COMMAND test_codegen errors)
add_test(NAME codegen_emu_micro COMMAND test_codegen emu deit_micro ${CG_MICRO})
add_test(NAME codegen_emu_img48 COMMAND test_codegen emu deit_img48_h3_d3
  -D img_size=48 -D patch_size=16 -D num_classes=7 -D embed_dim=48 -D depth=3 -D num_heads=3)
add_test(NAME codegen_emu_img24 COMMAND test_codegen emu deit_img24_h5_d1
  -D img_size=24 -D patch_size=6 -D num_classes=3 -D embed_dim=40 -D depth=1 -D num_heads=5)
add_test(NAME codegen_emu_smoothing_clip COMMAND test_codegen emu_vs_run --label-smoothing 0.1 --clip-grad 0.5)
add_test(NAME codegen_emu_big COMMAND test_codegen emu_big)
add_test(NAME codegen_emu_ln_stats COMMAND test_codegen ln_stats)
add_test(NAME codegen_fuse COMMAND test_codegen fuse)
set(CG_TESTS codegen_emu_ln_stats codegen_fuse codegen_emu_big codegen_plan codegen_nvrtc codegen_nvrtc_bf16 codegen_nvrtc_tf32
  codegen_identical codegen_errors codegen_emu_micro
  codegen_emu_img48 codegen_emu_img24 codegen_emu_smoothing_clip)
set_tests_properties(${CG_TESTS} PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS codegen)
set_tests_properties(codegen_nvrtc codegen_nvrtc_bf16 codegen_nvrtc_tf32 PROPERTIES SKIP_RETURN_CODE 77)

# the qkv-attention fusion end to end: fused vs unfused emu EXEs (deit_micro; N = 26, not a
# multiple of any tile), two runs byte-identical (tests/codegen/test_attention_e2e.c)
add_executable(test_attention_e2e ${CMAKE_CURRENT_SOURCE_DIR}/codegen/test_attention_e2e.c)
target_link_libraries(test_attention_e2e PRIVATE deitc_rt m)
add_dependencies(test_attention_e2e deitc)
add_test(NAME attention_e2e_micro COMMAND test_attention_e2e micro)
add_test(NAME attention_e2e_odd COMMAND test_attention_e2e odd)
set_tests_properties(attention_e2e_micro attention_e2e_odd PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS codegen)

# the step statistics and cost model on a hand-counted plan; the --stats lines of inspect
add_executable(test_stats ${CMAKE_CURRENT_SOURCE_DIR}/codegen/test_stats.c)
target_link_libraries(test_stats PRIVATE deitc_codegen deitc_passes deitc_ir deitc_rt ${CMAKE_DL_LIBS} m)
add_test(NAME codegen_stats COMMAND test_stats)
add_test(NAME codegen_stats_cli COMMAND deitc inspect ${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml --batch 256 --stats
  --model-gpu a100)
set_tests_properties(codegen_stats_cli PROPERTIES PASS_REGULAR_EXPRESSION
  "launches per step: 401\nGEMM calls per step: 149\nFLOPs per step: [0-9]+\n.*bytes per step: [0-9]+\n.*modeled images/s \\(a100\\): [0-9]+\n")
add_test(NAME codegen_stats_bad_gpu COMMAND deitc inspect ${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml --stats --model-gpu v100)
set_tests_properties(codegen_stats_bad_gpu PROPERTIES PASS_REGULAR_EXPRESSION "--model-gpu v100: unknown GPU \\(known: h100, h200, a100\\)")
set_tests_properties(codegen_stats codegen_stats_cli codegen_stats_bad_gpu PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS codegen)

# benchmarks/fusion end to end on DeiT-Ti (the modeled columns; a refused precision is listed
# with deitc's message; --measure no: the measured columns are said to need a GPU)
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  add_test(NAME benchmark_fusion COMMAND ${Python3_EXECUTABLE} ${CMAKE_SOURCE_DIR}/benchmarks/fusion
    --deitc $<TARGET_FILE:deitc> --models deit_tiny --precisions fp32,fp8 --measure no)
  set_tests_properties(benchmark_fusion PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS codegen TIMEOUT 60
    PASS_REGULAR_EXPRESSION "deit_tiny +256 fp32 none +878 +221 +[0-9]+ +[0-9]+ +[0-9.]+ +[0-9]+ +[0-9.]+% +1.000 +1.000 +1.000\n.*deit_tiny +256 fp32 bias-gelu +866 +221 .*deit_tiny +256 fp32 elementwise-chain +842 +221 .*deit_tiny +256 fp32 bias-gelu-grad +866 +221 .*deit_tiny +256 fp32 bias-grad +855 +221 .*deit_tiny +256 fp32 residual-layer-norm +853 +221 .*deit_tiny +256 fp32 layer-norm-dbeta +828 +221 .*deit_tiny +256 fp32 qkv-attention +722 +149 .*deit_tiny +256 fp32 residual-layer-norm-grad +854 +221 .*deit_tiny +256 fp32 select-token-layer-norm +877 +221 .*deit_tiny +256 fp32 softmax-cross-entropy +877 +221 .*deit_tiny +256 fp32 all +401 +149 .* 0.457 .*refused: deit_tiny fp8: --precision fp8: unknown.*measured columns .* need a GPU")
endif()

# the bias-gradient fusions (bias-gelu-grad, bias-grad): chain and launch counts on a DeiT-micro
# step; fused and unfused emu EXEs agree after 3 steps on deit_micro and a two-pass size
add_executable(test_fuse_grad ${CMAKE_CURRENT_SOURCE_DIR}/codegen/test_fuse_grad.c)
target_link_libraries(test_fuse_grad PRIVATE deitc_codegen deitc_passes deitc_frontend deitc_ir deitc_rt ${CMAKE_DL_LIBS} m)
add_dependencies(test_fuse_grad deitc)
add_test(NAME codegen_fuse_grad_count COMMAND test_fuse_grad count)
add_test(NAME codegen_fuse_grad_micro COMMAND test_fuse_grad emu_micro)
add_test(NAME codegen_fuse_grad_own COMMAND test_fuse_grad emu_own)
# gelu-epilogue: a tanh-GELU model's GEMM epilogues (GELU_AUX_BIAS, DGELU_BGRAD) in the emu and
# cuda plans, fused = unfused on emu; and the fused emu EXE against the interpreter
add_test(NAME codegen_fuse_gelu_tanh COMMAND test_fuse_grad tanh)
# select-token-layer-norm: the final LayerNorm on the head's token rows (deit_tiny, distilled),
# the interpreter's bits unchanged
add_test(NAME codegen_fuse_select_token COMMAND test_fuse_grad select)
add_test(NAME codegen_emu_gelu_tanh COMMAND test_codegen emu_vs_run -D gelu=tanh)
set_tests_properties(codegen_fuse_grad_count codegen_fuse_grad_micro codegen_fuse_grad_own codegen_fuse_gelu_tanh
  codegen_fuse_select_token
  codegen_emu_gelu_tanh PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS codegen)
