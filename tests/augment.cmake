# augment: the training augmentations (runtime/randaug.c and transform.c's "randaug"):
# augment_ops compares every RandAugment op with timm/PIL (skips, 77, without DEITC_TORCH_PYTHON's
# numpy/PIL/timm); augment_determinism: same rng same bytes, worker-count independence, the op
# draws' frequencies, bad specs; augment_erasing: Random Erasing's boxes, fill and loader hook.
add_executable(test_augment ${CMAKE_CURRENT_SOURCE_DIR}/augment/test_augment.c)
target_link_libraries(test_augment PRIVATE deitc_exe deitc_rt m)
add_test(NAME augment_ops COMMAND test_augment ops)
add_test(NAME augment_determinism COMMAND test_augment)
add_test(NAME augment_erasing COMMAND test_augment erasing)
set_tests_properties(augment_ops augment_determinism augment_erasing PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS images)
set_tests_properties(augment_ops PROPERTIES SKIP_RETURN_CODE 77)
# through an emu executable: --aug randaug|deit, any worker count and a resume the same weights
add_test(NAME augment_exe COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/augment/test_augment_exe.sh)
set_tests_properties(augment_exe PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS images
  PASS_REGULAR_EXPRESSION "augment_exe ok")
# PIL's resampling (transform.c's rt_resample_box: the training crop, the eval resize + center
# crop, pack's resize) byte for byte against PIL (skips, 77, without numpy/PIL)
add_executable(test_resample ${CMAKE_CURRENT_SOURCE_DIR}/augment/test_resample.c)
target_link_libraries(test_resample PRIVATE deitc_exe deitc_rt m)
add_test(NAME augment_resample_pil COMMAND test_resample)
set_tests_properties(augment_resample_pil PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS images SKIP_RETURN_CODE 77)
