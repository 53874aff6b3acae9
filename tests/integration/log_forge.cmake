# A client certificate whose names carry CR/LF and a fake log line cannot forge a log line
# (logfmt and JSON, refused and accepted).
add_test(NAME integration.log_forge
	COMMAND ${CMAKE_CURRENT_LIST_DIR}/log_forge_test.py --ktlsd $<TARGET_FILE:ktlsd>
		--pki-script ${PROJECT_SOURCE_DIR}/scripts/pki)
set_tests_properties(integration.log_forge PROPERTIES
	SKIP_RETURN_CODE ${KTLSD_SKIP_RC} TIMEOUT 120 LABELS integration)
