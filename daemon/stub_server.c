// SPDX-License-Identifier: MIT
/* Placeholder until the server/client/config commands land; deleted by that change. */
#include <stdio.h>
#include "commands.h"
static int not_yet(void)
{
	fputs("ktlsd: this subcommand is not built yet\n", stderr);
	return EXIT_RUNTIME;
}
int cmd_server(int argc, char **argv)
{
	return not_yet();
}
int cmd_client(int argc, char **argv)
{
	return not_yet();
}
int cmd_config(int argc, char **argv)
{
	return not_yet();
}
int cmd_check_config(int argc, char **argv)
{
	return not_yet();
}
