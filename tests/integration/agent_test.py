#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""`ktlsd agent` from outside, on the host (the kernel's NFS over TLS runs in the VM test
tests/vm/agent_nfs_test):

    agent_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki TEST

errors      bad options and files: exit 2 with one clear line, before any netlink
config      --config FILE: the [agent] section, other sections skipped, FILE:LINE errors
admin       --admin / admin =: address errors (exit 2, one line), a taken address, the
            unix socket bound before the netlink family is asked for and removed at exit
            (its /metrics is checked in the VM: tests/vm/agent_metrics_check.py)
no_family   a kernel without the "handshake" netlink family: exit 2, saying so (skips
            where the family exists: the VM test covers that side)
"""
import os
import socket
import struct
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import Skip, check, main  # noqa: E402


def run(env, args):
    p = subprocess.run([env.args.ktlsd, "agent"] + args, capture_output=True, text=True,
                       timeout=20)
    return p.returncode, p.stderr.strip()


def t_errors(env):
    """Every mistake exits 2 with one line naming it."""
    ca, cert, key = env.p("ca.pem"), env.p("server.pem"), env.p("server.key")
    cases = [
        ([], "--cacert is required"),
        (["--cacert", ca, "--cert", cert], "--cert and --key go together"),
        (["--cacert", ca, "--client-key", key], "--client-cert and --client-key go together"),
        (["--cacert", ca, "--cert", cert, "--key", key], "no --allow-uri"),
        (["--cacert", ca, "--allow-all"], "--allow-* rules apply to a server"),
        (["--cacert", ca, "--max-handshakes", "0"], "--max-handshakes: '0' is not a number"),
        (["--cacert", ca, "--handshake-timeout", "5x"], "--handshake-timeout: '5x'"),
        (["--cacert", ca, "--allow-uri", "no scheme"], "--allow-uri: malformed pattern"),
        (["--cacert", ca, "--log-format", "xml"], "--log-format: 'xml'"),
        (["--cacert", ca, "--bogus"], "unknown option or missing value: --bogus"),
        (["--cacert", ca, "extra"], "unexpected argument 'extra'"),
        (["--cacert", os.path.join(env.dir, "missing.pem")],
         "missing.pem: No such file or directory"),
        (["--cacert", ca, "--crl", os.path.join(env.dir, "no.crl")], "no.crl: No such file"),
        (["--cacert", ca, "--client-cert", cert, "--client-key", env.p("client.key")],
         "does not match"),
        (["--cacert", ca, "--crl", ca], "--crl"),
    ]
    for args, want in cases:
        rc, err = run(env, args)
        check(rc == 2, f"{args}: exit {rc}, want 2 ({err})")
        check(want in err, f"{args}: message {err!r} lacks {want!r}")
        check(len(err.splitlines()) == 1, f"{args}: more than one line: {err!r}")
    rc = subprocess.run([env.args.ktlsd, "agent", "--help"], capture_output=True,
                        text=True).returncode
    check(rc == 0, f"--help exit {rc}")


def family_exists(name):
    """CTRL_CMD_GETFAMILY over raw generic netlink: no libnl needed for the check."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16)  # NETLINK_GENERIC
    try:
        n = name.encode() + b"\0"
        attr = struct.pack("HH", 4 + len(n), 2) + n + b"\0" * (-len(n) % 4)
        body = struct.pack("BBH", 3, 1, 0) + attr  # CTRL_CMD_GETFAMILY, version 1
        s.send(struct.pack("IHHII", 16 + len(body), 16, 1, 1, 0) + body)  # GENL_ID_CTRL
        r = s.recv(8192)
        return struct.unpack("H", r[4:6])[0] != 2  # NLMSG_ERROR: no such family
    finally:
        s.close()


def t_no_family(env):
    """Without the family the agent refuses to start: exit 2, and the reason."""
    if family_exists("handshake"):
        raise Skip("this kernel has the handshake family (tests/vm/agent_nfs_test covers it)")
    rc, err = run(env, ["--cacert", env.p("ca.pem"), "--cert", env.p("server.pem"),
                        "--key", env.p("server.key"), "--allow-all"])
    check(rc == 2, f"exit {rc}, want 2 ({err})")
    check('no netlink family "handshake"' in err and "6.5" in err, f"unclear reason: {err!r}")


def t_config(env):
    """--config reads [agent] (other sections skipped); mistakes name FILE:LINE."""
    good = os.path.join(env.dir, "good.ini")
    with open(good, "w") as f:
        f.write(f"""[global]
threads = 2
[service web]
listen = 127.0.0.1:1
[agent]
# the kernel's servers
cacert = {env.p("ca.pem")}
cert = {env.p("server.pem")}
key = {env.p("server.key")}
allow-uri = spiffe://example.org/client
allow-all = no
max-handshakes = 8
""")
    rc, err = run(env, ["--config", good])
    if family_exists("handshake"):
        raise Skip("this kernel has the handshake family: the agent would run")
    # Parsing passed: what stops it is the kernel.
    check(rc == 2 and 'no netlink family "handshake"' in err, f"good config: {rc} {err!r}")
    cases = [
        ("[agent]\ncacert = x\nbogus = 1\n", ":3: unknown key in [agent]: 'bogus'"),
        ("[agent]\nallow-all = maybe\n", ":2: expected yes or no for 'allow-all'"),
        ("[agent]\nno equals sign\n", ":2: malformed line"),
        ("[agent]\nmax-handshakes = 0\n", ":2: bad value for 'max-handshakes'"),
        ("[service x]\nbogus = 1\n", "--cacert is required"),
    ]
    for i, (text, want) in enumerate(cases):
        path = os.path.join(env.dir, f"bad{i}.ini")
        with open(path, "w") as f:
            f.write(text)
        rc, err = run(env, ["--config", path])
        check(rc == 2 and want in err, f"{text!r}: exit {rc}, {err!r} lacks {want!r}")
    rc, err = run(env, ["--config", os.path.join(env.dir, "none.ini")])
    check(rc == 2 and "No such file" in err, f"missing file: {rc} {err!r}")


def t_admin(env):
    """--admin is checked like ktlsd server's, and bound before the kernel is asked."""
    base = ["--cacert", env.p("ca.pem"), "--cert", env.p("server.pem"), "--key",
            env.p("server.key"), "--allow-all"]
    cases = [
        (["--admin", "bogus"], "--admin 'bogus': expected host:port"),
        (["--admin", "0.0.0.0:9797"], "--admin '0.0.0.0:9797': not a loopback address"),
        (["--admin", "[::]:9797"], "not a loopback address"),
        (["--admin"], "unknown option or missing value: --admin"),
    ]
    for args, want in cases:
        rc, err = run(env, base + args)
        check(rc == 2, f"{args}: exit {rc}, want 2 ({err})")
        check(want in err, f"{args}: message {err!r} lacks {want!r}")
        check(len(err.splitlines()) == 1, f"{args}: more than one line: {err!r}")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    rc, err = run(env, base + ["--admin", f"127.0.0.1:{port}"])
    taken.close()
    check(rc == 2 and f"admin 127.0.0.1:{port}: Address already in use" in err,
          f"taken address: exit {rc}, {err!r}")
    ini = os.path.join(env.dir, "admin.ini")
    with open(ini, "w") as f:
        f.write(f"[agent]\ncacert = {env.p('ca.pem')}\nadmin = 0.0.0.0:9797\n")
    rc, err = run(env, ["--config", ini])
    check(rc == 2 and "--admin '0.0.0.0:9797': not a loopback address" in err,
          f"admin = in [agent]: exit {rc}, {err!r}")
    if family_exists("handshake"):
        raise Skip("this kernel has the handshake family: the agent would run")
    with open(ini, "a") as f:
        f.write("admin-allow-remote = yes\n")
    rc, err = run(env, ["--config", ini])
    check(rc == 2 and 'no netlink family "handshake"' in err,
          f"admin-allow-remote = yes: exit {rc}, {err!r}")
    # The socket is bound first (before any privilege drop), and removed on the way out.
    sock = os.path.join(env.dir, "admin.sock")
    rc, err = run(env, base + ["--admin", f"unix:{sock}"])
    check(rc == 2 and 'no netlink family "handshake"' in err, f"unix admin: {rc} {err!r}")
    check(not os.path.exists(sock), f"{sock} left behind")


TESTS = {"errors": t_errors, "no_family": t_no_family, "config": t_config, "admin": t_admin}

if __name__ == "__main__":
    sys.exit(main(TESTS))
