# testssl.sh (Debian package testssl.sh) against ktlsd's server: no HIGH/CRITICAL finding.
add_test(NAME integration.testssl
	COMMAND ${CMAKE_CURRENT_LIST_DIR}/testssl_test.py --ktlsd $<TARGET_FILE:ktlsd>
		--pki-script ${PROJECT_SOURCE_DIR}/scripts/pki)
set_tests_properties(integration.testssl PROPERTIES
	SKIP_RETURN_CODE ${KTLSD_SKIP_RC} TIMEOUT 600 LABELS integration)
