# libktls unit tests (cmocka): key schedule vectors; install and control records through
# a faked socket seam with real OpenSSL handshakes over socketpairs (ktls_fixture.c); the
# per-thread slab of kept secrets; the userspace record layer against OpenSSL.
foreach(m keys install control record slab)
	add_executable(test_ktls_${m} ${CMAKE_CURRENT_LIST_DIR}/ktls_${m}_test.c)
	target_link_libraries(test_ktls_${m} PRIVATE ktls PkgConfig::CMOCKA Threads::Threads)
	add_test(NAME unit.ktls.${m} COMMAND test_ktls_${m})
	set_tests_properties(unit.ktls.${m} PROPERTIES SKIP_RETURN_CODE ${KTLSD_SKIP_RC}
		LABELS unit)
endforeach()
foreach(m install control record)
	target_sources(test_ktls_${m} PRIVATE ${CMAKE_CURRENT_LIST_DIR}/ktls_fixture.c)
endforeach()
