# Unit tests of the daemon's pure modules (cmocka), one executable per module.
foreach(m addr policy config tls_want log ticket_keys sess_cache secmem)
	add_executable(test_daemon_${m} ${CMAKE_CURRENT_LIST_DIR}/daemon_${m}_test.c)
	target_link_libraries(test_daemon_${m} PRIVATE ktlsd_core PkgConfig::CMOCKA)
	add_test(NAME unit.daemon.${m} COMMAND test_daemon_${m})
	set_tests_properties(unit.daemon.${m} PROPERTIES SKIP_RETURN_CODE ${KTLSD_SKIP_RC}
		LABELS unit)
endforeach()
