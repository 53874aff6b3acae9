# Capability probe (cmocka) against a fake kernel through the seams (libktls's
# ktls_probe_ops for kTLS, the daemon's sysprobe_ops for io_uring and BPF), plus one
# consistency run against the real kernel. sysprobe.c is compiled in directly: it belongs
# to the daemon's cli room, which is a program, not a library.
add_executable(test_probe ${CMAKE_CURRENT_LIST_DIR}/probe.c
	${PROJECT_SOURCE_DIR}/daemon/cli/sysprobe.c)
target_include_directories(test_probe PRIVATE ${PROJECT_SOURCE_DIR}/daemon/cli)
target_link_libraries(test_probe PRIVATE ktls PkgConfig::URING PkgConfig::CMOCKA)
add_test(NAME unit.probe COMMAND test_probe)
set_tests_properties(unit.probe PROPERTIES SKIP_RETURN_CODE ${KTLSD_SKIP_RC} LABELS unit)
