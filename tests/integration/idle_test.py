#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Established connections with no byte either way for --idle-timeout seconds end with
reason="idle timeout" (counted); TCP keepalive runs on both sockets of every connection
(accepted and target), probing after 60 s so dead peers free their descriptors.

    idle_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki idle_timeout|keepalive

KTLSD_KTLS=require runs idle_timeout on the kTLS relay (inside a VM with kTLS), and
KTLSD_RELAY=sockmap on the sockmap relay.
"""
import os
import re
import shutil
import signal
import socket
import ssl
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import (Skip, check, keepalive_timer, ktlsd_client, log_fields, main,  # noqa: E402
                     tls_close, tls_connect)


def push_or_echo_backend(env):
    """Echoes, except for a connection whose first byte is "p": that one is sent a byte every
    0.3 s for 6 s and nothing else (only the backend -> client direction moves)."""

    def serve(c):
        try:
            first = c.recv(1)
            if first == b"p":
                end = time.time() + 6
                while time.time() < end and not env.threads_stop.is_set():
                    c.sendall(b"x")
                    time.sleep(0.3)
            else:
                b = first
                while b:
                    c.sendall(b)
                    b = c.recv(1 << 17)
        except OSError:
            pass
        finally:
            c.close()

    return env.backend(serve)


def t_idle_timeout(env):
    """--idle-timeout 2: a silent connection ends after 2-3 s; a chatty one lives on, and so
    does one where only the backend talks (on the sockmap relay the kernel forwards that
    direction, so the loop learns of it from the socket: KTLSD_RELAY=sockmap in a VM)."""
    mode = os.environ.get("KTLSD_KTLS", "off")
    relay = os.environ.get("KTLSD_RELAY")
    eport = push_or_echo_backend(env)
    k = env.ktlsd(["--idle-timeout", "2", "--ktls", mode] + (["--relay", relay] if relay else []),
                  target_port=eport)
    idle = tls_connect(env, k.port)
    idle.sendall(b"i")
    check(idle.recv(1) == b"i", "idle conn echo")
    t0 = time.time()
    busy = tls_connect(env, k.port)
    push = tls_connect(env, k.port)
    push.sendall(b"p")
    push.setblocking(False)
    pushed = 0
    port = idle.getsockname()[1]
    rx = re.compile(rf"event=conn_end .*peer=127\.0\.0\.1:{port} reason=\"idle timeout\"")
    ended = None
    # The busy connection sends a byte every 0.5 s for 4.5 s: never idle.
    while time.time() - t0 < 4.5:
        busy.sendall(b"b")
        check(busy.recv(1) == b"b", "busy connection lost its echo")
        try:
            while True:  # one 1-byte record per recv: take all that came
                got = push.recv(4096)
                check(got, f"the backend-only connection was closed:\n{k.text()[-1500:]}")
                pushed += len(got)
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
        if ended is None and rx.search(k.text()):
            ended = time.time() - t0
        time.sleep(0.5)
    check(ended is not None, f"silent connection not ended after 4.5 s:\n{k.text()[-1500:]}")
    check(1.9 <= ended <= 3.5, f"--idle-timeout 2 ended the connection after {ended:.2f}s")
    check(pushed >= 10, f"the backend-only connection got {pushed} bytes in 4.5 s")
    # The client heard a clean end: close_notify then EOF.
    idle.settimeout(5)
    check(idle.recv(1) == b"", "idle connection still open on the client's side")
    idle.close()
    line = k.wait_line(rx.pattern)
    check("level=warn" in line, f"idle end: {line}")
    if mode == "require":
        check("ktls=tx+rx" in line, f"not on kTLS: {line}")
    if relay:
        check(f"relay={relay}" in line, f"not on the {relay} relay: {line}")
    check(k.text().count('reason="idle timeout"') == 1,
          f"the busy or the backend-only connection timed out too:\n{k.text()[-1500:]}")
    tls_close(busy)
    k.conn_end(r"reason=closed")
    push.close()
    k.proc.send_signal(signal.SIGTERM)
    check(k.proc.wait(timeout=15) == 0, "exit after SIGTERM")
    c = log_fields(k.wait_line(r"event=counters"))
    check(c.get("idle_timeouts") == "1", f"idle_timeouts: {c}")
    print(f"ktls={mode} relay={relay or 'default'}: silent connection ended after "
          f"{ended:.2f}s (--idle-timeout 2), busy one and backend-only one ({pushed} bytes) kept")


def t_keepalive(env):
    """SO_KEEPALIVE with a 60 s idle time on the accepted and the target socket, both roles."""
    if not shutil.which("ss"):
        raise Skip("ss (iproute2) not installed")
    eport = env.echo_backend()
    srv = env.ktlsd([], target_port=eport)
    cli = ktlsd_client(env, srv.port, ["--verify-uri", "spiffe://example.org/server"])
    app = socket.create_connection(("127.0.0.1", cli.port), timeout=10)
    app.sendall(b"k")
    check(app.recv(1) == b"k", "echo through the pair")
    rows = {
        "client role, accepted (app)": f"( sport = :{cli.port} )",
        "client role, target (server)": f"( dport = :{srv.port} )",
        "server role, accepted (client)": f"( sport = :{srv.port} )",
        "server role, target (backend)": f"( dport = :{eport} )",
    }
    for what, filt in rows.items():
        t = keepalive_timer(filt)
        # The kernel default would be 7200 s; ktlsd sets 60 s (probes every 10 s, 6 of them).
        check(0 < t <= 60, f"{what}: keepalive timer {t}s, expected <= 60s")
        print(f"{what}: keepalive timer {t:g}s")
    app.close()


TESTS = {"idle_timeout": t_idle_timeout, "keepalive": t_keepalive}

if __name__ == "__main__":
    sys.exit(main(TESTS))
