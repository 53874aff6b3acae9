#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A connection that ends cancels everything it has in flight (by user_data, not by fd), so
its slot is freed at once: conn_end is logged only when nothing is pending, and a slot that
leaked would hold a --max-conns place for ever.

    cancel_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki connect_stuck|mixed

connect_stuck: the backend never answers the SYN (its accept queue is full), so the io_uring
connect stays in flight until the deadline; shutdown() cannot wake a connecting socket, only
the cancel can. Three rounds of --max-conns 4 such connections must each end within the
deadline with reason "backend connect timeout", and the next round must be let in.
mixed: stalled handshakes (a poll and the deadline in flight) and idle established
connections (a poll on each socket) end by their timeouts, round after round.
"""
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import check, main, tls_ctx  # noqa: E402


def full_backlog():
    """A listener that never accepts, its accept queue filled: a SYN to it gets no answer."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    port = ls.getsockname()[1]
    fill = []
    for _ in range(8):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fill.append(s)
    time.sleep(0.3)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        probe.connect(("127.0.0.1", port))
        check(False, "the filled listener still completes connects: cannot stall a connect")
    except socket.timeout:
        pass
    finally:
        probe.close()
    return ls, fill, port


def handshaken(env, port, n):
    """n clients that complete their handshake (the server then connects to the backend)."""
    out, errs = [], []

    def one():
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            s = tls_ctx(env).wrap_socket(raw, server_hostname="localhost")
            out.append(s)
        except OSError as e:
            errs.append(e)

    ts = [threading.Thread(target=one) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check(not errs, f"handshakes failed: {errs}")
    return out


def ends(k, n, reason, timeout):
    for _ in range(n):
        k.conn_end(rf'reason="{reason}"', timeout=timeout)


def t_connect_stuck(env):
    ls, fill, bport = full_backlog()
    k = env.ktlsd(["--threads", "1", "--max-conns", "4", "--handshake-timeout", "1500"],
                  target_port=bport)
    t0 = time.time()
    for r in range(3):
        conns = handshaken(env, k.port, 4)
        # Deadline 1.5 s; the SYN retries alone would hold the connect for minutes.
        ends(k, 4, "backend connect timeout", timeout=8)
        for s in conns:
            s.close()
    check(k.text().count("max-conns reached") == 0, "a round was refused: slots leaked")
    ls.close()
    for s in fill:
        s.close()
    print(f"3 rounds of 4 stuck connects, each cancelled at its deadline "
          f"({time.time() - t0:.1f} s), no place leaked")


def t_mixed(env):
    eport = env.echo_backend()
    k = env.ktlsd(["--threads", "1", "--max-conns", "6", "--handshake-timeout", "1000",
                   "--idle-timeout", "1"], target_port=eport)
    for r in range(3):
        stalled = [socket.create_connection(("127.0.0.1", k.port), timeout=5) for _ in range(3)]
        idle = handshaken(env, k.port, 3)
        for s in idle:
            s.sendall(b"x")
            check(s.recv(1) == b"x", "echo")
        ends(k, 3, "handshake timeout", timeout=8)
        ends(k, 3, "idle timeout", timeout=8)
        for s in stalled + idle:
            s.close()
    check(k.text().count("max-conns reached") == 0, "a round was refused: slots leaked")
    print("3 rounds of 3 stalled handshakes + 3 idle connections: all ended and freed")


TESTS = {"connect_stuck": t_connect_stuck, "mixed": t_mixed}

if __name__ == "__main__":
    sys.exit(main(TESTS))
