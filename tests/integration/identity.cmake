# Identity reporting and verification edge cases (security review, item 1 and 9): one
# ctest per scenario in identity_test.py.
ktlsd_add_integration_test(integration.identity identity_test.py
	TESTS svid proxy_identity server_names key_password cn_string_type encrypted_cert)
