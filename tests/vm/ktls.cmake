# libktls in kernels that have kTLS: every version x cipher, byte-exact both ways against
# userspace OpenSSL, gnutls-serv and itself, tickets, KeyUpdate, tampering, close_notify,
# cross-checked with /proc/net/tls_stat. On a host without kTLS the program exits 77.
add_executable(ktls_vm_test ${CMAKE_CURRENT_LIST_DIR}/ktls_vm_test.c)
target_link_libraries(ktls_vm_test PRIVATE ktls Threads::Threads)
add_test(NAME ktls.host COMMAND ktls_vm_test ${PROJECT_SOURCE_DIR}/scripts/pki)
set_tests_properties(ktls.host PROPERTIES SKIP_RETURN_CODE ${KTLSD_SKIP_RC} LABELS unit)
if(COMMAND ktlsd_add_vm_test AND KTLSD_VM_TESTS)
	# The PKI is made on the host first (a fixture): RSA keys under TCG take minutes.
	set(_ktls_vm_pki ${PROJECT_BINARY_DIR}/ktls-vm-pki)
	add_test(NAME vm.ktls.pki COMMAND sh -c
		"rm -rf '${_ktls_vm_pki}' && '${PROJECT_SOURCE_DIR}/scripts/pki' '${_ktls_vm_pki}/ec' >/dev/null && '${PROJECT_SOURCE_DIR}/scripts/pki' '${_ktls_vm_pki}/rsa' --rsa >/dev/null")
	set_tests_properties(vm.ktls.pki PROPERTIES FIXTURES_SETUP ktls_vm_pki LABELS vm)
	ktlsd_add_vm_test(vm.ktls COMMAND ${PROJECT_BINARY_DIR}/tests/ktls_vm_test ${_ktls_vm_pki})
	foreach(k ${KTLSD_VM_KERNELS})
		set_tests_properties(vm.ktls.vm-${k} PROPERTIES FIXTURES_REQUIRED ktls_vm_pki)
	endforeach()
endif()
