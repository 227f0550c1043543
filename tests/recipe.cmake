# recipe: the training recipe's run-time side (issue 17): run-time options (label smoothing,
# clipping, betas, lr schedule) against the compiled-in ones bit for bit, validation over every
# image (top-1/top-5 against a count from the interpreter's logits), summary.csv, --save-best,
# checkpoint refusals, SIGINT/SIGTERM mid-epoch and the resumed run byte-identical.
add_executable(test_recipe ${CMAKE_CURRENT_SOURCE_DIR}/runtime/test_recipe.c)
target_link_libraries(test_recipe PRIVATE deitc_rt m)
add_test(NAME recipe_runtime COMMAND test_recipe $<TARGET_FILE:deitc> ${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml
         ${CMAKE_SOURCE_DIR}/tests/data/image_folder/train)
set_tests_properties(recipe_runtime PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS "recipe;runtime" TIMEOUT 300)

# fine-tuning against timm: a 1000-class, 6x6-grid timm checkpoint into a 10-class, 4x4-grid
# emu executable (head re-initialized, pos_embed resampled as resample_abs_pos_embed), the saved
# weights loaded by timm with strict=True (DEITC_TORCH_PYTHON, else /usr/bin/python3, with torch
# and timm; skips, 77, without them).
add_test(NAME recipe_finetune_timm COMMAND sh -c "exec \"\${DEITC_TORCH_PYTHON:-/usr/bin/python3}\" \"$0\" \"$@\""
         ${CMAKE_CURRENT_LIST_DIR}/runtime/check_finetune.py ${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml)
set_tests_properties(recipe_finetune_timm PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" SKIP_RETURN_CODE 77
                     LABELS "recipe;nosan" TIMEOUT 300)

# the recipe end to end: a generated ImageFolder (JPEG and PNG of mixed sizes, one truncated
# JPEG: refused, named), 2 epochs of --aug deit, mixup/cutmix, drop path and EMA validated each
# epoch (counts and top-1/top-5 checked against the interpreter's logits), SIGINT mid-epoch and
# the resumed run byte-identical (weights and EMA)
add_executable(test_recipe_e2e ${CMAKE_CURRENT_SOURCE_DIR}/runtime/test_recipe_e2e.c)
target_link_libraries(test_recipe_e2e PRIVATE deitc_exe deitc_rt m)
add_test(NAME recipe_e2e COMMAND test_recipe_e2e $<TARGET_FILE:deitc> ${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml)
set_tests_properties(recipe_e2e PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS "recipe;runtime" TIMEOUT 300)
add_test(NAME recipe_cli_bad COMMAND deitc compile ${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml --recipe timm -o never)
set_tests_properties(recipe_cli_bad PROPERTIES LABELS recipe PASS_REGULAR_EXPRESSION "--recipe expects deit, got 'timm'")
