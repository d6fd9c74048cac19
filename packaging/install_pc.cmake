# Run by `cmake --install` (install(SCRIPT)): writes metamori.pc for the
# prefix being installed to, which `--prefix` may change after configuring.
# A library outside the directories the dynamic linker searches gets an rpath
# in Libs, so `cc prog.c $(pkg-config --libs metamori)` runs without
# LD_LIBRARY_PATH.
set(PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
if(IS_ABSOLUTE "${MTM_LIBDIR}")
  set(PC_LIBDIR "${MTM_LIBDIR}")
else()
  set(PC_LIBDIR "\${prefix}/${MTM_LIBDIR}")
endif()
if(IS_ABSOLUTE "${MTM_INCLUDEDIR}")
  set(PC_INCLUDEDIR "${MTM_INCLUDEDIR}")
else()
  set(PC_INCLUDEDIR "\${prefix}/${MTM_INCLUDEDIR}")
endif()
string(REPLACE "\${prefix}" "${CMAKE_INSTALL_PREFIX}" libdir_abs "${PC_LIBDIR}")
set(PC_RPATH "")
if(NOT libdir_abs MATCHES "^/(usr/)?lib(64|/[^/]*-linux-gnu)?$")
  set(PC_RPATH " -Wl,-rpath,\${libdir}")
endif()
set(PROJECT_VERSION "${MTM_VERSION}")
configure_file("${MTM_SOURCE_DIR}/packaging/metamori.pc.in" "${MTM_BINARY_DIR}/metamori.pc" @ONLY)
file(INSTALL "${MTM_BINARY_DIR}/metamori.pc" DESTINATION "${libdir_abs}/pkgconfig")
