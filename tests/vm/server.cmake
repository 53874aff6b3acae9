# ktlsd itself on kTLS in every guest kernel, in two boots per kernel so that ctest -j2 runs
# them side by side on the two cores (a boot is ~12 s; the tests are the cost):
# vm.server.ktls: --ktls require with curl, s_client, gnutls-cli and a bulk echo, each
# conn_end saying ktls=tx+rx and /proc/net/tls_stat agreeing (TlsCurrTxSw/TlsCurrRxSw > 0
# while connected, TlsDecryptError unchanged); the relay's edge cases (vm_relay: half-close
# before install, empty records, truncation, KeyUpdate, small pipes); the admin endpoint
# against the kernel's view (vm_admin: sock_diag ULP, tls_stat); and a client revoked by a
# CRL while its kTLS connection is live (vm_revoke).
# vm.server.sockmap: vm_ktls and vm_relay again with the sockmap relay on 6.1 and 6.12, only
# with KTLSD_SOCKMAP_TESTS=1: the relay is opt-in (--relay sockmap) because those kernels'
# sockmap -> kTLS redirect stalls under load and, on 6.1, can oops (docs/bpf.md). On 7.x
# (no sockmap with kTLS) it checks that --relay auto splices.
# All in tests/integration/ktls_vm_test.py. Small on purpose: the guests run under TCG.
if(COMMAND ktlsd_add_vm_test)
	ktlsd_add_vm_test(vm.server.ktls
		ENV KTLSD_BULK_MIB=8 KTLSD_VM_TIMEOUT=1500
		COMMAND ${PROJECT_SOURCE_DIR}/tests/integration/ktls_vm_test.py
			--ktlsd ${PROJECT_BINARY_DIR}/ktlsd
			--pki-script ${PROJECT_SOURCE_DIR}/scripts/pki vm_ktls vm_relay vm_admin vm_revoke)
	ktlsd_add_vm_test(vm.server.sockmap KERNELS 6.1 6.12
		ENV KTLSD_BULK_MIB=8 KTLSD_VM_TIMEOUT=1500
		OPTIN KTLSD_SOCKMAP_TESTS "${KTLSD_SOCKMAP_OPTIN}"
		COMMAND ${PROJECT_SOURCE_DIR}/tests/integration/ktls_vm_test.py
			--ktlsd ${PROJECT_BINARY_DIR}/ktlsd
			--pki-script ${PROJECT_SOURCE_DIR}/scripts/pki vm_ktls_sockmap vm_relay_sockmap)
	# 7.x: no sockmap with kTLS, so --relay auto splices (vm_ktls_sockmap asserts it);
	# the relay's edge cases on splice are vm.server.ktls.vm-7's vm_relay already.
	ktlsd_add_vm_test(vm.server.sockmap KERNELS 7
		ENV KTLSD_BULK_MIB=8 KTLSD_VM_TIMEOUT=1500
		COMMAND ${PROJECT_SOURCE_DIR}/tests/integration/ktls_vm_test.py
			--ktlsd ${PROJECT_BINARY_DIR}/ktlsd
			--pki-script ${PROJECT_SOURCE_DIR}/scripts/pki vm_ktls_sockmap)
	# Past run-in-vm's and ctest's default limits on a loaded 2-core machine.
	foreach(t vm.server.ktls vm.server.sockmap)
		foreach(k ${KTLSD_VM_KERNELS})
			if(TEST ${t}.vm-${k})
				set_tests_properties(${t}.vm-${k} PROPERTIES TIMEOUT 1600)
			endif()
		endforeach()
	endforeach()
endif()
