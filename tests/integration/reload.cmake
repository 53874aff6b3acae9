# Hitless reload (reload_test.py): rotation under load with zero failed handshakes, a broken
# pair keeping the old service, 1,000 reloads without memory growth, a storm of rewrites,
# config-file reloads.
ktlsd_add_integration_test(integration.reload reload_test.py
	TESTS rotation broken_pair memory storm config)
# Revocation (revocation_test.py): CRLs on handshakes and on live connections after a reload,
# the whole chain, identity rules re-applied, client mode, bad CRL files.
ktlsd_add_integration_test(integration.revocation revocation_test.py
	TESTS revoke_live revoke_chain policy_live client_mode crl_errors)
