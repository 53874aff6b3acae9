# ktlsd agent serving the kernel's own TLS handshakes (NFS xprtsec=tls|mtls) in one boot per
# kernel: 6.1 has no handshake family (the agent must refuse, exit 2); 6.12 and 7 mount,
# read, refuse (tests/vm/agent_nfs_test). Fixtures made on the host: the PKI (keys under TCG
# are slow) and trixie's nfs-utils (tests/vm/fetch-nfs-utils, cached in /var/cache/ktlsd-vm).
if(COMMAND ktlsd_add_vm_test AND KTLSD_VM_TESTS)
	set(_agent_pki ${PROJECT_BINARY_DIR}/agent-vm-pki)
	set(_agent_nfsu /var/cache/ktlsd-vm/nfs-utils-trixie)
	add_test(NAME vm.agent.setup COMMAND sh -c
		"rm -rf '${_agent_pki}' && '${PROJECT_SOURCE_DIR}/scripts/pki' '${_agent_pki}' >/dev/null && '${CMAKE_CURRENT_LIST_DIR}/agent-reload-pki' '${_agent_pki}' && { '${CMAKE_CURRENT_LIST_DIR}/fetch-nfs-utils' '${_agent_nfsu}' || echo 'fetch-nfs-utils failed: the NFS cases will skip'; }")
	set_tests_properties(vm.agent.setup PROPERTIES FIXTURES_SETUP agent_vm LABELS vm)
	ktlsd_add_vm_test(vm.agent
		COMMAND ${CMAKE_CURRENT_LIST_DIR}/agent_nfs_test @KVER@ ${PROJECT_BINARY_DIR}/ktlsd
			${_agent_pki} ${_agent_nfsu})
	foreach(k ${KTLSD_VM_KERNELS})
		set_tests_properties(vm.agent.vm-${k} PROPERTIES FIXTURES_REQUIRED agent_vm)
	endforeach()
endif()

# The checker the VM test runs, on the host: a saved log and /metrics pass, and the same
# metrics against a log with one handshake less fail (a wrong count fails the VM test).
set(_agent_fx ${CMAKE_CURRENT_LIST_DIR}/agent-metrics-fixture)
add_test(NAME integration.agent.metrics_check COMMAND python3
	${CMAKE_CURRENT_LIST_DIR}/agent_metrics_check.py --metrics-file ${_agent_fx}/metrics.txt
	--log ${_agent_fx}/agent.log --want ok==6 --want peer_keys==1 --want refused==0)
add_test(NAME integration.agent.metrics_check_fails COMMAND ${CMAKE_CURRENT_LIST_DIR}/expect-fail
	"handshakes_total.result=.ok..: metrics say 6, the log 5" -- python3
	${CMAKE_CURRENT_LIST_DIR}/agent_metrics_check.py --metrics-file ${_agent_fx}/metrics.txt
	--log ${_agent_fx}/agent-one-less.log)
set_tests_properties(integration.agent.metrics_check integration.agent.metrics_check_fails
	PROPERTIES LABELS integration)
