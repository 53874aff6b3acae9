// SPDX-License-Identifier: MIT
/* libktls's errors: their words for the operator, and which of them allow a fallback. */
#include <string.h>

#include "ktlsd/ktls.h"

const char *ktls_strerror(int err)
{
	switch (-err) {
	case KTLS_E_UNSUPPORTED_CIPHER:
		return "negotiated cipher suite has no kernel TLS equivalent";
	case KTLS_E_UNSUPPORTED_VERSION:
		return "TLS version not supported by kernel TLS (need 1.2 or 1.3)";
	case KTLS_E_NO_SECRETS:
		return "traffic secrets were not captured (ktls_ctx_prepare not called?)";
	case KTLS_E_PENDING:
		return "OpenSSL holds unread data; installing kernel keys would lose it";
	case KTLS_E_NO_ULP:
		return "kernel has no TLS ULP (CONFIG_TLS off or the tls module unavailable)";
	case KTLS_E_REKEY_UNSUPPORTED:
		return "peer updated its keys (KeyUpdate) and this kernel cannot rekey (needs "
		       "6.14+)";
	case KTLS_E_PROTOCOL:
		return "malformed or unexpected record from peer";
	case KTLS_E_SEQUENCE:
		return "record sequence number unknown (records were not counted: "
		       "ktls_ctx_prepare not called or its message callback replaced; or a "
		       "KeyUpdate went through OpenSSL before kTLS took over)";
	case KTLS_E_NOT_ESTABLISHED:
		return "peer half-closed before kTLS install (the kernel attaches TLS only to "
		       "an established socket)";
	case KTLS_E_BAD_RECORD:
		return "record failed authentication (bad_record_mac)";
	case KTLS_E_RECORD_OVERFLOW:
		return "record longer than TLS allows (record_overflow)";
	}
	return strerror(err < 0 ? -err : err);
}

bool ktls_err_fallback_safe(int err)
{
	/* Each is returned before TCP_ULP succeeded (conn.c: install_prepare, or the
	 * ULP itself refused), so the kernel never saw a key. */
	switch (-err) {
	case KTLS_E_NO_ULP:
	case KTLS_E_UNSUPPORTED_CIPHER:
	case KTLS_E_UNSUPPORTED_VERSION:
	case KTLS_E_PENDING:
	case KTLS_E_NO_SECRETS:
	case KTLS_E_SEQUENCE:
	case KTLS_E_NOT_ESTABLISHED:
		return true;
	}
	return false;
}
