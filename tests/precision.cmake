# precision: the fp16/bf16 casting pass (passes/precision.c) end to end.
#
# The interpreter (`deitc run --precision P`, every value rounded to its node's dtype on store)
# against the PyTorch float64 oracle cases: deit_micro (head dim 32, 17 tokens), img48_h3_d3
# (head dim 16, 10 tokens), img24_h5_d1 (head dim 8, 17 tokens) and img24_h1_d1 (head dim 64,
# 10 tokens). Gradients are compared without loss scaling (--loss-scale none), the losses
# also under the default (dynamic for fp16). fp16: logits within 1e-2, the 3 steps' losses within 2e-2, step 1's gradients
# within 1e-2; bf16: 3e-2, 5e-2 and 5e-2. Measured worst over the four cases (logits, losses,
# grads): fp16 8.7e-4, 1.1e-4, 1.5e-3; bf16 1.15e-2, 2.2e-3, 1.4e-2.
set(prec_model ${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml)
function(deitc_precision_case name precision tol_logits tol_losses tol_grads)
  set(defs ${ARGN})
  set(dir ${DEITC_TESTDATA}/${name})
  set(common -DDEITC=$<TARGET_FILE:deitc> -DCOMPARE=$<TARGET_FILE:st_compare>)
  add_test(NAME oracle_${name}_${precision}_logits COMMAND ${CMAKE_COMMAND} ${common}
    "-DRUN=run;${prec_model};${defs};--precision;${precision};--weights;${dir}/init.safetensors;--input;${dir}/batch.safetensors"
    "-DCHECKS=${dir}/expected.safetensors|${tol_logits}|logits"
    -P ${CMAKE_CURRENT_SOURCE_DIR}/tools/run_and_compare.cmake)
  add_test(NAME oracle_${name}_${precision}_train COMMAND ${CMAKE_COMMAND} ${common}
    "-DRUN=run;${prec_model};${defs};--precision;${precision};--weights;${dir}/init.safetensors;--input;${dir}/batch.safetensors;--steps;3;--lr;1e-3;--weight-decay;0.05;--grads;--loss-scale;none"
    "-DCHECKS=${dir}/expected.safetensors|${tol_losses}|losses;${dir}/expected.safetensors|${tol_grads}|grad.*"
    -P ${CMAKE_CURRENT_SOURCE_DIR}/tools/run_and_compare.cmake)
  # the same steps under the precision's default loss scaling (dynamic for fp16: --grads would be
  # the scaled gradients, so the losses alone)
  add_test(NAME oracle_${name}_${precision}_train_scaled COMMAND ${CMAKE_COMMAND} ${common}
    "-DRUN=run;${prec_model};${defs};--precision;${precision};--weights;${dir}/init.safetensors;--input;${dir}/batch.safetensors;--steps;3;--lr;1e-3;--weight-decay;0.05"
    "-DCHECKS=${dir}/expected.safetensors|${tol_losses}|losses"
    -P ${CMAKE_CURRENT_SOURCE_DIR}/tools/run_and_compare.cmake)
  set_tests_properties(oracle_${name}_${precision}_logits oracle_${name}_${precision}_train
    oracle_${name}_${precision}_train_scaled PROPERTIES LABELS "oracle;precision")
endfunction()
foreach(p fp16 bf16)
  if(p STREQUAL "fp16")
    set(t 1e-2 2e-2 1e-2)
  else()
    set(t 3e-2 5e-2 5e-2)
  endif()
  deitc_precision_case(deit_micro ${p} ${t} -D img_size=32 -D patch_size=8 -D num_classes=10 -D embed_dim=64 -D depth=2 -D num_heads=2)
  deitc_precision_case(deit_img48_h3_d3 ${p} ${t} -D img_size=48 -D patch_size=16 -D num_classes=7 -D embed_dim=48 -D depth=3 -D num_heads=3)
  deitc_precision_case(deit_img24_h5_d1 ${p} ${t} -D img_size=24 -D patch_size=6 -D num_classes=3 -D embed_dim=40 -D depth=1 -D num_heads=5)
  deitc_precision_case(deit_img24_h1_d1 ${p} ${t} -D img_size=24 -D patch_size=8 -D num_classes=6 -D embed_dim=64 -D depth=1 -D num_heads=1)
endforeach()

# the emu executable against the interpreter and the oracle (tests/runtime/test_mixed.c)
add_executable(test_rt_mixed ${CMAKE_CURRENT_SOURCE_DIR}/runtime/test_mixed.c)
target_link_libraries(test_rt_mixed PRIVATE deitc_rt m)
add_test(NAME rt_micro_fp16 COMMAND test_rt_mixed fp16)
add_test(NAME rt_micro_bf16 COMMAND test_rt_mixed bf16)
add_test(NAME rt_hd64_fp16 COMMAND test_rt_mixed fp16 hd64)
set_tests_properties(rt_micro_fp16 rt_micro_bf16 rt_hd64_fp16 PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS "runtime;precision")

# `deitc dump --after precision` of DeiT-Ti: no cast is left (every one is a store dtype), every
# matmul has 16-bit operands, and each of its 51 matrix weights (and cls_token) has a 16-bit copy
# that its adamw writes (a sixth input); the loss, the logits and every grad.* stay f32. (At
# batch 1 two casts remain: head.bias's and pos_embed's gradients are then no reductions but
# views of values that 16-bit operands read too, and a value has one store dtype.)
foreach(p fp16 bf16)
  if(p STREQUAL "fp16")
    set(h f16)
  else()
    set(h bf16)
  endif()
  add_test(NAME cli_dump_${p}_casts
    COMMAND sh -c "o=$(\"$0\" dump \"$1\" --batch 2 --precision $2 --after precision) && echo \"$o\" | grep -q \"# after precision: precision $2\" && [ $(echo \"$o\" | grep -c ' = cast(') -eq 0 ] && m=$(echo \"$o\" | grep -c ' = matmul(') && [ $m -gt 100 ] && [ $(echo \"$o\" | grep ' = matmul(' | grep -c 'compute=') -eq 0 ] && c=$(echo \"$o\" | grep -c \" = state $3.*  $3\\.\") && [ $c -eq 51 ] && [ $(echo \"$o\" | grep -c ' = adamw(%[0-9]*, %[0-9]*, %[0-9]*, %[0-9]*, %[0-9]*, %[0-9]*) f32') -eq $c ] && [ $(echo \"$o\" | grep -E ' -> (loss|logits|grad\\.)' | grep -vc ' f32\\[') -eq 0 ] && echo \"$2: $m matmuls, $c weight copies, no casts\""
    $<TARGET_FILE:deitc> ${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml ${p} ${h})
  set_tests_properties(cli_dump_${p}_casts PROPERTIES LABELS precision PASS_REGULAR_EXPRESSION "${p}: [0-9]+ matmuls, 51 weight copies, no casts")
endforeach()

# --precision defaults to the target's: fp16 for cuda (compile's, inspect's and dump's default
# target), fp32 for emu; run's target is emu (its default output is fp32's, byte for byte;
# --target cuda gives fp16's)
set(micro_dir ${DEITC_TESTDATA}/deit_micro)
add_test(NAME cli_precision_defaults
  COMMAND sh -c "set -e; d=$(mktemp -d); trap 'rm -rf \"$d\"' EXIT; M='-D img_size=32 -D patch_size=8 -D num_classes=10 -D embed_dim=64 -D depth=2 -D num_heads=2'; \"$0\" inspect \"$1\" $M --batch 2 | grep -q 'precision fp16,'; \"$0\" inspect \"$1\" $M --batch 2 --target emu | grep -q 'precision fp32,'; \"$0\" inspect \"$1\" $M --batch 2 --target cuda --precision bf16 | grep -q 'precision bf16,'; \"$0\" dump \"$1\" $M --after precision | grep -q '# after precision: precision fp16'; \"$0\" dump \"$1\" $M --after precision --target emu | grep -q '# after precision: precision fp32'; for o in '' '--precision fp32' '--target cuda' '--precision fp16'; do \"$0\" run \"$1\" $M --weights \"$2/init.safetensors\" --input \"$2/batch.safetensors\" $o -o \"$d/l$(echo $o | tr -d ' -').st\"; done; cmp -s \"$d/l.st\" \"$d/lprecisionfp32.st\"; cmp -s \"$d/ltargetcuda.st\" \"$d/lprecisionfp16.st\"; ! cmp -s \"$d/l.st\" \"$d/ltargetcuda.st\"; \"$0\" compile \"$1\" $M --batch 2 --target emu --emit-dir \"$d/e\" -o \"$d/x\" >/dev/null; grep -q '.precision = \"fp32\"' \"$d/e/plan.c\"; ! \"$0\" inspect \"$1\" --target tpu 2>\"$d/err\"; grep -q \"unknown --target 'tpu'\" \"$d/err\"; echo defaults ok"
  $<TARGET_FILE:deitc> ${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml ${micro_dir})
set_tests_properties(cli_precision_defaults PROPERTIES LABELS precision PASS_REGULAR_EXPRESSION "defaults ok")
