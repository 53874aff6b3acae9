#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Config file and listener ownership, end to end with the real binary:

    config_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki TEST

two_services     two services in one process from an INI file; check-config errors with
                 line numbers, and the daemon refusing the same files the same way
long_line        a 200+ byte allow-uri line cannot smuggle allow-all; over 64 KiB is refused
mode_order       mode applies to its whole section: a server key above mode = client is an
                 error, client keys above it are client keys
dup_listen       two services on one address: exit 2
second_instance  a second ktlsd on a port ktlsd listens on: exit 2, the first keeps them all
bind_in_use      a port held by another program (plain, or SO_REUSEPORT): exit 2

Exit 0 pass, 1 fail, 77 skip.
"""
import os
import re
import signal
import socket
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import (Fail, Ktlsd, check, echo_roundtrip, free_port, main,  # noqa: E402
                     plain_roundtrip, s_client)


def write(env, name, text):
    path = os.path.join(env.dir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def svc(env, name, listen, target, extra=""):
    return f"""[service {name}]
listen = {listen}
target = {target}
cert = {env.p('server.pem')}
key = {env.p('server.key')}
cacert = {env.p('ca.pem')}
{extra}"""


def check_config(env, path):
    r = subprocess.run([env.args.ktlsd, "check-config", path], capture_output=True, timeout=20)
    return r.returncode, r.stdout.decode(), r.stderr.decode().strip()


def refused(env, name, path, line, rx):
    """check-config and the daemon both exit 2 with the same one line naming FILE:LINE."""
    rc, _, err = check_config(env, path)
    check(rc == 2, f"{name}: check-config exit {rc} {err!r}")
    check(len(err.splitlines()) == 1, f"{name}: not one line: {err!r}")
    check(f"{os.path.basename(path)}:{line}: " in err, f"{name}: expected line {line}: {err!r}")
    check(re.search(rx, err), f"{name}: {err!r} does not match {rx!r}")
    r = subprocess.run([env.args.ktlsd, "--config", path], capture_output=True, timeout=20)
    check(r.returncode == 2 and r.stderr.decode().strip() == err,
          f"{name}: --config: {r.returncode} {r.stderr!r}")
    print(f"{name}: exit 2: {err}")


def start_config(env, path, service):
    log = path + ".log"
    pr = env.spawn([env.args.ktlsd, "--config", path], stderr=open(log, "w"))
    k = Ktlsd(pr, None, log)
    k.wait_line(rf"event=listening service={service}", timeout=60)
    return k


def t_two_services(env):
    """Two services in one process from an INI file; check-config errors with line numbers."""
    e1, e2 = env.echo_backend(), env.echo_backend()
    p1, p2 = free_port(), free_port()
    cfg = write(env, "two.ini", "; two services, one process\n[global]\nthreads = 2\n"
                "log-format = logfmt\n\n"
                + svc(env, "spiffe", f"127.0.0.1:{p1}", f"127.0.0.1:{e1}",
                      "allow-uri = spiffe://example.org/other spiffe://example.org/client\n\n")
                + svc(env, "dns", f"127.0.0.1:{p2}", f"127.0.0.1:{e2}",
                      "allow-dns = evil.example.net\n"))
    r = subprocess.run([env.args.ktlsd, "check-config", cfg], capture_output=True, timeout=20)
    check(r.returncode == 0, f"check-config of a good file: {r.stderr.decode()}")
    log = os.path.join(env.dir, "config.log")
    pr = env.spawn([env.args.ktlsd, "--config", cfg], stderr=open(log, "w"))
    k = Ktlsd(pr, p1, log)
    k.wait_line(r"event=listening service=dns")
    check(echo_roundtrip(env, p1) == b"ping over ktlsd\n", "service spiffe: good client")
    k.conn_end(r"service=spiffe .*reason=closed")
    check(echo_roundtrip(env, p2, who="evil-client") == b"ping over ktlsd\n",
          "service dns: evil-client is allowed there by DNS SAN")
    k.conn_end(r"service=dns .*reason=closed .*dns=evil.example.net")
    rc, out, err = s_client(env, p2, ["-cert", env.p("client.pem"), "-key",
                                      env.p("client.key")], b"x\n")
    k.conn_end(r'service=dns .*reason="identity not allowed"')
    pr.send_signal(signal.SIGTERM)
    check(pr.wait(timeout=10) == 0, "config run did not exit 0 on SIGTERM")

    a = svc(env, "a", f"127.0.0.1:{p1}", f"127.0.0.1:{e1}")
    cases = [
        ("malformed line", a + "allow-all = yes\nthis line has no equals sign\n", 8,
         r"malformed line"),
        ("unknown key", a + "allow-all = yes\nallow-everything = yes\n", 8,
         r"unknown key 'allow-everything'"),
        ("bad address", a.replace(f"listen = 127.0.0.1:{p1}", "listen = 127.0.0.1:http")
         + "allow-all = yes\n", 2, r"listen '127.0.0.1:http': port must be"),
        ("missing cert", a.replace(env.p("server.pem"), "/nonexistent/server.pem")
         + "allow-all = yes\n", 4, r"cert /nonexistent/server.pem: No such file"),
        ("no allow rule", "[global]\nthreads = 1\n\n" + a, 4, r"no allow-uri.*allow-all"),
        ("unknown section", "[services a]\nlisten = 127.0.0.1:1\n", 1, r"unknown section"),
        ("key not matching cert", a.replace(env.p("server.key"), env.p("client.key"))
         + "allow-all = yes\n", 1, r"does not match cert"),
    ]
    for name, text, line, rx in cases:
        path = write(env, "bad.ini", text)
        r = subprocess.run([env.args.ktlsd, "check-config", path], capture_output=True,
                           timeout=20)
        err = r.stderr.decode().strip()
        check(r.returncode == 2, f"{name}: exit {r.returncode} {err!r}")
        check(len(err.splitlines()) == 1, f"{name}: not one line: {err!r}")
        check(f"bad.ini:{line}:" in err, f"{name}: expected line {line} in {err!r}")
        check(re.search(rx, err), f"{name}: {err!r} does not match {rx!r}")
        print(f"check-config {name}: exit 2: {err}")
        # The daemon refuses the same file the same way.
        r = subprocess.run([env.args.ktlsd, "--config", path], capture_output=True, timeout=20)
        check(r.returncode == 2 and r.stderr.decode().strip() == err,
              f"--config {name}: {r.returncode} {r.stderr!r}")


def t_long_line(env):
    echo, port = env.echo_backend(), free_port()
    # libinih cut at 199 bytes: "allow-all=yes" from byte 199 on became a key of its own.
    head = "allow-uri = spiffe://example.org/client spiffe://example.org/"
    line = head + "a" * (199 - len(head)) + "allow-all=yes"
    check(line[199:] == "allow-all=yes", "the smuggled key must start at byte 199")
    path = write(env, "long.ini", svc(env, "a", f"127.0.0.1:{port}", f"127.0.0.1:{echo}",
                                      line + "\n"))
    rc, out, err = check_config(env, path)
    if rc == 0:
        # Accepted as one long allow-uri list: then the service must not be allow-all.
        k = start_config(env, path, "a")
        check(echo_roundtrip(env, port) == b"ping over ktlsd\n", "allowed client refused")
        k.conn_end(r"service=a .*reason=closed")
        try:
            got = echo_roundtrip(env, port, who="evil-client")
        except OSError:
            got = b""
        check(got == b"", f"evil-client got through the smuggled allow-all: {got!r}")
        k.conn_end(r'service=a .*reason="identity not allowed"')
        print("long line: read whole; evil-client refused, client allowed")
        k.proc.send_signal(signal.SIGTERM)
        check(k.proc.wait(timeout=10) == 0, "SIGTERM exit status")
    else:
        check(rc == 2, f"long line: check-config exit {rc}: {err!r}")
        print(f"long line: refused: {err}")

    # Past 64 KiB a line is refused with its number, never cut.
    big = "allow-uri = " + " ".join(f"spiffe://example.org/{i:08d}" for i in range(2500))
    check(len(big) > 65536, "the line must be over the limit")
    path = write(env, "huge.ini", svc(env, "a", f"127.0.0.1:{port}", f"127.0.0.1:{echo}",
                                      big + "\n"))
    refused(env, "over 64 KiB", path, 7, r"line too long")
    # Just under it is a line like any other.
    ok = "allow-uri = spiffe://example.org/client " + " ".join(
        f"spiffe://example.org/{i:08d}" for i in range(2000))
    check(200 < len(ok) < 65536, "the line must be under the limit")
    path = write(env, "big.ini", svc(env, "a", f"127.0.0.1:{port}", f"127.0.0.1:{echo}",
                                     ok + "\n"))
    rc, out, err = check_config(env, path)
    check(rc == 0 and "ok (1 service)" in out, f"a {len(ok)}-byte line: exit {rc} {err!r}")


def t_mode_order(env):
    echo, sport, cport = env.echo_backend(), free_port(), free_port()
    # Before: allow-all (a server key) was applied, then mode = client made it verify-any.
    bad = f"""[service c]
allow-all = yes
mode = client
listen = 127.0.0.1:{cport}
target = 127.0.0.1:{sport}
server-name = localhost
cert = {env.p('client.pem')}
key = {env.p('client.key')}
cacert = {env.p('ca.pem')}
"""
    refused(env, "server key above mode = client", write(env, "bad.ini", bad), 2,
            r"key 'allow-all' is for mode = server, but \[service c\] has mode = client")
    refused(env, "client key in a server", write(env, "bad2.ini", svc(
        env, "s", f"127.0.0.1:{sport}", f"127.0.0.1:{echo}",
        "allow-all = yes\nverify-any = yes\n")), 8,
        r"key 'verify-any' is for mode = client, but \[service s\] has mode = server")

    # Client keys above the mode line are the client's: this client verifies the server.
    good = svc(env, "s", f"127.0.0.1:{sport}", f"127.0.0.1:{echo}",
               "allow-uri = spiffe://example.org/client\n") + f"""
[service c]
verify-uri = spiffe://example.org/server
server-name = localhost
listen = 127.0.0.1:{cport}
target = 127.0.0.1:{sport}
cert = {env.p('client.pem')}
key = {env.p('client.key')}
cacert = {env.p('ca.pem')}
mode = client
"""
    path = write(env, "good.ini", good)
    rc, out, err = check_config(env, path)
    check(rc == 0, f"client keys above mode = client: exit {rc} {err!r}")
    k = start_config(env, path, "c")
    check(plain_roundtrip(cport) == b"plain ping\n", "client -> server -> echo")
    k.wait_line(r"event=conn_end service=c .*reason=closed")
    k.proc.send_signal(signal.SIGTERM)
    check(k.proc.wait(timeout=10) == 0, "SIGTERM exit status")

    # The same client verifying a name the server does not have refuses it.
    path = write(env, "wrong.ini", good.replace("verify-uri = spiffe://example.org/server",
                                                "verify-uri = spiffe://example.org/nobody"))
    k = start_config(env, path, "c")
    check(plain_roundtrip(cport) == b"", "client accepted a server it was told not to")
    k.wait_line(r"event=conn_end service=c .*reason=")
    print("mode order: client keys above mode = client verify the server")


def t_dup_listen(env):
    echo, port = env.echo_backend(), free_port()
    text = (svc(env, "a", f"127.0.0.1:{port}", f"127.0.0.1:{echo}", "allow-all = yes\n\n")
            + svc(env, "b", f"127.0.0.1:{port}", f"127.0.0.1:{echo}", "allow-all = yes\n"))
    refused(env, "same address", write(env, "dup.ini", text), 9,
            rf"\[service b\]: listen 127.0.0.1:{port} overlaps listen 127.0.0.1:{port} of "
            r"\[service a\] \(line 1\)")
    text = (svc(env, "a", f"127.0.0.1:{port}", f"127.0.0.1:{echo}", "allow-all = yes\n\n")
            + svc(env, "b", f"0.0.0.0:{port}", f"127.0.0.1:{echo}", "allow-all = yes\n"))
    refused(env, "wildcard", write(env, "dup2.ini", text), 9,
            rf"listen 0.0.0.0:{port} overlaps listen 127.0.0.1:{port}")


def second_refused(env, argv, rx):
    pr = env.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = pr.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        pr.kill()
        raise Fail(f"{argv[1]}: the second ktlsd is running: it shares the port")
    err = err.decode().strip()
    check(pr.returncode == 2, f"second ktlsd: exit {pr.returncode} {err!r}")
    check(len(err.splitlines()) == 1, f"second ktlsd: not one line: {err!r}")
    check(re.search(rx, err), f"second ktlsd: {err!r} does not match {rx!r}")
    print(f"second ktlsd: exit 2: {err}")


def t_second_instance(env):
    echo = env.echo_backend()
    k = env.ktlsd([], target_port=echo)
    argv = [env.args.ktlsd, "server", "--listen", f"127.0.0.1:{k.port}", "--target",
            f"127.0.0.1:{echo}", "--cert", env.p("server.pem"), "--key", env.p("server.key"),
            "--cacert", env.p("ca.pem"), "--allow-all", "--threads", "2"]
    second_refused(env, argv, rf"^ktlsd: listen 127.0.0.1:{k.port}: address in use$")
    second_refused(env, argv[:3] + [f"0.0.0.0:{k.port}"] + argv[4:],
                   rf"^ktlsd: listen 0.0.0.0:{k.port}: address in use$")
    path = write(env, "second.ini", svc(env, "again", f"127.0.0.1:{k.port}",
                                        f"127.0.0.1:{echo}", "allow-all = yes\n"))
    second_refused(env, [env.args.ktlsd, "--config", path],
                   rf"second.ini:1: \[service again\]: listen 127.0.0.1:{k.port}: "
                   r"address in use$")
    # Had any of them joined the SO_REUSEPORT group, some of these would land there.
    n = 40
    for i in range(n):
        check(echo_roundtrip(env, k.port) == b"ping over ktlsd\n", f"connection {i} failed")
    check(k.alive(), "the first ktlsd died")
    k.proc.send_signal(signal.SIGTERM)
    check(k.proc.wait(timeout=15) == 0, "SIGTERM exit status")
    counters = k.wait_line(r"event=counters")
    check(re.search(rf"\baccepted={n}\b", counters), f"first ktlsd did not get all: {counters}")
    print(f"the first ktlsd served all {n} connections")


def t_bind_in_use(env):
    echo = env.echo_backend()
    for reuseport in (False, True):
        ls = socket.socket()
        if reuseport:
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        ls.bind(("127.0.0.1", 0))
        ls.listen(16)
        port = ls.getsockname()[1]
        argv = [env.args.ktlsd, "server", "--listen", f"127.0.0.1:{port}", "--target",
                f"127.0.0.1:{echo}", "--cert", env.p("server.pem"), "--key",
                env.p("server.key"), "--cacert", env.p("ca.pem"), "--allow-all",
                "--threads", "2"]
        second_refused(env, argv, rf"^ktlsd: listen 127.0.0.1:{port}: address in use$")
        # Nothing of ktlsd's took a connection meant for the owner.
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        ls.settimeout(5)
        a, _ = ls.accept()
        a.close()
        c.close()
        ls.close()
        print(f"port held by a {'SO_REUSEPORT ' if reuseport else ''}listener: refused")


TESTS = {
    "two_services": t_two_services,
    "long_line": t_long_line,
    "mode_order": t_mode_order,
    "dup_listen": t_dup_listen,
    "second_instance": t_second_instance,
    "bind_in_use": t_bind_in_use,
}

if __name__ == "__main__":
    sys.exit(main(TESTS))
