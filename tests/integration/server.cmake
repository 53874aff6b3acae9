# ktlsd server mode with good clients (server_test.py): curl, openssl s_client and gnutls-cli
# to real backends, 64 MiB each way byte-exact, 500 connections at once.
ktlsd_add_integration_test(integration.server server_test.py
	TESTS good_clients bulk concurrent)
