# What the kernel allows with kTLS + a BPF sockmap (docs/bpf.md): sockmap_facts prints the
# facts per kernel and fails if one the sockmap relay depends on does not hold.
add_executable(sockmap_facts ${CMAKE_CURRENT_LIST_DIR}/sockmap_facts.c)
target_link_libraries(sockmap_facts PRIVATE ktlsd_bpf)
if(COMMAND ktlsd_add_vm_test)
	ktlsd_add_vm_test(vm.sockmap.facts COMMAND ${PROJECT_BINARY_DIR}/tests/sockmap_facts)
endif()
