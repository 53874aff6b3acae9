# Every bad peer refused with its own log line and counted, a good client served after each
# (bad_peers_test.py).
ktlsd_add_integration_test(integration.bad_peers bad_peers_test.py)
