# VM test harness: sorted first among tests/vm fragments so the others can call it.
#
# ktlsd_add_vm_test(NAME
#                   [KERNELS 6.1 6.12 7]        default: all three
#                   [ENV VAR=VALUE ...]         set on the host and passed into the guest
#                   [OPTIN VAR REASON]          skipped (77, saying REASON) unless VAR=1
#                   COMMAND cmd args...)
#
# Registers NAME.vm-<kernel> per kernel, each running COMMAND inside that kernel through
# tests/vm/run-in-vm (cwd: the build dir, read-only in the guest; write under /tmp).
# In COMMAND and ENV values, @KVER@ becomes the kernel's short name (6.1, 6.12, 7), for
# per-kernel expectations. Labels: vm. A kernel or qemu that is not installed skips (77).
# Nothing is registered unless KTLSD_VM_TESTS is ON.
set(KTLSD_VM_RUN ${CMAKE_CURRENT_LIST_DIR}/run-in-vm)
set(KTLSD_VM_KERNELS 6.1 6.12 7)
set(KTLSD_SOCKMAP_OPTIN "opt-in: the sockmap relay is experimental (the 6.1 kernel's sockmap \
-> kTLS redirect was seen to stall and then oops, stalls on 6.12 under load, docs/bpf.md)")

function(ktlsd_add_vm_test name)
	if(NOT KTLSD_VM_TESTS)
		return()
	endif()
	cmake_parse_arguments(VMT "" "" "KERNELS;ENV;OPTIN;COMMAND" ${ARGN})
	if(NOT VMT_COMMAND)
		message(FATAL_ERROR "ktlsd_add_vm_test(${name}): COMMAND is required")
	endif()
	if(NOT VMT_KERNELS)
		set(VMT_KERNELS ${KTLSD_VM_KERNELS})
	endif()
	foreach(k ${VMT_KERNELS})
		set(cmd "")
		foreach(a ${VMT_COMMAND})
			string(REPLACE "@KVER@" "${k}" a "${a}")
			list(APPEND cmd "${a}")
		endforeach()
		set(env "")
		set(names "")
		foreach(e ${VMT_ENV})
			string(REPLACE "@KVER@" "${k}" e "${e}")
			string(REGEX REPLACE "=.*" "" n "${e}")
			list(APPEND env "${e}")
			list(APPEND names "${n}")
		endforeach()
		list(JOIN names " " names)
		list(APPEND env "KTLSD_VM_ENV=${names}")
		set(gate "")
		if(VMT_OPTIN)
			set(gate ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/optin ${VMT_OPTIN} --)
		endif()
		add_test(NAME ${name}.vm-${k} COMMAND ${gate} ${KTLSD_VM_RUN} ${k} -- ${cmd}
			WORKING_DIRECTORY ${PROJECT_BINARY_DIR})
		set_tests_properties(${name}.vm-${k} PROPERTIES
			LABELS vm
			TIMEOUT 900
			ENVIRONMENT "${env}"
			SKIP_RETURN_CODE 77)
	endforeach()
endfunction()
