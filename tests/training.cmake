# training: autodiff (every op's derivative vs finite differences in float64) and the training
# pass (structure, options, the PyTorch oracle cases under tests/data), plus the `deitc run
# --steps` / `deitc dump --after training` command line on bad and good input.
add_executable(test_autodiff ${CMAKE_CURRENT_SOURCE_DIR}/passes/test_autodiff.c)
target_link_libraries(test_autodiff PRIVATE deitc_passes deitc_ir m)
add_test(NAME test_autodiff COMMAND test_autodiff)

add_executable(test_mixup ${CMAKE_CURRENT_SOURCE_DIR}/passes/test_mixup.c ${CMAKE_SOURCE_DIR}/runtime/mixup.c)
target_link_libraries(test_mixup PRIVATE deitc_passes deitc_ir m)
add_test(NAME test_mixup COMMAND test_mixup)
set_tests_properties(test_mixup PROPERTIES LABELS training)
add_executable(test_drop_path ${CMAKE_CURRENT_SOURCE_DIR}/passes/test_drop_path.c ${CMAKE_SOURCE_DIR}/runtime/drop_path.c)
target_link_libraries(test_drop_path PRIVATE deitc_passes deitc_ir m)
add_test(NAME test_drop_path COMMAND test_drop_path)
set_tests_properties(test_drop_path PROPERTIES LABELS training)
# the same against timm's Mixup / SoftTargetCrossEntropy (DEITC_TORCH_PYTHON at test time, else
# /work/venv-torch/bin/python, else python3; skips (77) without torch and timm)
add_test(NAME mixup_timm COMMAND sh -c "p=\${DEITC_TORCH_PYTHON:-/work/venv-torch/bin/python}; [ -x \"$p\" ] || p=python3; exec \"$p\" \"$0\" \"$1\""
         ${CMAKE_CURRENT_SOURCE_DIR}/passes/check_mixup_timm.py $<TARGET_FILE:test_mixup>)
set_tests_properties(mixup_timm PROPERTIES SKIP_RETURN_CODE 77 LABELS "training;timm")

add_executable(test_training ${CMAKE_CURRENT_SOURCE_DIR}/passes/test_training.c)
target_link_libraries(test_training PRIVATE deitc_passes deitc_frontend deitc_ir deitc_rt m)
add_test(NAME test_training COMMAND test_training)

add_executable(test_training_cli ${CMAKE_CURRENT_SOURCE_DIR}/passes/test_training_cli.c)
target_link_libraries(test_training_cli PRIVATE deitc_rt m)
add_test(NAME test_training_cli COMMAND test_training_cli)
add_dependencies(test_training_cli deitc)

set_tests_properties(test_autodiff test_training test_training_cli PROPERTIES
  ENVIRONMENT "${DEITC_TEST_ENV}" LABELS training)

# `deitc run` on odd input: huge --steps, a model too big for the interpreter, unused weights
if(DEITC_SANITIZE)
  set(_cli_run_env "DEITC_SANITIZED=1;ASAN_OPTIONS=allocator_may_return_null=1")
else()
  set(_cli_run_env "DEITC_SANITIZED=0")
endif()
add_test(NAME test_cli_run COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/passes/cli_run.sh)
set_tests_properties(test_cli_run PROPERTIES
  ENVIRONMENT "${DEITC_TEST_ENV};${_cli_run_env}" LABELS training)

# the pipeline: stages and pass options, multi-output nodes (interpreter, verifier, printer,
# memory plan) and the named fusions (layer-norm-stats keeps the answer, adamw-group groups)
add_executable(test_pipeline ${CMAKE_CURRENT_SOURCE_DIR}/passes/test_pipeline.c)
target_link_libraries(test_pipeline PRIVATE deitc_passes deitc_frontend deitc_ir deitc_rt m)
add_test(NAME test_pipeline COMMAND test_pipeline)
set_tests_properties(test_pipeline PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS training)

# the pass options on the command line: dump after the schedule unfused (the cuda default, fp16),
# inspect with both
add_test(NAME cli_dump_schedule COMMAND deitc dump ${CMAKE_SOURCE_DIR}/models/deit_small.yaml --after schedule --fuse none)
set_tests_properties(cli_dump_schedule PROPERTIES LABELS training
  PASS_REGULAR_EXPRESSION "# after schedule: precision fp16, fusions none\n# schedule: [0-9]+ steps")
add_test(NAME cli_inspect_pass_options COMMAND deitc inspect ${CMAKE_SOURCE_DIR}/models/deit_small.yaml
  --precision fp32 --fuse all --batch 2)
set_tests_properties(cli_inspect_pass_options PROPERTIES LABELS training
  PASS_REGULAR_EXPRESSION "training step: batch 2, precision fp32, fusions adamw-group,bias-gelu,elementwise-chain,bias-gelu-grad,bias-grad,gelu-epilogue,residual-layer-norm,layer-norm-dbeta,qkv-attention,residual-layer-norm-grad,select-token-layer-norm,softmax-cross-entropy, [0-9]+ nodes\nplan per step: [0-9]+ steps")

# the qkv-attention fusion: patterns, the YAML and ONNX models, fused = unfused (f64 interpreter)
add_executable(test_fusion_attention ${CMAKE_CURRENT_SOURCE_DIR}/passes/test_fusion_attention.c)
target_link_libraries(test_fusion_attention PRIVATE deitc_passes deitc_frontend deitc_ir deitc_rt m)
add_test(NAME test_fusion_attention COMMAND test_fusion_attention)
set_tests_properties(test_fusion_attention PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS training)

# --loss-scale: the scaler's nodes in the training step; its options checked before any work
add_test(NAME cli_dump_loss_scale COMMAND deitc dump ${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml -D depth=1 --batch 2
  --after training --loss-scale dynamic --loss-scale-interval 100)
set_tests_properties(cli_dump_loss_scale PROPERTIES LABELS training
  PASS_REGULAR_EXPRESSION "state f32\\[7\\]  loss_scaler.*slice\\(%[0-9]+\\) f32\\[1\\] axis=0 range=\\[0,1\\)  loss.seed.*loss_scale_opt\\(.*loss_scale_update\\(")
add_test(NAME cli_loss_scale_interval_alone COMMAND deitc compile ${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml
  --loss-scale-interval 5 -o never_written)
add_test(NAME cli_loss_scale_bad COMMAND deitc run ${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml --loss-scale 1e39
  --input x.safetensors -o y.safetensors --steps 1)
set_tests_properties(cli_loss_scale_interval_alone PROPERTIES LABELS training
  PASS_REGULAR_EXPRESSION "--loss-scale-interval needs --loss-scale dynamic")
set_tests_properties(cli_loss_scale_bad PROPERTIES LABELS training
  PASS_REGULAR_EXPRESSION "--loss-scale expects none, dynamic or a static scale \\(a decimal number > 0, at most 3.4e38\\), got '1e39'")
