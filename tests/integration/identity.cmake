# Identity reporting and verification edge cases (security review, item 1 and 9): one
# ctest per scenario in identity_test.py.
set(_ktlsd_id ${CMAKE_CURRENT_LIST_DIR}/identity_test.py)
foreach(t svid proxy_identity server_names key_password cn_string_type encrypted_cert)
	add_test(NAME integration.identity.${t}
		COMMAND ${_ktlsd_id} --ktlsd $<TARGET_FILE:ktlsd>
			--pki-script ${PROJECT_SOURCE_DIR}/scripts/pki ${t})
	set_tests_properties(integration.identity.${t} PROPERTIES
		SKIP_RETURN_CODE ${KTLSD_SKIP_RC} TIMEOUT 300 LABELS integration)
endforeach()
