# ktlsd server mode end to end: real ktlsd processes on 127.0.0.1 with real clients
# (openssl s_client, curl, gnutls-cli) and real backends; client_mode runs the mirror
# (`ktlsd client`): a sidecar pair, openssl s_server, gnutls-serv and bad servers;
# resumption covers tickets both ways. One test per scenario.
set(_ktlsd_it ${CMAKE_CURRENT_LIST_DIR}/ktlsd_test.py)
foreach(t good_clients bulk concurrent bad_peers json_signals cli_errors config client_mode
		proxy_protocol resumption)
	add_test(NAME integration.server.${t}
		COMMAND ${_ktlsd_it} --ktlsd $<TARGET_FILE:ktlsd>
			--pki-script ${PROJECT_SOURCE_DIR}/scripts/pki ${t})
	set_tests_properties(integration.server.${t} PROPERTIES
		SKIP_RETURN_CODE ${KTLSD_SKIP_RC} TIMEOUT 300 LABELS integration)
endforeach()
