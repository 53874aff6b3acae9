# No secrets in core files: ktlsd is not dumpable unless --allow-core-dumps, and a gcore
# of a live server after resumption and relayed traffic holds no ticket key, no plaintext.
foreach(t dumpable core)
	add_test(NAME integration.secrets.${t}
		COMMAND ${CMAKE_CURRENT_LIST_DIR}/secrets_core_test.py --ktlsd $<TARGET_FILE:ktlsd>
			--pki-script ${PROJECT_SOURCE_DIR}/scripts/pki ${t})
	set_tests_properties(integration.secrets.${t} PROPERTIES
		SKIP_RETURN_CODE ${KTLSD_SKIP_RC} TIMEOUT 300 LABELS integration)
endforeach()
