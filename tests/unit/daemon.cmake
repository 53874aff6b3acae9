# Unit tests of the daemon's rooms (cmocka), one executable per module:
# tests/unit/<room>_<module>_test.c is ctest's unit.<room>.<module>.
function(ktlsd_unit_test room module)
	set(t ${room}_${module})
	add_executable(test_${t} ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/${t}_test.c)
	target_link_libraries(test_${t} PRIVATE ktlsd_core PkgConfig::CMOCKA)
	add_test(NAME unit.${room}.${module} COMMAND test_${t})
	set_tests_properties(unit.${room}.${module} PROPERTIES SKIP_RETURN_CODE ${KTLSD_SKIP_RC}
		LABELS unit)
endfunction()

ktlsd_unit_test(common log)
ktlsd_unit_test(common secmem)
ktlsd_unit_test(conf addr)
ktlsd_unit_test(conf config)
ktlsd_unit_test(conf policy)
ktlsd_unit_test(tls hs_want)
ktlsd_unit_test(tls ticket_keys)
ktlsd_unit_test(tls sess_cache)
# OCSP response checks (responses built in the test), the answer cache, PKCS#11 URI display.
ktlsd_unit_test(tls ocsp)
# The handshake library context: its view of the default provider (tls/libctx.c).
ktlsd_unit_test(tls libctx)
# tls_ctx_build with a PKI that scripts/pki makes when the test starts.
ktlsd_unit_test(tls tlsctx)
target_compile_definitions(test_tls_tlsctx PRIVATE
	KTLSD_PKI_SCRIPT="${PROJECT_SOURCE_DIR}/scripts/pki")
# What a connection keeps of its peer, judged again after a reload (CRLs, rules, trust).
ktlsd_unit_test(tls peer_chain)
target_compile_definitions(test_tls_peer_chain PRIVATE
	KTLSD_PKI_SCRIPT="${PROJECT_SOURCE_DIR}/scripts/pki")
# conn_fail's cancels against a real io_uring, and the pipe pool (loop/conn.c).
ktlsd_unit_test(loop conn)
# A worker's ring refuses every operation the loop does not use (loop/ring.c).
ktlsd_unit_test(loop ring)
# PROXY protocol v2 encoder (daemon/relay/proxy_v2.c): exact bytes, limits, read back by the
# independent parser in tests/fuzz/pp2_decode.h.
ktlsd_unit_test(relay proxy_v2)
# The admin endpoint's formatting (daemon/admin): label escaping, tls_stat names, the ULP
# view parsed from netlink attributes built as the kernel builds them.
ktlsd_unit_test(admin format)
# The handshake upcall's ACCEPT reply parsing (daemon/upcall/upcall_nl.c), bounds included.
ktlsd_unit_test(upcall nl)
# NVMe TLS PSKs (daemon/upcall/psk.c): the session and suite a PSK becomes, identity bounds.
ktlsd_unit_test(upcall psk)
# ktlsd agent's /metrics (daemon/upcall/agent_metrics.c through the admin room): exact
# series, promtool, counting on one thread while another renders.
ktlsd_unit_test(upcall metrics)
# The executable's "%02x" fast path (cli/hex_sprintf.c), which is not in ktlsd_cli.
ktlsd_unit_test(cli hex_sprintf)
target_sources(test_cli_hex_sprintf PRIVATE ${PROJECT_SOURCE_DIR}/daemon/cli/hex_sprintf.c)
