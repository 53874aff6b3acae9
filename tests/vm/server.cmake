# ktlsd server mode inside kernels that have kTLS: the good clients (curl, openssl s_client,
# gnutls-cli, an 8 MiB byte-exact echo) with --ktls require, asserting the connection log
# says ktls=tx+rx and /proc/net/tls_stat saw the sockets (TlsCurrTxSw/TlsCurrRxSw > 0 while
# connected, TlsDecryptError unchanged); then, in the same boot, the relay's edge cases
# (vm_relay: half-close before install, empty records, truncation, KeyUpdate, small pipes),
# and both again with the sockmap relay (vm_*_sockmap; --relay auto where the kernel says no).
# Both are in tests/integration/ktls_vm_test.py. Small on purpose: the guests run under TCG.
if(COMMAND ktlsd_add_vm_test)
	# Four test functions in one boot: past run-in-vm's and ctest's default limits.
	ktlsd_add_vm_test(vm.server.ktls
		ENV KTLSD_BULK_MIB=8 KTLSD_VM_TIMEOUT=2400
		COMMAND ${PROJECT_SOURCE_DIR}/tests/integration/ktls_vm_test.py
			--ktlsd ${PROJECT_BINARY_DIR}/ktlsd
			--pki-script ${PROJECT_SOURCE_DIR}/scripts/pki vm_ktls vm_relay
			vm_ktls_sockmap vm_relay_sockmap)
	foreach(k ${KTLSD_VM_KERNELS})
		if(TEST vm.server.ktls.vm-${k})
			set_tests_properties(vm.server.ktls.vm-${k} PROPERTIES TIMEOUT 2500)
		endif()
	endforeach()
endif()
