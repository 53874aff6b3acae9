# ktlsd's own TLS 1.3 records (libktls's record layer) where the host has no kTLS: KeyUpdate
# with openssl s_client, hostile records after a good handshake, tiny and split records, a
# forged record while a resuming client still reads through OpenSSL (records_test.py).
ktlsd_add_integration_test(integration.records records_test.py
	TESTS key_update hostile small_records split_fatal)
