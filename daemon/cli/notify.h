/* SPDX-License-Identifier: MIT */
/*
 * systemd's service notifications (sd_notify), for Type=notify units. Each call is a no-op
 * when ktlsd was not started by systemd (no $NOTIFY_SOCKET), so callers need not check.
 *
 *   notify_ready()      once every listener accepts         READY=1
 *   notify_reloading()  a reload starts (before anything    RELOADING=1, MONOTONIC_USEC=
 *                       is reread); notify_ready() when it
 *                       is done, whether it worked or not
 *   notify_stopping()   SIGTERM/SIGINT taken: drain begins  STOPPING=1
 *   notify_status(...)  one line for `systemctl status`     STATUS=
 *   notify_watchdog()   the main loop is alive              WATCHDOG=1
 */
#ifndef KTLSD_DAEMON_NOTIFY_H
#define KTLSD_DAEMON_NOTIFY_H

#include <stdint.h>

void notify_ready(void);
void notify_reloading(void);
void notify_stopping(void);
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void notify_watchdog(void);

/* How often to call notify_watchdog, in microseconds (half of WatchdogSec=); 0: never. */
uint64_t notify_watchdog_period_us(void);

#endif
