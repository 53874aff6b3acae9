#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A TLS peer that ends with a bare FIN (no close_notify) may be an attacker cutting the
stream short: the bytes and the half-close still reach the backend, but the connection ends
with level=warn reason="truncated: no close_notify" and is counted (userspace relay).

    truncation_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki truncation
"""
import signal
import socket
import sys
import threading

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import check, echo_roundtrip, log_fields, main, tls_connect  # noqa: E402


def sink_backend():
    """A backend that records what one connection sent and whether its EOF came."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    got = {"data": b"", "eof": threading.Event()}

    def serve():
        c, _ = ls.accept()
        c.settimeout(20)
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    got["eof"].set()
                    break
                got["data"] += b
        except OSError:
            pass
        c.close()
        ls.close()

    threading.Thread(target=serve, daemon=True).start()
    return ls.getsockname()[1], got


def t_truncation(env):
    sport, sink = sink_backend()
    k = env.ktlsd(["--ktls", "off"], target_port=sport)
    payload = b"the last bytes before a bare FIN\n" * 100
    s = tls_connect(env, k.port)
    s.sendall(payload)
    # TCP FIN under the TLS session, no close_notify (the base class skips SSLSocket's own).
    socket.socket.shutdown(s, socket.SHUT_WR)
    check(sink["eof"].wait(10), f"backend saw no half-close ({len(sink['data'])} bytes)")
    check(sink["data"] == payload, f"backend got {len(sink['data'])} of {len(payload)} bytes")
    line = k.conn_end(r'reason="truncated: no close_notify"')
    check(" level=warn " in f" {line}" and f"bytes_in={len(payload)} " in line,
          f"truncated end: {line}")
    check(" relay=userspace records=ktlsd " in line, f"not on ktlsd's own records: {line}")
    s.close()

    # A clean end (close_notify) stays info / closed.
    eport = env.echo_backend()
    k2 = env.ktlsd(["--ktls", "off"], target_port=eport)
    check(echo_roundtrip(env, k2.port) == b"ping over ktlsd\n", "clean echo")
    clean = k2.conn_end(r"")
    check("level=info" in clean and "reason=closed" in clean, f"clean end: {clean}")

    for kk, want in ((k, "1"), (k2, "0")):
        kk.proc.send_signal(signal.SIGTERM)
        check(kk.proc.wait(timeout=15) == 0, "exit after SIGTERM")
        c = log_fields(kk.wait_line(r"event=counters"))
        check(c.get("truncated") == want, f"truncated counter, {want} expected: {c}")
    print(f"bare FIN: backend got all {len(payload)} bytes and the half-close; "
          f"{line[line.find('level='):line.find(' uri=')]}")


TESTS = {"truncation": t_truncation}

if __name__ == "__main__":
    sys.exit(main(TESTS))
