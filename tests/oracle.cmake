# oracle: the reference interpreter (`deitc run`) against PyTorch float64 oracle cases
# (tests/data/<case>/, made by ../shared/tools/deit_ref.py): logits within 1e-4; after 3 AdamW
# steps, every gradient of step 1 and the losses within 1e-4, the weights within 5e-3, and the
# weights' changes (small next to the weights) within 5e-3 (measured worst 1.3e-3), by tensor
# class: a qkv bias's query and value thirds like the rest, its key third on its own terms: its
# gradient is exactly zero (softmax ignores a shift shared by all keys), so Adam moves it by up to
# lr a step in the sign of rounding noise, in PyTorch's float32 too: |change| <= 3 steps * lr.
add_executable(st_compare ${CMAKE_CURRENT_SOURCE_DIR}/tools/st_compare.c)
target_link_libraries(st_compare PRIVATE deitc_rt m)

function(deitc_oracle_case name)
  set(defs ${ARGN})
  set(dir ${DEITC_TESTDATA}/${name})
  set(common -DDEITC=$<TARGET_FILE:deitc> -DCOMPARE=$<TARGET_FILE:st_compare>)
  set(model ${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml)
  add_test(NAME oracle_${name}_logits COMMAND ${CMAKE_COMMAND} ${common}
    "-DRUN=run;${model};${defs};--weights;${dir}/init.safetensors;--input;${dir}/batch.safetensors"
    "-DCHECKS=${dir}/expected.safetensors|1e-4|logits"
    -P ${CMAKE_CURRENT_SOURCE_DIR}/tools/run_and_compare.cmake)
  add_test(NAME oracle_${name}_train COMMAND ${CMAKE_COMMAND} ${common}
    "-DRUN=run;${model};${defs};--weights;${dir}/init.safetensors;--input;${dir}/batch.safetensors;--steps;3;--lr;1e-3;--weight-decay;0.05;--grads"
    "-DCHECKS=${dir}/expected.safetensors|1e-4|losses;${dir}/expected.safetensors|1e-4|grad.*;${dir}/after_steps.safetensors|5e-3|*;${dir}/after_steps.safetensors|5e-3|*|${dir}/init.safetensors|3e-3"
    -P ${CMAKE_CURRENT_SOURCE_DIR}/tools/run_and_compare.cmake)
  set_tests_properties(oracle_${name}_logits oracle_${name}_train PROPERTIES LABELS oracle)
endfunction()

deitc_oracle_case(deit_micro -D img_size=32 -D patch_size=8 -D num_classes=10 -D embed_dim=64 -D depth=2 -D num_heads=2)
# head dim 16, 3 blocks, 7 classes, image 48
deitc_oracle_case(deit_img48_h3_d3 -D img_size=48 -D patch_size=16 -D num_classes=7 -D embed_dim=48 -D depth=3 -D num_heads=3)
# head dim 8, 1 block, 3 classes, image 24, patch 6
deitc_oracle_case(deit_img24_h5_d1 -D img_size=24 -D patch_size=6 -D num_classes=3 -D embed_dim=40 -D depth=1 -D num_heads=5)

# --precision tf32 in the interpreter (operands of every matmul rounded to TF32, nearest even):
# logits within 3e-3 (measured 7.7e-4) and the 3 steps' losses within 1e-3 (measured 9.4e-5) of
# the float64 oracle; `deitc dump --after precision` marks every matmul compute=tf32 and none
# stays without (the grep -v count of matmul lines without it is 0)
set(micro_dir ${DEITC_TESTDATA}/deit_micro)
set(micro_defs -D img_size=32 -D patch_size=8 -D num_classes=10 -D embed_dim=64 -D depth=2 -D num_heads=2)
string(REPLACE ";" " " micro_defs_sh "${micro_defs}")
add_test(NAME oracle_deit_micro_tf32_logits COMMAND ${CMAKE_COMMAND} -DDEITC=$<TARGET_FILE:deitc> -DCOMPARE=$<TARGET_FILE:st_compare>
  "-DRUN=run;${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml;${micro_defs};--precision;tf32;--weights;${micro_dir}/init.safetensors;--input;${micro_dir}/batch.safetensors"
  "-DCHECKS=${micro_dir}/expected.safetensors|3e-3|logits"
  -P ${CMAKE_CURRENT_SOURCE_DIR}/tools/run_and_compare.cmake)
add_test(NAME oracle_deit_micro_tf32_train COMMAND ${CMAKE_COMMAND} -DDEITC=$<TARGET_FILE:deitc> -DCOMPARE=$<TARGET_FILE:st_compare>
  "-DRUN=run;${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml;${micro_defs};--precision;tf32;--weights;${micro_dir}/init.safetensors;--input;${micro_dir}/batch.safetensors;--steps;3;--lr;1e-3;--weight-decay;0.05"
  "-DCHECKS=${micro_dir}/expected.safetensors|1e-3|losses"
  -P ${CMAKE_CURRENT_SOURCE_DIR}/tools/run_and_compare.cmake)
add_test(NAME cli_dump_tf32
  COMMAND sh -c "o=$(\"$0\" dump \"$1\" ${micro_defs_sh} --precision tf32 --fuse none --after precision) && echo \"$o\" | grep -q '# after precision: precision tf32' && n=$(echo \"$o\" | grep -c ' = matmul(.* compute=tf32') && [ $n -gt 30 ] && [ $(echo \"$o\" | grep ' = matmul(' | grep -vc 'compute=tf32') -eq 0 ] && o=$(\"$0\" dump \"$1\" ${micro_defs_sh} --after precision) && ! echo \"$o\" | grep -q compute=tf32 && echo \"tf32 matmuls: $n\""
  $<TARGET_FILE:deitc> ${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml)
set_tests_properties(oracle_deit_micro_tf32_logits oracle_deit_micro_tf32_train cli_dump_tf32 PROPERTIES LABELS oracle)
set_tests_properties(cli_dump_tf32 PROPERTIES PASS_REGULAR_EXPRESSION "tf32 matmuls: [0-9]+")
