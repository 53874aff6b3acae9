#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""--proxy-protocol: the backend (pp2_backend.py, a strict PROXY v2 parser) gets a header with
the client's address and verified identity before any data, also for a resumed session;
refused peers never reach it.

    proxy_protocol_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki
"""
import json
import os
import socket
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import check, main, s_client, sess_client, tls_close, tls_ctx  # noqa: E402


def t_proxy_protocol(env):
    """--proxy-protocol: the backend gets a PROXY v2 header with the client's address and
    verified identity before any data; refused peers never reach it."""
    out = os.path.join(env.dir, "pp2.jsonl")
    k = env.ktlsd(["--proxy-protocol", "--resumption"], target_port=env.pp2_backend(out))

    raw = socket.create_connection(("127.0.0.1", k.port), timeout=20)
    src_port = raw.getsockname()[1]
    with tls_ctx(env).wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"after the header\n")
        got = b""
        while len(got) < 17:
            b = s.recv(4096)
            if not b:
                break
            got += b
        tls_close(s)
    check(got == b"after the header\n", f"echo through the header path: {got!r}")
    k.conn_end(r"reason=closed")
    with open(out) as f:
        recs = [json.loads(x) for x in f if x.strip()]
    check(len(recs) == 1, f"one header expected, backend saw {recs}")
    r = recs[0]
    check(r.get("error") is None, f"backend rejected the header: {r}")
    # Admitted by its URI SAN: that is the identity; the CN was not checked, so not sent.
    want = {"src": f"127.0.0.1:{src_port}", "dst": f"127.0.0.1:{k.port}", "cn": None,
            "spiffe": "spiffe://example.org/client", "ssl_version": "TLSv1.3",
            "client_flags": 7, "verify": 0}
    for key, val in want.items():
        check(r.get(key) == val, f"PROXY header {key}: want {val!r}, got {r.get(key)!r}")

    # A refused peer is stopped before the backend connect: no header, no connection.
    s_client(env, k.port, ["-cert", env.p("evil-client.pem"),
                          "-key", env.p("evil-client.key")], data=b"x\n")
    k.conn_end(r'reason="identity not allowed"')
    with open(out) as f:
        n = sum(1 for x in f if x.strip())
    check(n == 1, f"a refused peer reached the backend ({n} headers)")

    # A resumed session has no certificate exchange: the identity in the header comes
    # from the ticket, and must be the same.
    sess = os.path.join(env.dir, "pp2-sess.pem")
    sess_client(env, k.port, "-sess_out", sess)
    k.conn_end(r"resumed=no")
    so = sess_client(env, k.port, "-sess_in", sess)
    check("Reused," in so, f"s_client did not resume: {so[-400:]}")
    k.conn_end(r"resumed=yes")
    with open(out) as f:
        recs = [json.loads(x) for x in f if x.strip()]
    check(len(recs) == 3, f"{len(recs)} headers after two more connections")
    for key in ("cn", "spiffe", "client_flags", "verify"):
        check(recs[2].get(key) == want[key], f"resumed header {key}: {recs[2].get(key)!r}")


TESTS = {
    "proxy_protocol": t_proxy_protocol,
}

if __name__ == "__main__":
    sys.exit(main(TESTS))
