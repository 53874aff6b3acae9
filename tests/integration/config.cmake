# Config files and listener ownership with the real binary (config_test.py): two services in
# one process, check-config errors with line numbers, long lines, mode order, duplicate listen
# addresses, a second ktlsd or another program on the port. One test per scenario.
ktlsd_add_integration_test(integration.config config_test.py
	TESTS two_services long_line mode_order dup_listen second_instance bind_in_use)
