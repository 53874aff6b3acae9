# A connection's end cancels what it has in flight (by user_data): slots are never leaked.
ktlsd_add_integration_test(integration.cancel cancel_test.py TESTS connect_stuck mixed)
