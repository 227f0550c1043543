# runtime: the training executable's runtime (deitc_exe) without the code generator: the CPU
# GEMM against a naive one, and a hand-written plan (tests/runtime/tiny_plan.c) linked into an
# emu executable and a cuda one, driven end to end by test_exe.
add_executable(test_rt_gemm ${CMAKE_CURRENT_SOURCE_DIR}/runtime/test_gemm.c)
target_link_libraries(test_rt_gemm PRIVATE deitc_exe deitc_rt m)
add_test(NAME rt_gemm COMMAND test_rt_gemm)
add_test(NAME rt_gemm_generic COMMAND test_rt_gemm)
set_tests_properties(rt_gemm PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}")
set_tests_properties(rt_gemm_generic PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV};DEITC_GEMM_GENERIC=1")

add_executable(rt_tiny_emu ${CMAKE_CURRENT_SOURCE_DIR}/runtime/tiny_plan.c)
target_link_libraries(rt_tiny_emu PRIVATE deitc_exe deitc_rt m)
add_executable(rt_tiny_cuda ${CMAKE_CURRENT_SOURCE_DIR}/runtime/tiny_plan.c)
target_compile_definitions(rt_tiny_cuda PRIVATE TINY_CUDA=1)
target_link_libraries(rt_tiny_cuda PRIVATE deitc_exe deitc_rt m)

add_executable(test_rt_exe ${CMAKE_CURRENT_SOURCE_DIR}/runtime/test_exe.c)
target_link_libraries(test_rt_exe PRIVATE deitc_exe deitc_rt m)
add_test(NAME rt_exe COMMAND test_rt_exe $<TARGET_FILE:rt_tiny_emu> $<TARGET_FILE:rt_tiny_cuda>)
set_tests_properties(rt_exe PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}")

# the runtime with a generated plan: deitc compile --target emu of deit_micro vs the oracle
add_executable(test_rt_micro ${CMAKE_CURRENT_SOURCE_DIR}/runtime/test_micro.c)
target_link_libraries(test_rt_micro PRIVATE deitc_rt m)
add_test(NAME rt_micro_oracle COMMAND test_rt_micro)
add_test(NAME rt_micro_tf32 COMMAND test_rt_micro tf32)
set_tests_properties(rt_micro_oracle rt_micro_tf32 PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}")

# loss scaling (tests/runtime/test_loss_scale.c): one emu executable of deit_micro built with
# --loss-scale dynamic (the fixture), then skipped steps, growth, resume and the interpreter on it;
# a plain executable against it under --loss-scale none
add_executable(test_loss_scale ${CMAKE_CURRENT_SOURCE_DIR}/runtime/test_loss_scale.c)
target_link_libraries(test_loss_scale PRIVATE deitc_rt m)
set(LS_EXE ${CMAKE_CURRENT_BINARY_DIR}/loss_scale_micro)
add_test(NAME loss_scale_build COMMAND deitc compile ${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml -D img_size=32
  -D patch_size=8 -D depth=2 -D num_classes=10 -D embed_dim=64 -D num_heads=2 --batch 4 --target emu
  --loss-scale dynamic -o ${LS_EXE})
set_tests_properties(loss_scale_build PROPERTIES FIXTURES_SETUP loss_scale_exe)
add_test(NAME loss_scale_emu COMMAND test_loss_scale emu ${LS_EXE})
add_test(NAME loss_scale_plain COMMAND test_loss_scale plain ${LS_EXE})
set_tests_properties(loss_scale_emu loss_scale_plain PROPERTIES FIXTURES_REQUIRED loss_scale_exe)
set_tests_properties(loss_scale_build loss_scale_emu loss_scale_plain PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}"
  LABELS runtime)

# the cuda device layer on the host: the tiny plan built for cuda, run against fake_cuda.c
# (a stand-in libcuda + cuBLASLt) where the CUDA headers exist
set(RT_FAKE_CUDA_INCLUDE "")
foreach(d ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include)
  if(NOT RT_FAKE_CUDA_INCLUDE AND EXISTS "${d}/cublasLt.h" AND EXISTS "${d}/cuda.h")
    set(RT_FAKE_CUDA_INCLUDE ${d})
  endif()
endforeach()
if(RT_FAKE_CUDA_INCLUDE)
  add_library(rt_fake_cuda MODULE ${CMAKE_CURRENT_SOURCE_DIR}/runtime/fake_cuda.c)
  target_include_directories(rt_fake_cuda PRIVATE ${RT_FAKE_CUDA_INCLUDE})
  target_link_libraries(rt_fake_cuda PRIVATE ${CMAKE_DL_LIBS})
  add_executable(rt_tiny_fake ${CMAKE_CURRENT_SOURCE_DIR}/runtime/tiny_plan.c)
  target_compile_definitions(rt_tiny_fake PRIVATE TINY_CUDA=1 TINY_FAKE=1)
  set_target_properties(rt_tiny_fake PROPERTIES ENABLE_EXPORTS ON)
  target_link_libraries(rt_tiny_fake PRIVATE deitc_exe deitc_rt m)
  set_tests_properties(rt_exe PROPERTIES ENVIRONMENT
    "${DEITC_TEST_ENV};RT_FAKE_EXE=$<TARGET_FILE:rt_tiny_fake>;RT_FAKE_LIB=$<TARGET_FILE:rt_fake_cuda>")
endif()
add_executable(test_rt_cuda_gemm ${CMAKE_CURRENT_SOURCE_DIR}/runtime/test_cuda_gemm.c)
target_link_libraries(test_rt_cuda_gemm PRIVATE deitc_exe deitc_rt m ${CMAKE_DL_LIBS})
add_test(NAME rt_cuda_gemm_fake COMMAND test_rt_cuda_gemm)
if(RT_FAKE_CUDA_INCLUDE)
  set_tests_properties(rt_cuda_gemm_fake PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV};RT_FAKE_LIB=$<TARGET_FILE:rt_fake_cuda>")
else()
  set_tests_properties(rt_cuda_gemm_fake PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}")
endif()
set_tests_properties(rt_gemm rt_gemm_generic rt_exe rt_micro_oracle rt_micro_tf32 rt_cuda_gemm_fake PROPERTIES LABELS runtime)

# --help after a command (deitc compile --help, EXE train --help) prints the usage on stdout and
# exits 0; the usage names the command asked about
add_test(NAME cli_help
  COMMAND sh -c "o=$(\"$0\" compile --help) && echo \"$o\" | grep -q 'deitc compile MODEL' && o=$(\"$1\" train --help) && echo \"$o\" | grep -q 'train \\[--init' && o=$(\"$1\" -h) && echo \"$o\" | grep -q 'bench \\[--steps' && ! \"$1\" train --bogus 2>/dev/null"
  $<TARGET_FILE:deitc> $<TARGET_FILE:rt_tiny_emu>)

# Ctrl-C leaves nothing behind: rt_tmp_track in a child per signal, and a real deitc compile
# stopped by SIGTERM half a second in (well before it can finish) leaves no EXE.tmp.PID beside the
# output and no work folder in TMPDIR
add_executable(test_tmp_cleanup ${CMAKE_CURRENT_SOURCE_DIR}/runtime/test_tmp_cleanup.c)
target_link_libraries(test_tmp_cleanup PRIVATE deitc_rt m)
add_test(NAME rt_tmp_cleanup COMMAND test_tmp_cleanup)
add_test(NAME cli_interrupted_compile
  COMMAND sh -c "d=$(mktemp -d) && mkdir \"$d/tmp\" && TMPDIR=\"$d/tmp\" DEITC_NO_CACHE=1 timeout -s TERM 0.5 \"$0\" compile \"$1\" --target emu -D img_size=32 -D patch_size=8 -D embed_dim=64 -D depth=2 -D num_heads=2 -D num_classes=10 -o \"$d/exe\" >/dev/null 2>&1; r=$?; sleep 0.2; left=$(ls -A \"$d/tmp\"; ls -A \"$d\" | grep -v '^tmp$'); rm -rf \"$d\"; echo \"timeout exit $r, left behind: [$left]\"; [ $r -eq 124 ] && [ -z \"$left\" ]"
  $<TARGET_FILE:deitc> ${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml)
set_tests_properties(rt_tmp_cleanup cli_interrupted_compile PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}")

# Checkpoints: 2 steps + --checkpoint, then --resume to step 5, gives byte-identical weights to
# 5 steps straight (ImageFolder data, batch 4 of 12 images: the resume crosses an epoch and its
# reshuffle; another --steps than the checkpoint's run needs --resume-override); a weights-only
# file, a finished run without --save, and --resume with --init are refused; a finished run's
# checkpoint with --save writes the weights a straight run saves
add_test(NAME exe_checkpoint_resume
  COMMAND sh -c "set -e; d=$(mktemp -d); trap 'rm -rf \"$d\"' EXIT; \"$0\" compile \"$1\" --target emu -D img_size=32 -D patch_size=8 -D embed_dim=32 -D depth=1 -D num_heads=2 -D num_classes=3 --batch 4 -o \"$d/exe\" >/dev/null; cd \"$d\"; ./exe train --data \"$2\" --steps 5 --save straight.st >/dev/null; ./exe train --data \"$2\" --steps 2 --checkpoint c.st --metrics m.jsonl >/dev/null; ! ./exe train --data \"$2\" --steps 5 --resume c.st 2>err.txt; grep -q 'steps 5 (the checkpoint.s run: 2)' err.txt; ./exe train --data \"$2\" --steps 5 --resume c.st --resume-override --save resumed.st --metrics m.jsonl > out.txt; grep -q 'resuming from c.st at step 2' out.txt; cmp straight.st resumed.st; [ $(wc -l < m.jsonl) -eq 5 ]; ! ./exe train --data \"$2\" --steps 5 --resume straight.st 2>err.txt; grep -q \"not a checkpoint: it has no I64 tensor 'checkpoint.step'\" err.txt; ./exe train --data \"$2\" --steps 3 --checkpoint c3.st --checkpoint-every 1 >/dev/null; ! ./exe train --data \"$2\" --steps 3 --resume c3.st 2>err.txt; grep -q 'nothing left to train' err.txt; ./exe train --data \"$2\" --steps 3 --resume c3.st --save w3.st >/dev/null; ./exe train --data \"$2\" --steps 3 --save s3.st >/dev/null; cmp s3.st w3.st; ! ./exe train --data \"$2\" --resume c.st --init straight.st 2>/dev/null; echo checkpoint-resume ok"
  $<TARGET_FILE:deitc> ${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml ${CMAKE_SOURCE_DIR}/tests/data/image_folder/train)
set_tests_properties(exe_checkpoint_resume PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" PASS_REGULAR_EXPRESSION "checkpoint-resume ok")

# eval runs only the plan's forward prefix (through logits and loss), not the backward pass and
# AdamW: `info` reports a prefix shorter than the step; that eval's loss matches the oracle is
# export_init's check
add_test(NAME exe_eval_forward_only
  COMMAND sh -c "set -e; d=$(mktemp -d); trap 'rm -rf \"$d\"' EXIT; \"$0\" compile \"$1\" --target emu -D img_size=32 -D patch_size=8 -D embed_dim=64 -D depth=2 -D num_heads=2 -D num_classes=10 --batch 4 -o \"$d/exe\" >/dev/null; \"$d/exe\" info > \"$d/info.txt\"; n=$(sed -n 's/^steps: \\([0-9]*\\) .*/\\1/p' \"$d/info.txt\"); m=$(sed -n 's/^eval runs steps 1-\\([0-9]*\\) .*/\\1/p' \"$d/info.txt\"); echo \"steps $n, eval $m\"; [ \"$m\" -gt 0 ] && [ \"$m\" -lt \"$n\" ] && echo eval-prefix ok"
  $<TARGET_FILE:deitc> ${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml)
set_tests_properties(exe_eval_forward_only PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" PASS_REGULAR_EXPRESSION "eval-prefix ok")

# --save-dtype fp16|bf16: the trained f32 weights written as F16 / BF16 (no F32 tensor left, under
# 60% of the f32 file's bytes), within their rounding of the f32 save (rel L2 1e-3: f16 keeps
# 2^-11; 5e-3: bf16 keeps 2^-8); --init reads both back (eval's loss within 1% of the f32
# weights'); a bad value and --save-dtype without --save are refused
add_test(NAME exe_save_dtype
  COMMAND sh -c "set -e; d=$(mktemp -d); trap 'rm -rf \"$d\"' EXIT; \"$0\" compile \"$1\" --target emu -D img_size=32 -D patch_size=8 -D embed_dim=32 -D depth=1 -D num_heads=2 -D num_classes=3 --batch 4 -o \"$d/exe\" >/dev/null; cd \"$d\"; ./exe train --data \"$2\" --steps 2 --save f.st >/dev/null; ./exe train --data \"$2\" --steps 2 --save h.st --save-dtype fp16 >/dev/null; ./exe train --data \"$2\" --steps 2 --save b.st --save-dtype bf16 >/dev/null; for x in h b; do head -c 8192 $x.st | grep -q '\"F32\"' && exit 1; done; head -c 8192 h.st | grep -q '\"F16\"'; head -c 8192 b.st | grep -q '\"BF16\"'; [ $(($(stat -c %s h.st) * 10)) -lt $(($(stat -c %s f.st) * 6)) ]; \"$3\" h.st f.st 1e-3 >/dev/null; \"$3\" b.st f.st 5e-3 >/dev/null; ! \"$3\" b.st f.st 1e-6 >/dev/null; lf=$(./exe eval --data \"$2\" --init f.st | sed -n 's/.*\"loss\":\\([0-9.e+-]*\\).*/\\1/p'); for x in h b; do l=$(./exe eval --data \"$2\" --init $x.st | sed -n 's/.*\"loss\":\\([0-9.e+-]*\\).*/\\1/p'); awk -v a=$l -v b=$lf 'BEGIN{d=a-b; if(d<0)d=-d; exit !(b>0 && d<0.01*b)}'; done; ! ./exe train --data \"$2\" --steps 1 --save x.st --save-dtype fp8 2>err.txt; grep -q 'expects fp32, fp16 or bf16' err.txt; ! ./exe train --data \"$2\" --steps 1 --save-dtype fp16 2>err.txt; grep -q 'needs --save' err.txt; echo save-dtype ok"
  $<TARGET_FILE:deitc> ${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml ${CMAKE_SOURCE_DIR}/tests/data/image_folder/train $<TARGET_FILE:st_compare>)
set_tests_properties(exe_save_dtype PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" PASS_REGULAR_EXPRESSION "save-dtype ok" LABELS runtime)
