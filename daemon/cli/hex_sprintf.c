// SPDX-License-Identifier: MIT
/*
 * A fast path for sprintf(buf, "%02x", byte) in the ktlsd executable.
 *
 * libktls needs the TLS 1.3 traffic secrets, and OpenSSL 3.0 hands them out only through
 * the keylog callback, whose line libssl formats one byte at a time with sprintf "%02x"
 * (nss_keylog_int: about 320 calls per TLS 1.3 server handshake, ~225 K instructions, 4 %
 * of a full mTLS handshake and 9 % of a resumed one under callgrind; docs/speed.md). Debian
 * builds libssl with _FORTIFY_SOURCE, so those calls land in glibc's __sprintf_chk, which
 * this definition in the executable interposes (ELF: the executable's symbol comes first).
 * Exactly that format with an argument that fits a byte is written here, with the check
 * glibc makes (the buffer holds the output); anything else goes to glibc's __vsprintf_chk
 * unchanged. The output is byte for byte glibc's (unit.cli.hex_sprintf compares all 256).
 */
#include <stdarg.h>
#include <stddef.h>

int __vsprintf_chk(char *s, int flag, size_t slen, const char *format, va_list ap);
void __chk_fail(void) __attribute__((noreturn));
int __sprintf_chk(char *s, int flag, size_t slen, const char *format, ...);

int __sprintf_chk(char *s, int flag, size_t slen, const char *format, ...)
{
	static const char hex[] = "0123456789abcdef";
	va_list ap;
	int rc;

	va_start(ap, format);
	if (format[0] == '%' && format[1] == '0' && format[2] == '2' && format[3] == 'x' &&
	    format[4] == '\0') {
		va_list peek;
		unsigned int v;

		va_copy(peek, ap);
		v = va_arg(peek, unsigned int);
		va_end(peek);
		if (v <= 0xff) {
			va_end(ap);
			if (slen < 3)
				__chk_fail();
			s[0] = hex[v >> 4];
			s[1] = hex[v & 15];
			s[2] = '\0';
			return 2;
		}
	}
	rc = __vsprintf_chk(s, flag, slen, format, ap);
	va_end(ap);
	return rc;
}
