/* SPDX-License-Identifier: MIT */
/* The ktlsd subcommands; each returns the process exit status (0 ok, 1 runtime, 2 usage). */
#ifndef KTLSD_COMMANDS_H
#define KTLSD_COMMANDS_H

enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

int cmd_probe(int argc, char **argv);	     /* ktlsd probe [--json] */
int cmd_server(int argc, char **argv);	     /* ktlsd server ... */
int cmd_client(int argc, char **argv);	     /* ktlsd client ... */
int cmd_config(int argc, char **argv);	     /* ktlsd --config FILE */
int cmd_check_config(int argc, char **argv); /* ktlsd check-config FILE */
int cmd_status(int argc, char **argv);	     /* ktlsd status [--admin ADDR] [--connections] */
int cmd_agent(int argc, char **argv);	     /* ktlsd agent ... (kernel handshake upcalls) */

struct service_config;
/* One operator line on stderr for service sc: "FILE:LINE: [service NAME]: msg" with a config
 * file (cfgpath), just msg on the command line. */
void service_error(const char *cfgpath, const struct service_config *sc, const char *msg);

#endif
