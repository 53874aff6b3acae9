# What the kernel allows with kTLS + a BPF sockmap (docs/bpf.md): sockmap_facts prints the
# facts per kernel and fails if one the sockmap relay depends on does not hold.
add_executable(sockmap_facts ${CMAKE_CURRENT_LIST_DIR}/sockmap_facts.c)
target_link_libraries(sockmap_facts PRIVATE ktlsd_bpf)
if(COMMAND ktlsd_add_vm_test)
	ktlsd_add_vm_test(vm.sockmap.facts KERNELS 6.12 7
		COMMAND ${PROJECT_BINARY_DIR}/tests/sockmap_facts)
	# 6.1's tx_redirect stalls in about 1 run of 3 and the guest then oopses at teardown
	# (tls_sw_do_sendpage): kept as evidence, run only when asked.
	ktlsd_add_vm_test(vm.sockmap.facts KERNELS 6.1
		OPTIN KTLSD_SOCKMAP_TESTS "${KTLSD_SOCKMAP_OPTIN}"
		COMMAND ${PROJECT_BINARY_DIR}/tests/sockmap_facts)
endif()
