# libFuzzer harnesses (tests/fuzz/fuzz_*.c), built with clang by tests/fuzz/run-fuzz
# whatever compiler the main build uses, and run briefly here: one test per harness.
# Longer runs: FUZZ_SECONDS=600 tests/fuzz/run-fuzz [NAME...]. Skips (77) without clang's
# libFuzzer runtime (libclang-rt-14-dev).
set(KTLSD_FUZZ_SECONDS 5 CACHE STRING "seconds each fuzz harness runs under ctest")
foreach(h config addr policy proxy_v2 control ocsp)
	add_test(NAME fuzz.${h} COMMAND ${CMAKE_CURRENT_LIST_DIR}/run-fuzz ${h})
	set_tests_properties(fuzz.${h} PROPERTIES
		ENVIRONMENT "FUZZ_SECONDS=${KTLSD_FUZZ_SECONDS};FUZZ_BUILD_DIR=${CMAKE_BINARY_DIR}/fuzz"
		SKIP_RETURN_CODE ${KTLSD_SKIP_RC} TIMEOUT 300 LABELS fuzz)
endforeach()
