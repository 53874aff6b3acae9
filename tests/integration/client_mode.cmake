# `ktlsd client` (client_mode_test.py): a sidecar pair, openssl s_server, gnutls-serv and bad
# servers.
ktlsd_add_integration_test(integration.client_mode client_mode_test.py)
