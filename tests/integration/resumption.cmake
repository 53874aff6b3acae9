# Session resumption, tickets and the session cache, both ways (resumption_test.py).
ktlsd_add_integration_test(integration.resumption resumption_test.py)
