# install.cmake: `cmake --install build --prefix P` and `cpack -G DEB` (from build/). The layout
# is the one codegen/locate.c looks for around P/bin/deitc, so P can be moved or copied whole:
#   P/bin/deitc                    P/share/deitc/models/*.yaml   P/share/man/man1/deitc.1
#   P/lib/deitc/runtime/*.h *.cuh  P/lib/deitc/*.a (the runtime and the image libraries it links
#   statically, bundled: executables built from an install need no -dev package)
#   P/share/doc/deitc/             README.md, the bundled libraries' copyright files
install(TARGETS deitc RUNTIME DESTINATION bin)
install(TARGETS deitc_exe deitc_rt ARCHIVE DESTINATION lib/deitc)
# the device library: kernel_prelude.cuh and every dc_*.cuh it includes, the emu twins
file(GLOB DEITC_DEVICE_HEADERS ${CMAKE_SOURCE_DIR}/runtime/*.cuh)
install(FILES runtime/plan.h runtime/rt.h runtime/cuda_emu.h runtime/cuda_emu_mma.h ${DEITC_DEVICE_HEADERS}
        DESTINATION lib/deitc/runtime)
install(DIRECTORY models/ DESTINATION share/deitc/models FILES_MATCHING PATTERN "*.yaml")
install(FILES deitc.1 DESTINATION share/man/man1)
install(FILES README.md DESTINATION share/doc/deitc)
foreach(lib ${DEITC_BUNDLED_LIBS})
  get_filename_component(name ${lib} NAME)
  get_filename_component(real ${lib} REALPATH) # libpng.a is a symlink: install the file
  install(FILES ${real} DESTINATION lib/deitc RENAME ${name})
  # the Debian package that ships it names its licence in /usr/share/doc/PACKAGE/copyright
  execute_process(COMMAND dpkg-query -S ${real} OUTPUT_VARIABLE owner ERROR_QUIET RESULT_VARIABLE rc)
  if(NOT rc AND owner MATCHES "^([^:,]+)")
    set(pkg ${CMAKE_MATCH_1})
    if(EXISTS /usr/share/doc/${pkg}/copyright)
      install(FILES /usr/share/doc/${pkg}/copyright DESTINATION share/doc/deitc/bundled RENAME ${name}.copyright)
    endif()
  endif()
endforeach()

# Debian package: deitc_VERSION_ARCH.deb in build/packages, installing under /usr. Depends:
# the shared libraries of the deitc binary (dpkg-shlibdeps: libc6, libyaml-0-2, libprotobuf-c1)
# and the host compilers the link step runs. The CUDA toolkit's NVRTC (for --target cuda) and
# cuBLASLt (for running cuda executables) are loaded with dlopen: a documented prerequisite,
# not a dependency (NVIDIA's packages are not in Debian's archive).
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME deitc)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "ahead-of-time compiler of DeiT/ViT models into CUDA training executables")
set(CPACK_PACKAGE_DESCRIPTION "deitc compiles a DeiT/ViT image classifier (YAML or ONNX) into one standalone \
training executable: the whole training step as CUDA C compiled by NVRTC and linked with a small runtime. \
The emu target runs the same kernels on the CPU. --target cuda needs NVRTC from the CUDA toolkit.")
set(CPACK_PACKAGE_CONTACT "deitc developers <deitc@localhost>")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR}/packages)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION devel)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "gcc, g++, libc6-dev")
include(CPack)
