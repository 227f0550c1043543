# images: ImageFolder datasets (runtime/image_folder.c) on tests/data/image_folder (made by
# tests/tools/make_image_folder.py with PIL): pixels vs PIL, labels, bad inputs in process
# (images_load) and through an emu executable deitc compiles (images_exe: train, eval, ldd,
# the bad inputs' exit status and messages).
add_executable(test_image_folder ${CMAKE_CURRENT_SOURCE_DIR}/images/test_image_folder.c)
target_link_libraries(test_image_folder PRIVATE deitc_exe deitc_rt m)
add_test(NAME images_load COMMAND test_image_folder)
add_test(NAME images_exe COMMAND test_image_folder exe)
set_tests_properties(images_load images_exe PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS images)
# the decoders' shared memory budget (issue 15): peak RSS of a load of four 192 MB images
add_test(NAME images_budget COMMAND test_image_folder budget)
set_tests_properties(images_budget PROPERTIES LABELS "images;hostile" TIMEOUT 120
  ENVIRONMENT "${DEITC_TEST_ENV};ASAN_OPTIONS=detect_leaks=1:quarantine_size_mb=0")
