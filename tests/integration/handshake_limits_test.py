#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Handshakes in progress have their own limits: --max-handshakes (service-wide, below
--max-conns) and --max-handshakes-per-source (per client address), so sockets that stall
their handshake cannot lock everyone else out. Over a limit the new socket is closed at once,
counted, and logged at most once per 10 s.

    handshake_limits_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki per_source|max_handshakes
"""
import signal
import socket
import ssl
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import (check, echo_roundtrip, log_fields, main, tls_close,  # noqa: E402
                     tls_connect, tls_ctx)


def stall(port, n, src="127.0.0.1"):
    """n TCP connections that never send a byte: each sits in the handshake."""
    return [socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(src, 0))
            for _ in range(n)]


def echo_from(env, port, src):
    """A good client from source address src; the echoed bytes, or the error it got."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(src, 0))
    try:
        s = tls_ctx(env).wrap_socket(raw, server_hostname="localhost")
        s.sendall(b"ping\n")
        got = s.recv(64)
        tls_close(s)
        return got
    except (OSError, ssl.SSLError) as e:
        raw.close()
        return f"error {e.__class__.__name__}"


def counters(k):
    k.proc.send_signal(signal.SIGTERM)
    check(k.proc.wait(timeout=15) == 0, "exit after SIGTERM")
    return log_fields(k.wait_line(r"event=counters"))


def t_per_source(env):
    """10 stalled sockets from 127.0.0.1 take 3 places; a client from 127.0.0.2 still works."""
    eport = env.echo_backend()
    k = env.ktlsd(["--threads", "1", "--max-conns", "10", "--max-handshakes-per-source", "3",
                   "--handshake-timeout", "30000"], target_port=eport)
    # One listener (--threads 1) accepts in order: the stalls are in before the good client.
    stalled = stall(k.port, 10)
    got = echo_from(env, k.port, "127.0.0.2")
    check(got == b"ping\n", f"client from 127.0.0.2 locked out by 127.0.0.1's stalls: {got!r}")
    line = k.wait_line(r'level=warn event=conn_refused service=server peer=127\.0\.0\.1:\d+ '
                       r'reason="max-handshakes-per-source reached"')
    k.conn_end(r"peer=127\.0\.0\.2:\d+ reason=closed")
    # The stalling source itself gets no more: its good client is refused too.
    got = echo_from(env, k.port, "127.0.0.1")
    check(got != b"ping\n", "a fourth handshake from 127.0.0.1 was let in")
    for s in stalled:
        s.close()
    n = k.text().count('reason="max-handshakes-per-source reached"')
    check(n == 1, f"{n} refusal lines for 8 refusals (rate-limited to 1 per 10 s)")
    c = counters(k)
    check(c.get("refused_per_source") == "8", f"refused_per_source: {c}")
    check(c.get("refused_max_conns") == "0", f"refused_max_conns: {c}")
    print(f"10 stalls from 127.0.0.1 under a limit of 3: 7 refused at once, 127.0.0.2 served;"
          f" log: {line[line.find('event='):]}")


def t_max_handshakes(env):
    """3 stalled sockets fill --max-handshakes 3: a good client is refused until they leave;
    established connections do not count."""
    eport = env.echo_backend()
    k = env.ktlsd(["--threads", "1", "--max-handshakes", "3", "--handshake-timeout", "30000"],
                  target_port=eport)
    stalled = stall(k.port, 3)
    got = echo_from(env, k.port, "127.0.0.1")
    check(got != b"ping\n", f"good client served past --max-handshakes 3: {got!r}")
    line = k.wait_line(r'level=warn event=conn_refused .*reason="max-handshakes reached"')
    ports = [s.getsockname()[1] for s in stalled]
    for s in stalled:
        s.close()
    for p in ports:
        k.conn_end(rf"peer=127\.0\.0\.1:{p} ")
    check(echo_roundtrip(env, k.port) == b"ping over ktlsd\n", "good client after stalls left")
    k.conn_end(r"reason=closed")

    # An established connection holds no handshake place: with it open and 2 stalls, the
    # third place is still free.
    held = tls_connect(env, k.port)
    held.sendall(b"h")
    check(held.recv(1) == b"h", "held echo")
    stalled = stall(k.port, 2)
    check(echo_roundtrip(env, k.port) == b"ping over ktlsd\n",
          "established connection counted as a handshake")
    tls_close(held)
    for s in stalled:
        s.close()
    c = counters(k)
    check(c.get("refused_handshakes") == "1", f"refused_handshakes: {c}")
    print(f"--max-handshakes 3 full of stalls: good client refused, then served; "
          f"log: {line[line.find('event='):]}")


TESTS = {"per_source": t_per_source, "max_handshakes": t_max_handshakes}

if __name__ == "__main__":
    sys.exit(main(TESTS))
