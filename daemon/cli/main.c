// SPDX-License-Identifier: MIT
/* ktlsd entry point: dispatch to a subcommand (commands.h). */
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>

#include "commands.h"
#include "ktlsd_git.h"

static void usage(FILE *f)
{
	fputs("usage: ktlsd server --listen ADDR --target ADDR --cert FILE --key FILE --cacert "
	      "FILE\n"
	      "                    [--allow-uri PATTERN]... [--allow-dns NAME]... [--allow-cn "
	      "NAME]...\n"
	      "                    [--allow-ou NAME]... [--allow-all] [--ktls auto|require|off] "
	      "...\n"
	      "       ktlsd client --listen ADDR --target HOST:PORT --cert FILE --key FILE\n"
	      "                    --cacert FILE [--verify-uri PATTERN]... [--verify-dns NAME]... "
	      "...\n"
	      "       ktlsd --config FILE\n"
	      "       ktlsd check-config FILE\n"
	      "       ktlsd probe [--json]\n"
	      "       ktlsd status [--admin ADDR] [--connections]\n"
	      "       ktlsd --version\n"
	      "       ktlsd agent --cacert FILE [--cert FILE --key FILE] [--client-cert FILE "
	      "--client-key FILE] ...\n"
	      "       ktlsd SUBCOMMAND --help for the full option list\n",
	      f);
}

/*
 * What a bug report needs: our version and commit, and the libraries as loaded (the
 * OpenSSL a distribution updated under us can differ from the one we were built with).
 */
static int version(void)
{
	printf("ktlsd %s\n", KTLSD_VERSION);
	printf("commit: %s\n", KTLSD_GIT_COMMIT);
	printf("openssl: %s (built with %s)\n", OpenSSL_version(OPENSSL_VERSION),
	       OPENSSL_VERSION_TEXT);
	printf("liburing: %s\n", KTLSD_URING_VERSION); /* 2.3 has no runtime query */
	return 0;
}

int main(int argc, char **argv)
{
	/*
	 * Before any key is read: a core file (or a non-root ptrace) of ktlsd would hold
	 * private keys, ticket keys and session secrets, much of it in OpenSSL's memory that
	 * no madvise reaches. run() undoes this only for --allow-core-dumps.
	 */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *sub = argv[1];
	if (!strcmp(sub, "probe"))
		return cmd_probe(argc - 1, argv + 1);
	if (!strcmp(sub, "server"))
		return cmd_server(argc - 1, argv + 1);
	if (!strcmp(sub, "client"))
		return cmd_client(argc - 1, argv + 1);
	if (!strcmp(sub, "status"))
		return cmd_status(argc - 1, argv + 1);
	if (!strcmp(sub, "agent"))
		return cmd_agent(argc - 1, argv + 1);
	if (!strcmp(sub, "check-config"))
		return cmd_check_config(argc - 1, argv + 1);
	if (!strcmp(sub, "--config") || !strncmp(sub, "--config=", 9))
		return cmd_config(argc, argv);
	if (!strcmp(sub, "--version") || !strcmp(sub, "-V"))
		return version();
	if (!strcmp(sub, "-h") || !strcmp(sub, "--help") || !strcmp(sub, "help")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "ktlsd: unknown subcommand '%s'\n", sub);
	usage(stderr);
	return EXIT_USAGE;
}
