# ktlsd server mode inside kernels that have kTLS: the good clients (curl, openssl s_client,
# gnutls-cli, an 8 MiB byte-exact echo) with --ktls require, asserting the connection log
# says ktls=tx+rx and /proc/net/tls_stat saw the sockets (TlsCurrTxSw/TlsCurrRxSw > 0 while
# connected, TlsDecryptError unchanged); then, in the same boot, the relay's edge cases
# (vm_relay: half-close before install, empty records, truncation, KeyUpdate, small pipes),
# the admin endpoint against the kernel's view (vm_admin: sock_diag ULP, tls_stat), and a
# client revoked by a CRL while its kTLS connection is live (vm_revoke).
# Both are in tests/integration/ktls_vm_test.py. Small on purpose: the guests run under TCG.
if(COMMAND ktlsd_add_vm_test)
	ktlsd_add_vm_test(vm.server.ktls
		# vm_admin made the one boot longer than run-in-vm's default 600 s limit on this
		# loaded 2-core machine (6.12: vm_ktls + vm_relay passed, then the limit hit);
		# ctest's own limit for VM tests is 900 s.
		ENV KTLSD_BULK_MIB=8 KTLSD_VM_TIMEOUT=840
		COMMAND ${PROJECT_SOURCE_DIR}/tests/integration/ktls_vm_test.py
			--ktlsd ${PROJECT_BINARY_DIR}/ktlsd
			--pki-script ${PROJECT_SOURCE_DIR}/scripts/pki vm_ktls vm_relay vm_admin vm_revoke)
endif()
