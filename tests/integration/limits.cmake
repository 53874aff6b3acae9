# The limits a peer can push against, each in its own file: descriptors (RLIMIT_NOFILE and
# accept pauses), handshakes (in progress, per source address), idle connections and TCP
# keepalive, and truncation (a FIN without close_notify). One ctest per scenario.
ktlsd_add_integration_test(integration.limits fd_limits_test.py TESTS nofile accept_pause)
ktlsd_add_integration_test(integration.limits handshake_limits_test.py
	TESTS per_source max_handshakes)
ktlsd_add_integration_test(integration.limits idle_test.py TESTS idle_timeout keepalive)
ktlsd_add_integration_test(integration.limits truncation_test.py TESTS truncation)
