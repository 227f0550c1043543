# install: where an installed (and moved) deitc finds its runtime and models (codegen/locate.c)
# on a fake prefix, and a real `cmake --install` moved elsewhere compiling and training a micro
# model by name (tests/tools/install_relocated.sh). scripts/install_check.sh, run by CI, does
# the whole: build tree hidden, cuda and emu, the oracle's losses, the .deb installed and removed.
add_executable(test_locate ${CMAKE_CURRENT_SOURCE_DIR}/codegen/test_locate.c)
target_link_libraries(test_locate PRIVATE deitc_codegen deitc_passes deitc_ir deitc_rt ${CMAKE_DL_LIBS} m)
add_test(NAME install_locate COMMAND test_locate)
add_test(NAME install_relocated COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/tools/install_relocated.sh
  ${CMAKE_BINARY_DIR} ${DEITC_TESTDATA})
# deitc help names every command and the models; the man page renders without a warning
add_test(NAME install_help_man COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/tools/help_man.sh $<TARGET_FILE:deitc>
  ${CMAKE_SOURCE_DIR}/deitc.1)
set_tests_properties(install_locate install_relocated install_help_man PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" LABELS install)
set_tests_properties(install_relocated PROPERTIES PASS_REGULAR_EXPRESSION "install relocated ok")
set_tests_properties(install_help_man PROPERTIES PASS_REGULAR_EXPRESSION "help-man ok")
