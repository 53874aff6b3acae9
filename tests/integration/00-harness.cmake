# Integration harness: sorted first among tests/integration fragments so the others can call
# it. Every FEATURE_test.py here runs the same way (harness.py's runner):
#
#   FEATURE_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki [TEST...]
#
# ktlsd_add_integration_test(NAME FILE [TESTS test...] [TIMEOUT seconds])
#
# With TESTS, registers NAME.<test> for each, running FILE test; without, NAME runs FILE's one
# test. Labels: integration; exit 77 skips; TIMEOUT defaults to 300 s.
set(KTLSD_IT_DIR ${CMAKE_CURRENT_LIST_DIR})

function(ktlsd_add_integration_test name file)
	cmake_parse_arguments(IT "" "TIMEOUT" "TESTS" ${ARGN})
	if(NOT IT_TIMEOUT)
		set(IT_TIMEOUT 300)
	endif()
	set(cmd ${KTLSD_IT_DIR}/${file} --ktlsd $<TARGET_FILE:ktlsd>
		--pki-script ${PROJECT_SOURCE_DIR}/scripts/pki)
	set(names "")
	if(IT_TESTS)
		foreach(t ${IT_TESTS})
			add_test(NAME ${name}.${t} COMMAND ${cmd} ${t})
			list(APPEND names ${name}.${t})
		endforeach()
	else()
		add_test(NAME ${name} COMMAND ${cmd})
		set(names ${name})
	endif()
	set_tests_properties(${names} PROPERTIES
		SKIP_RETURN_CODE ${KTLSD_SKIP_RC} TIMEOUT ${IT_TIMEOUT} LABELS integration)
endfunction()
