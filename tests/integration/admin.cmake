# The admin endpoint (admin_test.py): /metrics through promtool with exact counts, health and
# readiness (503 while draining), /connections with a held connection, `ktlsd status`, and
# the address rules.
ktlsd_add_integration_test(integration.admin admin_test.py
	TESTS metrics health connections status address)
