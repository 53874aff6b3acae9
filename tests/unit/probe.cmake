# Capability probe (cmocka) against a fake kernel through the ktls_probe_ops seam, plus one
# consistency run against the real kernel.
add_executable(test_probe ${CMAKE_CURRENT_LIST_DIR}/probe.c)
target_link_libraries(test_probe PRIVATE ktls PkgConfig::CMOCKA)
add_test(NAME unit.probe COMMAND test_probe)
set_tests_properties(unit.probe PROPERTIES SKIP_RETURN_CODE ${KTLSD_SKIP_RC} LABELS unit)
