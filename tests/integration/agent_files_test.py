#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""`ktlsd agent`'s files when something other than a regular file stands in their place
(whoever can write a certificate's or CRL's directory can put a FIFO there): the agent
refuses it at once, never blocks opening it. On the host, before any netlink:

    agent_files_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki TEST

fifo    a FIFO as --cacert, --cert, --key, --crl or --config: exit 2 within 10 s, "not a regular file"
"""
import os
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import check, main  # noqa: E402


def t_fifo(env):
    """Each file option given a FIFO: refused, one line, no wait for a writer."""
    fifo = os.path.join(env.dir, "fifo.pem")
    os.mkfifo(fifo)
    files = {"cacert": env.p("ca.pem"), "cert": env.p("server.pem"),
             "key": env.p("server.key"), "crl": None}
    for opt in files:
        args = []
        for o, path in files.items():
            path = fifo if o == opt else path
            if path:
                args += ["--" + o, path]
        try:
            p = subprocess.run([env.args.ktlsd, "agent", "--allow-all"] + args,
                               capture_output=True, text=True, timeout=10)
        except subprocess.TimeoutExpired:
            check(False, f"--{opt} FIFO: the agent blocked opening it")
        err = p.stderr.strip()
        check(p.returncode == 2, f"--{opt} FIFO: exit {p.returncode}, want 2 ({err})")
        check(f"--{opt} {fifo}: not a regular file" in err, f"--{opt} FIFO: {err!r}")
    try:
        p = subprocess.run([env.args.ktlsd, "agent", "--config", fifo], capture_output=True,
                           text=True, timeout=10)
    except subprocess.TimeoutExpired:
        check(False, "--config FIFO: the agent blocked opening it")
    check(p.returncode == 2 and f"--config {fifo}: not a regular file" in p.stderr,
          f"--config FIFO: {p.returncode} {p.stderr!r}")


TESTS = {"fifo": t_fifo}

if __name__ == "__main__":
    sys.exit(main(TESTS))
