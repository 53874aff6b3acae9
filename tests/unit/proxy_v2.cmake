# PROXY protocol v2 encoder (daemon/proxy_v2.c): exact bytes, limits, read back by the
# independent parser in tests/fuzz/pp2_decode.h.
add_executable(test_daemon_proxy_v2 ${CMAKE_CURRENT_LIST_DIR}/daemon_proxy_v2.c)
target_link_libraries(test_daemon_proxy_v2 PRIVATE ktlsd_core PkgConfig::CMOCKA)
add_test(NAME unit.daemon.proxy_v2 COMMAND test_daemon_proxy_v2)
set_tests_properties(unit.daemon.proxy_v2 PROPERTIES SKIP_RETURN_CODE ${KTLSD_SKIP_RC} LABELS unit)

# The PROXY v2 test backend the integration tests use checks its own parser against
# hand-written headers (good, CRC32C, IPv6, LOCAL, and malformed ones it must refuse).
add_test(NAME integration.pp2_backend.self_test
	COMMAND ${PROJECT_SOURCE_DIR}/tests/integration/pp2_backend.py --self-test)
set_tests_properties(integration.pp2_backend.self_test PROPERTIES
	SKIP_RETURN_CODE ${KTLSD_SKIP_RC} TIMEOUT 60 LABELS integration)
