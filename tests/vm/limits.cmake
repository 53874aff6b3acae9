# --idle-timeout on the kTLS relay: a silent connection spliced by the kernel ends after its
# timeout, a chatty one lives on (the relay reports activity through conn_touch). One kernel
# is enough: the sweep is the loop's, not the kernel's.
if(COMMAND ktlsd_add_vm_test)
	ktlsd_add_vm_test(vm.limits.idle_ktls
		KERNELS 6.1
		ENV KTLSD_KTLS=require
		COMMAND ${PROJECT_SOURCE_DIR}/tests/integration/idle_test.py
			--ktlsd ${PROJECT_BINARY_DIR}/ktlsd
			--pki-script ${PROJECT_SOURCE_DIR}/scripts/pki idle_timeout)
endif()
