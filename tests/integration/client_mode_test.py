#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""`ktlsd client`: a sidecar pair (ktlsd client -> ktlsd server) end to end, against
openssl s_server and gnutls-serv, bad servers refused with their reasons, a dead remote, the
default name rule, a target name with two addresses, 200 connections through the pair.

    client_mode_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki
"""
import os
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import (check, free_port, ktlsd_client, main, plain_bulk,  # noqa: E402
                     plain_roundtrip, wait_port)


def t_client_mode(env):
    """ktlsd client: sidecar pair end to end, against openssl s_server, bad servers refused."""
    eport = env.echo_backend()
    srv = env.ktlsd([], target_port=eport)
    cli = ktlsd_client(env, srv.port, ["--verify-uri", "spiffe://example.org/server"])
    check(plain_roundtrip(cli.port) == b"plain ping\n", "sidecar pair echo")
    line = cli.conn_end(r"reason=closed")
    check("uri=spiffe://example.org/server" in line and "tls=TLSv1.3" in line, line)
    # Both ends on ktlsd's own records: the client (resuming, so it read the server's
    # tickets through OpenSSL first) and the server.
    check(" records=ktlsd " in line, f"client not on ktlsd's records: {line}")
    line = srv.conn_end(r"reason=closed .*uri=spiffe://example.org/client")
    check(" records=ktlsd " in line, f"server not on ktlsd's records: {line}")
    size = int(os.environ.get("KTLSD_BULK_MIB", "64")) << 20
    dt = plain_bulk(cli.port, size)
    line = cli.conn_end(r"reason=closed")
    check(f"bytes_in={size}" in line and f"bytes_out={size}" in line, line)
    print(f"sidecar pair: {size >> 20} MiB each way with half-close in {dt:.2f}s")

    # Against a TLS server nobody here wrote: openssl s_server demanding a client cert.
    sport = free_port()
    env.spawn(["openssl", "s_server", "-accept", f"127.0.0.1:{sport}", "-Verify", "1",
               "-verify_return_error", "-cert", env.p("server.pem"), "-key",
               env.p("server.key"), "-CAfile", env.p("ca.pem"), "-rev", "-naccept", "1"],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port_quietly = time.time() + 5
    while time.time() < wait_port_quietly:
        try:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", sport))
            time.sleep(0.05)
        except OSError:
            break
    cli2 = ktlsd_client(env, sport, ["--verify-dns", "localhost"])
    got = plain_roundtrip(cli2.port, b"abcdef\n")
    check(got.startswith(b"fedcba"), f"s_server -rev answered {got!r}")
    cli2.conn_end(r"dns=localhost")

    # Bad servers: each refused by the client with its own reason; the app sees EOF.
    for cert, rx in [("wrong-server", r'reason="identity not allowed" claimed_uri=spiffe://example.org/wrong'),
                     ("other-server", r'reason="certificate verify failed: unable to get local '
                                      r'issuer certificate"'),
                     ("expired-server", r'reason="certificate verify failed: certificate has '
                                        r'expired"')]:
        bad = env.ktlsd([], target_port=eport, cert=cert, allow=["--allow-all"])
        c3 = ktlsd_client(env, bad.port, ["--verify-uri", "spiffe://example.org/server"])
        got = plain_roundtrip(c3.port)
        check(got == b"", f"{cert}: app got {got!r}")
        line = c3.conn_end(rx)
        print(f"client vs {cert}: app saw EOF; {line[line.find('reason='):]}")
    check(plain_roundtrip(cli.port) == b"plain ping\n", "good pair after bad servers")

    # Remote down: the app gets a clean close and one log line.
    c4 = ktlsd_client(env, free_port(), ["--verify-any"])
    check(plain_roundtrip(c4.port) == b"", "dead remote")
    c4.conn_end(r'reason="server connect failed: Connection refused"')

    # No --verify-* rule and a target given by name: the name is the SNI and the server
    # must carry it as a DNS SAN (the right server does, wrong-server does not).
    cd = ktlsd_client(env, None, target=f"localhost:{srv.port}")
    line = cd.wait_line(r"event=listening")
    check("server_name=localhost" in line and "verify_dns=localhost" in line, line)
    check(plain_roundtrip(cd.port) == b"plain ping\n", "default name rule, right server")
    cd.conn_end(r"reason=closed .*dns=localhost")
    wrong = env.ktlsd([], target_port=eport, cert="wrong-server", allow=["--allow-all"])
    cw = ktlsd_client(env, None, target=f"localhost:{wrong.port}")
    check(plain_roundtrip(cw.port) == b"", "default name rule let wrong-server through")
    cw.conn_end(r'reason="identity not allowed" .*claimed_dns=wrong.example.net')
    r = subprocess.run([env.args.ktlsd, "client", "--listen", f"127.0.0.1:{free_port()}",
                        "--target", f"unix:{env.dir}/none.sock", "--cert", env.p("client.pem"),
                        "--key", env.p("client.key"), "--cacert", env.p("ca.pem")],
                       capture_output=True, timeout=20)
    check(r.returncode == 2 and b"--target is a unix socket" in r.stderr,
          f"unix target without a rule: {r.returncode} {r.stderr!r}")

    # A name with two addresses, the first refusing (::1, where nothing listens): the
    # next one is tried. The name lives in a private /etc/hosts in a mount namespace.
    hosts = os.path.join(env.dir, "hosts")
    with open(hosts, "w") as f:
        f.write("::1 twoaddr\n127.0.0.1 twoaddr\n127.0.0.1 localhost\n")
    probe = subprocess.run(["unshare", "-m", "sh", "-c",
                            f"mount --bind {hosts} /etc/hosts && getent ahosts twoaddr"],
                           capture_output=True, text=True)
    if probe.returncode != 0 or not probe.stdout.startswith("::1"):
        print(f"two-address target: not tested (no mount namespace here: {probe.stderr!r})")
    else:
        wrap = ["unshare", "-m", "sh", "-c", f'mount --bind {hosts} /etc/hosts && exec "$@"',
                "sh"]
        ct = ktlsd_client(env, None, ["--server-name", "localhost"], wrap=wrap,
                          target=f"twoaddr:{srv.port}")
        check(plain_roundtrip(ct.port) == b"plain ping\n", "second address of the target")
        ct.conn_end(r"reason=closed")
        print("two-address target: ::1 refused, 127.0.0.1 used")

    # gnutls-serv demanding a client certificate: another TLS stack on the far side.
    gport = free_port()
    env.spawn(["gnutls-serv", "--echo", "-q", "-p", str(gport), "--require-client-cert",
               "--verify-client-cert", "--x509certfile", env.p("server.pem"), "--x509keyfile", env.p("server.key"),
               "--x509cafile", env.p("ca.pem")],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(gport)
    cg = ktlsd_client(env, gport, ["--verify-uri", "spiffe://example.org/server"])
    check(plain_roundtrip(cg.port, b"to gnutls\n") == b"to gnutls\n", "gnutls-serv echo")
    line = cg.conn_end(r"uri=spiffe://example.org/server")
    print(f"client vs gnutls-serv: {line[line.find('reason='):]}")
    # ... and a client certificate it does not trust is turned away by it.
    cg2 = ktlsd_client(env, gport, ["--verify-uri", "spiffe://example.org/server"],
                       cert="other-client")
    check(plain_roundtrip(cg2.port) == b"", "gnutls-serv accepted an untrusted client cert")
    line = cg2.conn_end(r"reason=")
    check("reason=closed" not in line, f"untrusted client cert: {line}")

    # Many at once through the pair, each byte-exact.
    n = int(os.environ.get("KTLSD_PAIR_CONNS", "200"))
    errors = []

    def one(i):
        msg = f"pair {i} ".encode() * 50
        try:
            if plain_roundtrip(cli.port, msg, timeout=60) != msg:
                errors.append(f"conn {i}: bad echo")
        except OSError as e:
            errors.append(f"conn {i}: {e}")

    ths = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t0 = time.time()
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    check(not errors, f"{len(errors)} of {n} failed through the pair: {errors[:3]}")
    print(f"sidecar pair: {n} concurrent connections echoed in {time.time() - t0:.2f}s")


TESTS = {
    "client_mode": t_client_mode,
}

if __name__ == "__main__":
    sys.exit(main(TESTS, needs=("gnutls-serv",)))
