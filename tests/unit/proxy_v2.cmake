# The PROXY v2 test backend the integration tests use checks its own parser against
# hand-written headers (good, CRC32C, IPv6, LOCAL, and malformed ones it must refuse).
# (The encoder's unit test, unit.relay.proxy_v2, is registered in daemon.cmake.)
add_test(NAME integration.pp2_backend.self_test
	COMMAND ${PROJECT_SOURCE_DIR}/tests/integration/pp2_backend.py --self-test)
set_tests_properties(integration.pp2_backend.self_test PROPERTIES
	SKIP_RETURN_CODE ${KTLSD_SKIP_RC} TIMEOUT 60 LABELS integration)
