# recipe: the training recipe's run-time side (issue 17): run-time options (label smoothing,
# clipping, betas, lr schedule) against the compiled-in ones bit for bit, validation over every
# image (top-1/top-5 against a count from the interpreter's logits), summary.csv, --save-best,
# checkpoint refusals, SIGINT/SIGTERM mid-epoch and the resumed run byte-identical.
add_executable(test_recipe ${CMAKE_CURRENT_SOURCE_DIR}/runtime/test_recipe.c)
target_link_libraries(test_recipe PRIVATE deitc_rt m)
add_test(NAME recipe_runtime COMMAND test_recipe $<TARGET_FILE:deitc> ${CMAKE_SOURCE_DIR}/models/deit_tiny.yaml
         ${CMAKE_SOURCE_DIR}/tests/data/image_folder/train)
set_tests_properties(recipe_runtime PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS "recipe;runtime" TIMEOUT 300)
