#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The admin endpoint (--admin): /metrics passes `promtool check metrics` and counts exactly
(N good and M refused handshakes, each refusal under its reason label), /healthz, /readyz
(503 while draining), 404 and 405, /connections with a held connection's identity and
?limit=, `ktlsd status`, and the address rules.

    admin_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki [TEST...]
"""
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import (Skip, check, echo_roundtrip, free_port, http, main,  # noqa: E402
                     recv_upto, s_client, tls_close, tls_connect, tls_stat)

WAIT_EXIT = {"expect": b"\0never", "timeout": 5}
PAYLOAD = b"ping over ktlsd\n"


def admin_ktlsd(env, extra=(), admin=None, **kw):
    admin = admin or free_port()
    spec = f"127.0.0.1:{admin}" if isinstance(admin, int) else f"unix:{admin}"
    k = env.ktlsd(["--admin", spec] + list(extra), **kw)
    k.wait_line(r"event=admin_listening")
    return k, admin


def metrics(admin):
    status, hdrs, body = http(admin, "/metrics")
    check(status == 200, f"/metrics: HTTP {status}")
    check(hdrs.get("content-type", "").startswith("text/plain; version=0.0.4"),
          f"/metrics content type {hdrs.get('content-type')!r}")
    return body.decode()


# scripts/install-deps unpacks Debian's prometheus package here (installing it would start a
# Prometheus server); a promtool on PATH does as well.
PROMTOOL_UNPACKED = "/var/cache/ktlsd-apt/promtool/usr/bin/promtool"


def promtool():
    if os.access(PROMTOOL_UNPACKED, os.X_OK):
        return PROMTOOL_UNPACKED
    return shutil.which("promtool")


def promtool_check(text):
    pr = subprocess.run([promtool(), "check", "metrics"], input=text, text=True,
                        capture_output=True)
    check(pr.returncode == 0, f"promtool check metrics failed:\n{pr.stdout}{pr.stderr}")


def series(text):
    """{ 'name{labels}': value } of every sample line."""
    out = {}
    for ln in text.splitlines():
        if ln and not ln.startswith("#"):
            key, _, val = ln.rpartition(" ")
            out[key] = float(val)
    return out


def expect(s, key, want):
    check(key in s, f"no series {key} in /metrics")
    check(s[key] == want, f"{key} = {s[key]}, expected {want}")


def refuse_all(env, k):
    """One refused handshake per reason the host can produce; each waits for its conn_end
    so the counts are exact. Returns {reason: count}."""
    s_client(env, k.port, [], b"x\n", **WAIT_EXIT)
    k.conn_end(r'reason="peer did not return a certificate"')
    for who, pattern in (("other-client", "unable to get local issuer"),
                         ("expired-client", "certificate has expired"),
                         ("evil-client", "uri")):
        s_client(env, k.port, ["-cert", env.p(f"{who}.pem"), "-key", env.p(f"{who}.key")],
                 b"x\n", **WAIT_EXIT)
        k.conn_end(pattern)
    s = socket.create_connection(("127.0.0.1", k.port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    recv_upto(s, 1 << 16)
    s.close()
    k.conn_end(r"reason=")
    s = socket.create_connection(("127.0.0.1", k.port), timeout=5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    k.conn_end(r'reason="(Connection reset by peer during handshake|peer closed the '
               r'connection during handshake)"')
    stall = socket.create_connection(("127.0.0.1", k.port), timeout=5)
    k.conn_end(r'reason="handshake timeout"')
    stall.close()
    return {"no_cert": 1, "unknown_ca": 1, "expired": 1, "identity": 1, "protocol": 1,
            "reset": 1, "timeout": 1, "revoked": 0, "other": 0}


def cert_not_after(path):
    out = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-enddate"],
                         capture_output=True, text=True, check=True).stdout
    d = out.strip().split("=", 1)[1]
    return int(time.mktime(time.strptime(d, "%b %d %H:%M:%S %Y GMT")) - time.timezone)


def t_metrics(env):
    """N good and M refused handshakes give exactly those numbers; promtool accepts it."""
    if not promtool():
        raise Skip("promtool not found (scripts/install-deps unpacks it from Debian's "
                   "prometheus package)")
    eport = env.echo_backend()
    k, admin = admin_ktlsd(env, ["--handshake-timeout", "500"], target_port=eport)
    promtool_check(metrics(admin))  # all zeros, before any connection
    n_good = 3
    for _ in range(n_good):
        check(echo_roundtrip(env, k.port) == PAYLOAD, "echo through ktlsd")
        k.conn_end(r"reason=closed")
    reasons = refuse_all(env, k)
    text = metrics(admin)
    promtool_check(text)
    s = series(text)
    svc = 'service="server"'
    expect(s, f'ktlsd_handshakes_total{{{svc},result="ok"}}', n_good)
    for r, n in reasons.items():
        expect(s, f'ktlsd_handshakes_total{{{svc},result="failed",reason="{r}"}}', n)
    n_refused = sum(reasons.values())
    expect(s, f"ktlsd_connections_total{{{svc}}}", n_good + n_refused)
    expect(s, f'ktlsd_handshake_duration_seconds_count{{{svc}}}', n_good)
    expect(s, f'ktlsd_handshake_duration_seconds_bucket{{{svc},le="+Inf"}}', n_good)
    expect(s, f'ktlsd_bytes_total{{{svc},direction="in"}}', n_good * len(PAYLOAD))
    expect(s, f'ktlsd_bytes_total{{{svc},direction="out"}}', n_good * len(PAYLOAD))
    for relay in ("splice", "userspace", "handshake"):
        expect(s, f'ktlsd_connections_active{{{svc},relay="{relay}"}}', 0)
    expect(s, f"ktlsd_resumed_total{{{svc}}}", 0)
    expect(s, f'ktlsd_limit_hits_total{{{svc},limit="handshake_timeout"}}', 1)
    kernel_ktls = tls_stat() is not None
    expect(s, f'ktlsd_ktls_installs_total{{{svc},result="ok"}}', n_good if kernel_ktls else 0)
    cert = env.p("server.pem")
    expect(s, f'ktlsd_cert_expiry_timestamp_seconds{{{svc},cert="{cert}"}}',
           cert_not_after(cert))
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                 "process_open_fds", "process_max_fds", "process_start_time_seconds"):
        check(s.get(name, 0) > 0, f"{name} missing or zero")
    check(abs(s["process_start_time_seconds"] - time.time()) < 120,
          f"process_start_time_seconds {s['process_start_time_seconds']} is not now")
    # The kernel's counters exactly when the kernel has them: absent file, no metrics.
    has = any(key.startswith("ktlsd_kernel_tls_") for key in s)
    check(has == kernel_ktls, f"ktlsd_kernel_tls_* present={has}, tls_stat present={kernel_ktls}")


def t_health(env):
    """/healthz, /readyz (503 once draining), 404, 405."""
    eport = env.echo_backend()
    k, admin = admin_ktlsd(env, ["--drain-timeout", "20000"], target_port=eport)
    check(http(admin, "/healthz")[0] == 200, "/healthz not 200")
    st, _, body = http(admin, "/readyz")
    check(st == 200 and body == b"ready\n", f"/readyz: {st} {body!r}")
    st, _, body = http(admin, "/nope")
    check(st == 404, f"/nope: {st}")
    check(http(admin, "/metrics/")[0] == 404, "/metrics/ not 404")
    for method in ("POST", "PUT", "DELETE", "HEAD"):
        st, hdrs, _ = http(admin, "/metrics", method, b"x=1" if method != "HEAD" else b"")
        check(st == 405 and hdrs.get("allow") == "GET", f"{method} /metrics: {st} {hdrs}")
    held = tls_connect(env, k.port)
    held.sendall(PAYLOAD)
    check(recv_upto(held, len(PAYLOAD)) == PAYLOAD, "held connection echo")
    k.proc.send_signal(signal.SIGTERM)
    k.wait_line(r"event=shutdown.*action=drain")
    st, _, body = http(admin, "/readyz")
    check(st == 503 and body == b"draining\n", f"/readyz while draining: {st} {body!r}")
    check(http(admin, "/healthz")[0] == 200, "/healthz while draining not 200")
    s = series(metrics(admin))
    expect(s, "ktlsd_ready", 0)
    tls_close(held)
    rc = k.proc.wait(timeout=20)
    check(rc == 0, f"ktlsd exited {rc} after the drain")


def held_conns(env, k, n):
    out = []
    for _ in range(n):
        s = tls_connect(env, k.port)
        s.sendall(PAYLOAD)
        check(recv_upto(s, len(PAYLOAD)) == PAYLOAD, "held connection echo")
        out.append(s)
    return out


def t_connections(env):
    """/connections lists a held connection with its identity; ?limit caps the list."""
    eport = env.echo_backend()
    k, admin = admin_ktlsd(env, target_port=eport)
    held = held_conns(env, k, 1)
    st, hdrs, body = http(admin, "/connections")
    check(st == 200 and hdrs.get("content-type") == "application/json", f"{st} {hdrs}")
    doc = json.loads(body)
    check(doc["total"] == 1 and not doc["truncated"] and len(doc["connections"]) == 1,
          f"expected one connection: {doc}")
    c = doc["connections"][0]
    me = "%s:%d" % held[0].getsockname()[:2]
    want = {"service": "server", "peer": me, "uri": "spiffe://example.org/client", "dns": None,
            "cn": None, "tls_version": "TLSv1.3", "resumed": False,
            "bytes_in": len(PAYLOAD), "bytes_out": len(PAYLOAD)}
    for key, val in want.items():
        check(c.get(key) == val, f"connection {key} = {c.get(key)!r}, expected {val!r}: {c}")
    check(c["cipher"].startswith("TLS_"), f"cipher {c['cipher']!r}")
    check(0 <= c["age_s"] < 60, f"age_s {c['age_s']}")
    if tls_stat() is None:
        # No kTLS here: the userspace relay, and the kernel sees no ULP on the socket.
        check(c["relay"] == "userspace", f"relay {c['relay']!r} on a host without kTLS")
        check(c["kernel"] is None, f"kernel {c['kernel']!r} on a host without kTLS")
    s = series(metrics(admin))
    expect(s, f'ktlsd_connections_active{{service="server",relay="{c["relay"]}"}}', 1)
    held += held_conns(env, k, 2)
    doc = json.loads(http(admin, "/connections?limit=2")[2])
    check(doc["total"] == 3 and doc["truncated"] and len(doc["connections"]) == 2,
          f"limit=2 of 3: {doc}")
    doc = json.loads(http(admin, "/connections?limit=0")[2])
    check(doc == {"connections": [], "total": 3, "truncated": True}, f"limit=0: {doc}")
    for bad in ("abc", "-1", "10001", "", "1e3"):
        st, _, body = http(admin, f"/connections?limit={bad}")
        check(st == 400 and b"limit" in body, f"limit={bad}: {st} {body!r}")
    for s in held:
        tls_close(s)
    k.conn_end(r"reason=closed")


def t_status(env):
    """`ktlsd status` over a unix socket: the service table and, with --connections, the
    held connection's identity."""
    eport = env.echo_backend()
    sock = os.path.join(env.dir, "admin.sock")
    k, _ = admin_ktlsd(env, admin=sock, target_port=eport)
    check(echo_roundtrip(env, k.port) == PAYLOAD, "echo")
    k.conn_end(r"reason=closed")
    s_client(env, k.port, [], b"x\n", **WAIT_EXIT)
    k.conn_end(r'reason="peer did not return a certificate"')
    held = held_conns(env, k, 1)
    pr = subprocess.run([env.args.ktlsd, "status", "--admin", f"unix:{sock}", "--connections"],
                        capture_output=True, text=True, timeout=20)
    check(pr.returncode == 0, f"status exited {pr.returncode}: {pr.stderr}")
    lines = pr.stdout.splitlines()
    check(lines[0].split() == ["SERVICE", "MODE", "LISTEN", "TARGET", "ACTIVE", "TOTAL", "HS_OK",
                               "HS_FAIL", "KTLS"], f"header: {lines[0]!r}")
    row = lines[1].split()
    want_share = "0%" if tls_stat() is None else "100%"
    check(row == ["server", "server", f"127.0.0.1:{k.port}", f"127.0.0.1:{eport}", "1", "3", "2",
                  "1", want_share], f"service row: {lines[1]!r}")
    me = "%s:%d" % held[0].getsockname()[:2]
    conn = [ln for ln in lines[2:] if ln.startswith("server peer=")]
    check(len(conn) == 1, f"connection lines: {lines[2:]}")
    check(re.search(rf"peer={re.escape(me)} id=spiffe://example.org/client tls=TLSv1.3 ", conn[0])
          and " in=16 out=16 " in conn[0], f"connection line: {conn[0]!r}")
    if tls_stat() is None:
        check("relay=userspace" in conn[0] and conn[0].endswith(" kernel=none"),
              f"connection line: {conn[0]!r}")
    tls_close(held[0])
    pr = subprocess.run([env.args.ktlsd, "status", "--admin", f"127.0.0.1:{free_port()}"],
                        capture_output=True, text=True, timeout=20)
    check(pr.returncode == 1 and "cannot reach the admin endpoint" in pr.stderr,
          f"status without a daemon: {pr.returncode} {pr.stderr!r}")
    pr = subprocess.run([env.args.ktlsd, "status", "--bogus"], capture_output=True, text=True)
    check(pr.returncode == 2 and "usage: ktlsd status" in pr.stderr, f"{pr.returncode}")


def t_address(env):
    """A remote address needs --admin-allow-remote; an address in use exits 2."""
    eport = env.echo_backend()
    base = [env.args.ktlsd, "server", "--listen", f"127.0.0.1:{free_port()}", "--target",
            f"127.0.0.1:{eport}", "--cert", env.p("server.pem"), "--key", env.p("server.key"),
            "--cacert", env.p("ca.pem"), "--allow-all"]
    pr = subprocess.run(base + ["--admin", "0.0.0.0:9"], capture_output=True, text=True,
                        timeout=20)
    check(pr.returncode == 2 and "not a loopback address" in pr.stderr
          and "admin-allow-remote" in pr.stderr, f"{pr.returncode} {pr.stderr!r}")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    pr = subprocess.run(base + ["--admin", f"127.0.0.1:{port}"], capture_output=True, text=True,
                        timeout=30)
    check(pr.returncode == 2 and f"admin 127.0.0.1:{port}: Address already in use" in pr.stderr,
          f"{pr.returncode} {pr.stderr!r}")
    taken.close()


TESTS = {
    "metrics": t_metrics,
    "health": t_health,
    "connections": t_connections,
    "status": t_status,
    "address": t_address,
}

if __name__ == "__main__":
    sys.exit(main(TESTS))
