# bench/: the load generator and the backend it talks to (bench/run drives them).
add_executable(mtls-load ${CMAKE_CURRENT_LIST_DIR}/mtls-load.c
	${CMAKE_CURRENT_LIST_DIR}/bench-common.c)
target_link_libraries(mtls-load PRIVATE PkgConfig::OPENSSL Threads::Threads)
add_executable(bench-backend ${CMAKE_CURRENT_LIST_DIR}/bench-backend.c
	${CMAKE_CURRENT_LIST_DIR}/bench-common.c)

# Smoke test: the tools against ktlsd + bench-backend, byte counts checked end to end.
add_test(NAME bench_smoke
	COMMAND ${CMAKE_CURRENT_LIST_DIR}/smoke $<TARGET_FILE:mtls-load>
		$<TARGET_FILE:bench-backend> $<TARGET_FILE:ktlsd>)
set_tests_properties(bench_smoke PROPERTIES LABELS bench TIMEOUT 60
	SKIP_RETURN_CODE ${KTLSD_SKIP_RC})
