# loader: the streaming data loader, transforms and packed .dpk datasets (runtime/loader.c,
# transform.c, pack.c) in process (loader_stream, loader_pack), and through an emu executable
# (loader_exe: streamed == decoded once, any --workers the same weights, --aug light resumes
# byte-identical, pack + train/eval on a .dpk, bad .dpk files refused).
add_executable(test_loader ${CMAKE_CURRENT_SOURCE_DIR}/loader/test_loader.c)
target_link_libraries(test_loader PRIVATE deitc_exe deitc_rt m)
add_executable(test_pack ${CMAKE_CURRENT_SOURCE_DIR}/loader/test_pack.c)
target_link_libraries(test_pack PRIVATE deitc_exe deitc_rt m)
add_executable(bench_dataload ${CMAKE_CURRENT_SOURCE_DIR}/loader/bench_dataload.c)
target_link_libraries(bench_dataload PRIVATE deitc_exe deitc_rt m)
add_test(NAME loader_stream COMMAND test_loader)
add_test(NAME loader_pack COMMAND test_pack)
add_test(NAME loader_exe COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/loader/test_loader_exe.sh)
set_tests_properties(loader_stream loader_pack loader_exe PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS "loader;images")
set_tests_properties(loader_exe PROPERTIES PASS_REGULAR_EXPRESSION "loader_exe ok")
