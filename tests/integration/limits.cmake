# The limits a peer can push against, each in its own file: descriptors (RLIMIT_NOFILE and
# accept pauses), handshakes (in progress, per source address), idle connections and TCP
# keepalive, and truncation (a FIN without close_notify). One ctest per scenario.
foreach(spec fd_limits:nofile fd_limits:accept_pause handshake_limits:per_source
		handshake_limits:max_handshakes idle:idle_timeout idle:keepalive
		truncation:truncation)
	string(REPLACE ":" ";" parts ${spec})
	list(GET parts 0 file)
	list(GET parts 1 t)
	add_test(NAME integration.limits.${t}
		COMMAND ${CMAKE_CURRENT_LIST_DIR}/${file}_test.py --ktlsd $<TARGET_FILE:ktlsd>
			--pki-script ${PROJECT_SOURCE_DIR}/scripts/pki ${t})
	set_tests_properties(integration.limits.${t} PROPERTIES
		SKIP_RETURN_CODE ${KTLSD_SKIP_RC} TIMEOUT 300 LABELS integration)
endforeach()
