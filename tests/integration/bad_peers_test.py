#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Bad peers against `ktlsd server`: no client certificate, an unknown CA, an expired or
disallowed certificate, TLS 1.1, plaintext HTTP, garbage, a stalled handshake, a reset, a
dead backend, one over --max-conns. Each is refused with its own log line and counted, and
a good client works after each; prints what each peer saw beside ktlsd's log.

    bad_peers_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki
"""
import random
import re
import signal
import socket
import ssl
import struct
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import check, echo_roundtrip, free_port, main, s_client, tls_connect  # noqa: E402


def good_client_works(env, k):
    got = echo_roundtrip(env, k.port)
    check(got == b"ping over ktlsd\n", f"good client after bad peer got {got!r}")
    k.conn_end(r"reason=closed.*uri=spiffe://example.org/client")
    check(k.alive(), "ktlsd died")


def raw_send(port, data, linger_rst=False, wait_reply=2.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    if linger_rst:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        return b"(reset sent)"
    s.sendall(data)
    s.settimeout(wait_reply)
    got = b""
    try:
        while True:
            b = s.recv(4096)
            if not b:
                break
            got += b
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    return got


# Keep the client's stdin open until the server ends the connection, so that a TLS 1.3
# client (whose handshake completes before the server rejects its certificate) reads and
# prints the alert instead of exiting on its own EOF first.
WAIT_EXIT = {"expect": b"\0never", "timeout": 5}


def saw(err):
    """The OpenSSL error s_client printed (e.g. the alert it received), else its last line."""
    m = re.findall(r"SSL routines:[^:]*:([^:\n]+)", err)
    if m:
        return m[0].strip()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "(closed, no error)"


def t_bad_peers(env):
    """Each bad peer is refused with its own log line; a good client works afterwards."""
    eport = env.echo_backend()
    k = env.ktlsd(["--handshake-timeout", "500"], target_port=eport)
    table = []

    def row(name, saw, line):
        table.append((name, saw, line[line.find("reason="):]))

    good_client_works(env, k)

    rc, out, err = s_client(env, k.port, [], b"x\n", **WAIT_EXIT)
    line = k.conn_end(r'reason="peer did not return a certificate"')
    row("no client cert", saw(err), line)
    good_client_works(env, k)

    for who, rx in [("other-client", r'reason="certificate verify failed: unable to get local '
                                     r'issuer certificate"'),
                    ("expired-client", r'reason="certificate verify failed: certificate has '
                                       r'expired" claimed_uri=spiffe://example.org/client'),
                    ("evil-client", r'reason="identity not allowed" claimed_uri=spiffe://evil.org/x')]:
        rc, out, err = s_client(env, k.port, ["-cert", env.p(f"{who}.pem"), "-key",
                                              env.p(f"{who}.key")], b"x\n",
                                    **WAIT_EXIT)
        check(b"x" not in out, f"{who} got data through")
        line = k.conn_end(rx)
        row(who, saw(err), line)
        good_client_works(env, k)

    rc, out, err = s_client(env, k.port, ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-cert",
                                          env.p("client.pem"), "-key", env.p("client.key")])
    line = k.conn_end(r'reason="unsupported protocol"')
    row("TLS 1.1 client", saw(err), line)
    good_client_works(env, k)

    got = raw_send(k.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    line = k.conn_end(r'reason="http request"')
    row("plaintext HTTP", f"{len(got)} bytes then close", line)
    good_client_works(env, k)

    got = raw_send(k.port, bytes(random.Random(7).randbytes(300)))
    line = k.conn_end(r'reason="(wrong version number|packet length too long|'
                      r'unknown protocol|record layer failure)"')
    row("random garbage", f"{len(got)} bytes then close", line)
    good_client_works(env, k)

    # Stall: a valid TLS record header that promises more than is ever sent.
    t0 = time.time()
    s = socket.create_connection(("127.0.0.1", k.port))
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    line = k.conn_end(r'reason="handshake timeout"', timeout=5)
    dt = time.time() - t0
    s.settimeout(2)
    try:
        closed = s.recv(10) == b""
    except OSError:
        closed = True
    s.close()
    check(closed, "stalled client still connected after the deadline")
    check(0.4 < dt < 3.0, f"handshake deadline 500 ms took {dt:.2f}s")
    row("stalls mid-handshake", f"closed after {dt * 1000:.0f} ms", line)
    good_client_works(env, k)

    raw_send(k.port, b"", linger_rst=True)
    line = k.conn_end(r'reason="(Connection reset by peer during handshake|peer closed the '
                      r'connection during handshake)"')
    row("connect + RST", "-", line)
    good_client_works(env, k)

    # Disallowed DNS SAN: a server that admits one DNS name only.
    k3 = env.ktlsd([], target_port=eport, allow=["--allow-dns", "client.example.org"])
    got = echo_roundtrip(env, k3.port)
    check(got == b"ping over ktlsd\n", "DNS-allowed client refused")
    k3.conn_end(r"reason=closed")
    rc, out, err = s_client(env, k3.port, ["-cert", env.p("evil-client.pem"), "-key",
                                           env.p("evil-client.key")], b"x\n",
                                   **WAIT_EXIT)
    line = k3.conn_end(r'reason="identity not allowed" .*claimed_dns=evil.example.net')
    row("disallowed DNS SAN (evil-client vs --allow-dns client.example.org)",
        saw(err), line)
    got = echo_roundtrip(env, k3.port)
    check(got == b"ping over ktlsd\n", "DNS-allowed client refused after bad peer")

    # Dead backend: handshake succeeds, connect fails, client gets a clean close.
    dead = free_port()
    k4 = env.ktlsd([], target_port=dead)
    rc, out, err = s_client(env, k4.port, ["-cert", env.p("client.pem"), "-key",
                                           env.p("client.key")], b"x\n")
    line = k4.conn_end(r'reason="backend connect failed: Connection refused"')
    row("dead backend", f"s_client rc={rc}, {len(out)} bytes", line)
    check(k4.alive(), "ktlsd died on dead backend")

    # Max connections: two held open, the third is refused and counted in the log.
    k5 = env.ktlsd(["--max-conns", "2"], target_port=eport)
    held = [tls_connect(env, k5.port) for _ in range(2)]
    for h in held:
        h.sendall(b"a")
        h.recv(1)
    try:
        s = tls_connect(env, k5.port, timeout=5)
        s.sendall(b"a")
        third = s.recv(1)
    except (OSError, ssl.SSLError) as e:
        third = f"error {e.__class__.__name__}"
    line = k5.wait_line(r'event=conn_refused .*reason="max-conns reached"')
    check(third in (b"",) or isinstance(third, str), f"third connection served: {third!r}")
    row("over --max-conns 2", str(third), line)
    for h in held:
        h.close()

    # The limit counters, reported at exit, count each kind of refusal.
    for proc in (k.proc, k5.proc):
        proc.send_signal(signal.SIGTERM)
        check(proc.wait(timeout=15) == 0, "exit after SIGTERM")
    line = k.wait_line(r"event=counters")
    for want in ("denied=1 ", "handshake_timeouts=1 ", "handshake_failures=7 "):
        check(want in line, f"counters: {want.strip()} expected in {line}")
    line = k5.wait_line(r"event=counters")
    check("refused_max_conns=1 " in line, f"max-conns counter: {line}")

    print("\nbad peer | what the client saw | ktlsd log")
    for r in table:
        print(" | ".join(r))


TESTS = {
    "bad_peers": t_bad_peers,
}

if __name__ == "__main__":
    sys.exit(main(TESTS))
