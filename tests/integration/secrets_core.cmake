# No secrets in core files: ktlsd is not dumpable unless --allow-core-dumps, and a gcore
# of a live server after resumption and relayed traffic holds no ticket key, no plaintext.
ktlsd_add_integration_test(integration.secrets secrets_core_test.py TESTS dumpable core)
