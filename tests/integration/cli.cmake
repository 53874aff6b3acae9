# The process from outside (cli_test.py): usage and certificate errors exit 2 with one line;
# JSON logs; SIGTERM drains, SIGINT stops.
ktlsd_add_integration_test(integration.cli cli_test.py TESTS errors json_signals)
