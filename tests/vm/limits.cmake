# --idle-timeout on the kTLS relays: a silent connection ends after its timeout, a chatty
# one lives on (the splice relay reports activity through conn_touch), and so does one where
# only the backend talks. One kernel is enough: the sweep is the loop's, not the kernel's.
if(COMMAND ktlsd_add_vm_test)
	ktlsd_add_vm_test(vm.limits.idle_ktls
		KERNELS 6.1
		ENV KTLSD_KTLS=require KTLSD_RELAY=splice
		COMMAND ${PROJECT_SOURCE_DIR}/tests/integration/idle_test.py
			--ktlsd ${PROJECT_BINARY_DIR}/ktlsd
			--pki-script ${PROJECT_SOURCE_DIR}/scripts/pki idle_timeout)
	# The same on the sockmap relay, where the kernel forwards backend -> client: a
	# connection where only the backend talks must live on (sockmap_refresh_idle).
	ktlsd_add_vm_test(vm.limits.idle_sockmap
		KERNELS 6.1
		ENV KTLSD_KTLS=require KTLSD_RELAY=sockmap
		OPTIN KTLSD_SOCKMAP_TESTS "${KTLSD_SOCKMAP_OPTIN}"
		COMMAND ${PROJECT_SOURCE_DIR}/tests/integration/idle_test.py
			--ktlsd ${PROJECT_BINARY_DIR}/ktlsd
			--pki-script ${PROJECT_SOURCE_DIR}/scripts/pki idle_timeout)
endif()
