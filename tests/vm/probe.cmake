# `ktlsd probe --json` checked against what each kernel is known to do (tests/vm/check-probe).
set(_probe_check ${CMAKE_CURRENT_LIST_DIR}/check-probe)

# On the host (no CONFIG_TLS here): the probe must say kTLS is absent; skips if present.
add_test(NAME probe.host COMMAND ${_probe_check} $<TARGET_FILE:ktlsd> --no-ktls)
set_tests_properties(probe.host PROPERTIES SKIP_RETURN_CODE ${KTLSD_SKIP_RC} LABELS host)

# In each guest: TX and RX for every version x cipher. In-kernel rekey arrived in 6.14, so
# of the kernels we boot only 7.x has it; 6.1 and 6.12 must report it missing.
foreach(k ${KTLSD_VM_KERNELS})
	if(k VERSION_GREATER_EQUAL 6.14)
		set(_rekey yes)
	else()
		set(_rekey no)
	endif()
	ktlsd_add_vm_test(probe KERNELS ${k}
		COMMAND ${_probe_check} $<TARGET_FILE:ktlsd> --ktls --rekey ${_rekey})
endforeach()

# The same check must FAIL in a guest whose tls module is blacklisted, and for the reason
# that it checks: proves the VM assertions are not vacuous.
ktlsd_add_vm_test(probe-blocked-tls KERNELS 6.1 ENV KTLSD_VM_BLOCK_TLS=1
	COMMAND ${CMAKE_CURRENT_LIST_DIR}/expect-fail "FAIL: ktls.ulp is false" --
	${_probe_check} $<TARGET_FILE:ktlsd> --ktls --rekey no)
