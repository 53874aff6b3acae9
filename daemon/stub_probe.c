// SPDX-License-Identifier: MIT
/* Placeholder until cmd_probe.c lands; deleted by that change. */
#include <stdio.h>
#include "commands.h"
int cmd_probe(int argc, char **argv)
{
	fputs("ktlsd: probe is not built yet\n", stderr);
	return EXIT_RUNTIME;
}
