#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""An idle ktlsd uses no CPU: every thread sleeps until there is something to do.

    idle_cpu_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki idle_cpu

idle_cpu  after one echo through it, ktlsd (2 workers, its main thread waiting for signals
          and file changes, no systemd watchdog) uses under 5% of one CPU over 3 s
          (a thread that polls without waiting uses ~100%)

Exit 0 pass, 1 fail, 77 skip.
"""
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import check, echo_roundtrip, main  # noqa: E402


def cpu_s(pid):
    """User + system CPU seconds of the whole process (all threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def t_idle_cpu(env):
    eport = env.echo_backend()
    # No watchdog: systemd's variables, if the test runs under a unit, are not ktlsd's.
    clean = {k: "" for k in ("WATCHDOG_USEC", "WATCHDOG_PID", "NOTIFY_SOCKET")}
    k = env.ktlsd([], target_port=eport, env_vars=clean)
    echo_roundtrip(env, k.port)
    time.sleep(0.5)  # the connection's end settles
    t0, c0 = time.monotonic(), cpu_s(k.proc.pid)
    time.sleep(3)
    used = (cpu_s(k.proc.pid) - c0) / (time.monotonic() - t0)
    check(k.alive(), "ktlsd died")
    check(used < 0.05, f"idle ktlsd used {used:.0%} of a CPU")
    print(f"idle ktlsd: {used:.1%} of a CPU over 3 s")


if __name__ == "__main__":
    sys.exit(main({"idle_cpu": t_idle_cpu}))
