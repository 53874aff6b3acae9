#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""`ktlsd agent`'s sandbox options from outside, on the host, before any netlink (the sandbox
itself and reload run in the VM test tests/vm/agent_nfs_test):

    agent_sandbox_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki TEST

errors     --user of no such user, a bad landlock/seccomp value in [agent]: exit 2, one line
accepted   --user root, --no-landlock, --no-seccomp and the [agent] keys user/landlock/seccomp
           parse (what stops the agent then is the kernel's missing family, or it runs)
"""
import os
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import Skip, check, main  # noqa: E402
from agent_test import family_exists  # noqa: E402


def run(env, args):
    p = subprocess.run([env.args.ktlsd, "agent"] + args, capture_output=True, text=True,
                       timeout=20)
    return p.returncode, p.stderr.strip()


def base(env):
    return ["--cacert", env.p("ca.pem"), "--cert", env.p("server.pem"), "--key",
            env.p("server.key"), "--allow-all"]


def ini(env, name, body):
    path = os.path.join(env.dir, name)
    with open(path, "w") as f:
        f.write(f"[agent]\ncacert = {env.p('ca.pem')}\n" + body)
    return path


def t_errors(env):
    """Each mistake exits 2 with one line naming it, before netlink."""
    cases = [
        (base(env) + ["--user", "no-such-user-ktlsd"],
         "--user: user 'no-such-user-ktlsd': no such user"),
        (base(env) + ["--no-landlock=yes"], "unknown option or missing value"),
        (["--config", ini(env, "ll.ini", "landlock = maybe\n")],
         ":3: expected yes or no for 'landlock'"),
        (["--config", ini(env, "sc.ini", "seccomp = 1\n")],
         ":3: expected yes or no for 'seccomp'"),
        (["--config", ini(env, "u.ini", "user = no-such-user-ktlsd\n")],
         "--user: user 'no-such-user-ktlsd'"),
    ]
    for args, want in cases:
        rc, err = run(env, args)
        check(rc == 2, f"{args}: exit {rc}, want 2 ({err})")
        check(want in err, f"{args}: message {err!r} lacks {want!r}")
        check(len(err.splitlines()) == 1, f"{args}: more than one line: {err!r}")


def t_accepted(env):
    """The spellings the server uses parse; the kernel is what stops the agent here."""
    if family_exists("handshake"):
        raise Skip("this kernel has the handshake family: the agent would run "
                   "(tests/vm/agent_nfs_test covers it)")
    cases = [
        base(env) + ["--user", "root", "--no-landlock", "--no-seccomp"],
        base(env) + ["--user", "65534"],
        ["--config", ini(env, "ok.ini", "landlock = no\nseccomp = yes\nuser = root\n")],
    ]
    for args in cases:
        rc, err = run(env, args)
        check(rc == 2 and 'no netlink family "handshake"' in err, f"{args}: {rc} {err!r}")
    out = subprocess.run([env.args.ktlsd, "agent", "--help"], capture_output=True,
                         text=True).stdout
    for opt in ("--user USER", "--no-landlock", "--no-seccomp", "SIGHUP"):
        check(opt in out, f"--help does not mention {opt}")


TESTS = {"errors": t_errors, "accepted": t_accepted}

if __name__ == "__main__":
    sys.exit(main(TESTS))
