# export.cmake: an ONNX model's own weights in the compiled EXE (emu), and `deitc export`
# (frontend/onnx_export.c) back to ONNX: round trip through deitc, errors, and the exported
# file checked by Debian's python3-onnx and run by onnxruntime (each skipped, exit 77, when
# /usr/bin/python3 cannot import it). dedup: a fresh model whose equal initializers torch's
# export turned into Identity nodes, each exported back as an initializer of its own.
if(NOT DEITC_HAVE_ONNX)
  message(STATUS "export tests skipped: the ONNX frontend is not built")
  return()
endif()

add_executable(test_export ${CMAKE_CURRENT_LIST_DIR}/export/test_export.c)
target_link_libraries(test_export PRIVATE deitc_rt m)
foreach(mode init roundtrip errors dedup)
  add_test(NAME export_${mode} COMMAND test_export ${mode})
  set_tests_properties(export_${mode} PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}")
endforeach()
set_tests_properties(export_init PROPERTIES TIMEOUT 300)

if(NOT EXISTS /usr/bin/python3)
  message(STATUS "export tests with python3-onnx and onnxruntime skipped: no /usr/bin/python3")
  return()
endif()
foreach(mode checker ort)
  add_test(NAME export_${mode} COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/export/check_onnx.py ${mode})
  set_tests_properties(export_${mode} PROPERTIES ENVIRONMENT "${DEITC_TEST_ENV}" SKIP_RETURN_CODE 77)
endforeach()
