#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Session resumption, both server modes (stateless tickets under rotated keys, and a session
cache): a ktlsd client pair and openssl s_client (TLS 1.3 and 1.2) resume and keep the
verified identity; tickets expire, stay per instance, and do not outlive the client
certificate (libfaketime); without tickets nothing waits for them. A ktlsd client resumes
with a TLS 1.2 server (openssl s_server) too.

    resumption_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki
"""
import os
import signal
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import (Skip, check, free_port, ktlsd_client, log_fields, main,  # noqa: E402
                     plain_roundtrip, sess_client)


def resumption_mode(env, eport, flag):
    """One server resumption mode: a ktlsd client pair, openssl s_client (TLS 1.3 and 1.2),
    another instance, expiry, and the counter."""
    srv = env.ktlsd([flag, "--ticket-lifetime", "3"], target_port=eport)
    # One client worker: its ticket cache is per worker, this makes every reconnect hit it.
    cli = ktlsd_client(env, srv.port, ["--verify-uri", "spiffe://example.org/server",
                                       "--threads", "1"])
    seen = []
    for i in range(4):
        msg = f"resume {i}\n".encode()
        check(plain_roundtrip(cli.port, msg) == msg, f"{flag}: echo {i}")
        c = log_fields(cli.conn_end(r"reason=closed"))
        sv = log_fields(srv.conn_end(r"reason=closed"))
        check(c.get("resumed") == sv.get("resumed"), f"{flag}: ends disagree: {c} / {sv}")
        # The identity survives resumption on both ends (it comes from the session).
        check(sv.get("uri") == "spiffe://example.org/client", f"{flag}: server lost the peer: {sv}")
        check(c.get("uri") == "spiffe://example.org/server", f"{flag}: client lost the peer: {c}")
        seen.append(c["resumed"])
    # Each resumed connection brings a fresh ticket: the single-use cache never runs dry.
    check(seen == ["no", "yes", "yes", "yes"], f"{flag}: resumed per connection: {seen}")
    print(f"ktlsd client -> ktlsd server {flag}: resumed {seen}")

    # A client nobody here wrote: openssl s_client -sess_out / -sess_in, TLS 1.3 and 1.2.
    for ver in ("-tls1_3", "-tls1_2"):
        sess = os.path.join(env.dir, f"sess{ver}.pem")
        out = sess_client(env, srv.port, "-sess_out", sess, [ver])
        check("New," in out, f"{flag}: s_client {ver} first handshake: {out[-600:]}")
        srv.conn_end(r"resumed=no")
        out = sess_client(env, srv.port, "-sess_in", sess, [ver])
        check("Reused," in out, f"{flag}: s_client {ver} did not resume: {out[-600:]}")
        line = srv.conn_end(r"resumed=yes")
        check("uri=spiffe://example.org/client" in line, f"{flag}: identity after resume: {line}")
        print(f"{flag}: s_client {ver} Reused; server logged "
              f"{line[line.find('resumed='):][:60]}")

    # Sessions are this instance's: another ktlsd (other keys, other cache) does a full
    # handshake.
    other = env.ktlsd([flag], target_port=eport)
    sess = os.path.join(env.dir, "sess-other.pem")
    sess_client(env, srv.port, "-sess_out", sess, ["-tls1_3"])
    srv.conn_end(r"reason=closed")
    out = sess_client(env, other.port, "-sess_in", sess, ["-tls1_3"])
    check("New," in out, f"{flag}: another instance accepted our ticket: {out[-600:]}")
    other.conn_end(r"resumed=no")

    # Lifetime: after --ticket-lifetime (3 s) the ticket no longer resumes.
    sess_client(env, srv.port, "-sess_out", sess, ["-tls1_3"])
    srv.conn_end(r"reason=closed")
    time.sleep(4)
    out = sess_client(env, srv.port, "-sess_in", sess, ["-tls1_3"])
    check("New," in out, f"{flag}: expired ticket resumed: {out[-600:]}")
    srv.conn_end(r"resumed=no")
    srv.proc.send_signal(signal.SIGTERM)
    line = srv.wait_line(r"event=counters", timeout=20)
    check(int(log_fields(line)["resumed"]) == 5, f"{flag}: resumed counter: {line}")
    return srv


def short_client_cert(env, days):
    """The test client's key and identity in a certificate valid for `days` days."""
    csr, ext, pem = (os.path.join(env.dir, f"short.{x}") for x in ("csr", "ext", "pem"))
    with open(ext, "w") as f:
        f.write("subjectAltName=URI:spiffe://example.org/client\n"
                "extendedKeyUsage=clientAuth\n")
    subprocess.run(["openssl", "req", "-new", "-key", env.p("client.key"), "-subj",
                    "/O=ktlsd test/CN=client", "-out", csr], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", env.p("ca.pem"), "-CAkey",
                    env.p("ca.key"), "-set_serial", "4242", "-days", str(days), "-extfile",
                    ext, "-out", pem], check=True, capture_output=True)
    return pem


FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


def expired_cert_not_resumed(env, eport, flag):
    """A session must not outlive the client certificate it was made with: the server's
    clock (libfaketime) jumps past the certificate's end but not the ticket's; the client
    must get a full handshake, which then refuses the expired certificate."""
    if not os.path.exists(FAKETIME_LIB):
        raise Skip(f"{flag}: expiry across resumption not tested: {FAKETIME_LIB} missing "
                   "(scripts/install-deps installs faketime)")
    short = short_client_cert(env, 2)
    # Beside the certificates: Landlock lets ktlsd read only the configured files' folders.
    clock = os.path.join(env.pki, "faketime")
    with open(clock, "w") as f:
        f.write("+0\n")
    k = env.ktlsd([flag, "--ticket-lifetime", "604800"], target_port=eport,
                  env_vars={"LD_PRELOAD": FAKETIME_LIB, "FAKETIME_TIMESTAMP_FILE": clock,
                            "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
    sess = os.path.join(env.dir, "sess-short.pem")
    out = sess_client(env, k.port, "-sess_out", sess, ["-tls1_3"], cert=short)
    check("New," in out, f"{flag}: short-lived cert, first handshake: {out[-400:]}")
    k.conn_end(r"reason=closed .*resumed=no")
    with open(clock, "w") as f:
        f.write("+3d\n")
    out = sess_client(env, k.port, "-sess_in", sess, ["-tls1_3"], cert=short)
    check("Reused," not in out, f"{flag}: resumed with an expired client certificate")
    line = k.conn_end(r"reason=")
    check("certificate has expired" in line, f"{flag}: after the cert's end: {line}")
    print(f"{flag}: ticket still valid, certificate expired: full handshake, "
          f"{line[line.find('reason='):][:70]}")


def t_resumption(env):
    """Session resumption, both server modes (stateless tickets under rotated keys, and a
    session cache): ktlsd client and openssl s_client resume, keep the verified identity,
    expire, and stay per instance; without tickets nothing waits for them."""
    eport = env.echo_backend()
    for flag in ("--resumption", "--resumption=cache"):
        resumption_mode(env, eport, flag)
        expired_cert_not_resumed(env, eport, flag)

    # Without --resumption the server sends no tickets: the client never resumes, and
    # nothing waits for tickets that never come.
    plain = env.ktlsd([], target_port=eport)
    cli2 = ktlsd_client(env, plain.port, ["--verify-uri", "spiffe://example.org/server",
                                          "--threads", "1"])
    for i in range(2):
        check(plain_roundtrip(cli2.port) == b"plain ping\n", "echo without tickets")
        check("resumed=no" in cli2.conn_end(r"reason=closed"), "resumed without tickets")

    # --no-resumption on the client: never offers a ticket.
    srv = env.ktlsd(["--resumption"], target_port=eport)
    cli3 = ktlsd_client(env, srv.port, ["--verify-uri", "spiffe://example.org/server",
                                        "--threads", "1", "--no-resumption"])
    for i in range(2):
        check(plain_roundtrip(cli3.port) == b"plain ping\n", "echo, client resumption off")
        check("resumed=no" in cli3.conn_end(r"reason=closed"), "resumed with it off")
        srv.conn_end(r"reason=closed")


    tls12_server(env)


def tls12_server(env):
    """A TLS 1.2 server's ticket comes during the handshake (on the worker's handshake
    thread): the ktlsd client keeps that session (in its worker's cache) and resumes."""
    sport = free_port()
    env.spawn(["openssl", "s_server", "-accept", f"127.0.0.1:{sport}", "-tls1_2", "-Verify",
               "1", "-verify_return_error", "-cert", env.p("server.pem"), "-key",
               env.p("server.key"), "-CAfile", env.p("ca.pem"), "-rev", "-naccept", "2"],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Listening once the port cannot be bound (a probe connection would use an accept).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", sport))
            time.sleep(0.05)
        except OSError:
            break
    cli = ktlsd_client(env, sport, ["--verify-dns", "localhost", "--threads", "1"])
    for want in ("resumed=no", "resumed=yes"):
        got = plain_roundtrip(cli.port, b"abcdef\n")
        check(got.startswith(b"fedcba"), f"s_server -rev answered {got!r}")
        line = cli.conn_end(r"reason=")
        check("tls=TLSv1.2" in line and want in line, f"TLS 1.2, expected {want}: {line}")
    print("TLS 1.2 server: the full handshake's session resumed")


TESTS = {
    "resumption": t_resumption,
}

if __name__ == "__main__":
    sys.exit(main(TESTS))
