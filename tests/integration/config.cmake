# Config file and listener ownership with the real binary (tests/integration/config_test.py):
# long lines, mode order, duplicate listen addresses, a second ktlsd or another program on
# the port. One test per scenario.
set(_ktlsd_cfg_it ${CMAKE_CURRENT_LIST_DIR}/config_test.py)
foreach(t long_line mode_order dup_listen second_instance bind_in_use)
	add_test(NAME integration.config.${t}
		COMMAND ${_ktlsd_cfg_it} --ktlsd $<TARGET_FILE:ktlsd>
			--pki-script ${PROJECT_SOURCE_DIR}/scripts/pki ${t})
	set_tests_properties(integration.config.${t} PROPERTIES
		SKIP_RETURN_CODE ${KTLSD_SKIP_RC} TIMEOUT 300 LABELS integration)
endforeach()
