#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""`ktlsd server` with good clients: curl, openssl s_client and gnutls-cli through it to real
backends, 64 MiB both ways byte-exact, and 500 connections open at once.

    server_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki TEST

good_clients  curl (TLS 1.3 and 1.2), openssl s_client, gnutls-cli; conn_end fields
bulk          KTLSD_BULK_MIB (64) MiB each way at once, sha256 both; prints MiB/s
concurrent    KTLSD_CONNS (500) connections open at once, each echoed; PSS per idle one
"""
import hashlib
import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import (SANITIZER, bulk, check, echo_roundtrip, gnutls_cli, main,  # noqa: E402
                     pss_kb, recv_upto, s_client, tls_close, tls_ctx)


def t_good_clients(env):
    """curl, openssl s_client and gnutls-cli through ktlsd to real backends."""
    www = os.path.join(env.dir, "www")
    os.mkdir(www)
    body = os.urandom(1 << 20)
    with open(os.path.join(www, "blob"), "wb") as f:
        f.write(body)
    hport = env.http_backend(www)
    k = env.ktlsd([], target_port=hport)
    r = subprocess.run(["curl", "-sS", "--fail", "--cert", env.p("client.pem"), "--key",
                        env.p("client.key"), "--cacert", env.p("ca.pem"),
                        f"https://localhost:{k.port}/blob"], capture_output=True, timeout=30)
    check(r.returncode == 0, f"curl failed: {r.stderr.decode()}")
    check(hashlib.sha256(r.stdout).digest() == hashlib.sha256(body).digest(),
          "curl body differs from the file")
    line = k.conn_end(r"reason=closed")
    check("uri=spiffe://example.org/client" in line and "tls=TLSv1.3" in line
          and "ktls=off" in line, f"conn_end line lacks fields: {line}")
    check(f"bytes_out={len(body)}" not in line or True, "")
    m = re.search(r"bytes_out=(\d+)", line)
    check(m and int(m.group(1)) > len(body), f"bytes_out too small: {line}")

    # TLS 1.2 via curl
    r = subprocess.run(["curl", "-sS", "--fail", "--tlsv1.2", "--tls-max", "1.2", "--cert",
                        env.p("client.pem"), "--key", env.p("client.key"), "--cacert",
                        env.p("ca.pem"), f"https://localhost:{k.port}/blob"],
                       capture_output=True, timeout=30)
    check(r.returncode == 0 and r.stdout == body, f"curl TLS 1.2 failed: {r.stderr.decode()}")
    line = k.conn_end(r"reason=closed")
    check("tls=TLSv1.2" in line and "ECDHE-ECDSA-AES" in line, f"not TLS 1.2 ECDHE: {line}")

    # openssl s_client and gnutls-cli against an echo backend
    eport = env.echo_backend()
    k2 = env.ktlsd([], target_port=eport)
    rc, out, err = s_client(env, k2.port, ["-cert", env.p("client.pem"), "-key",
                                           env.p("client.key")], b"hello s_client\n",
                           expect=b"hello s_client")
    check(b"hello s_client" in out, f"s_client echo failed rc={rc}: {err[-500:]}")
    k2.conn_end(r"reason=closed.*uri=spiffe://example.org/client")
    rc, out, err = gnutls_cli(env, k2.port, b"hello gnutls\n", b"hello gnutls")
    check(b"hello gnutls" in out, f"gnutls-cli failed: {out[-300:]} {err[-500:]}")
    k2.conn_end(r"reason=closed.*uri=spiffe://example.org/client")


def t_bulk(env):
    """64 MiB both ways at once, byte-exact; prints MiB/s of the relay."""
    size = int(os.environ.get("KTLSD_BULK_MIB", "64")) << 20
    eport = env.echo_backend()
    k = env.ktlsd([], target_port=eport)
    dt = bulk(env, k.port, size)
    line = k.conn_end(r"reason=closed")
    check(f"bytes_in={size}" in line and f"bytes_out={size}" in line,
          f"byte counters wrong: {line}")
    print(f"bulk: {size >> 20} MiB each way in {dt:.2f}s = {size / dt / 2**20:.1f} MiB/s "
          "per direction (client, echo backend and ktlsd share the CPUs)")


def t_concurrent(env):
    """500 connections open at the same time, each echoing its own payload."""
    n = int(os.environ.get("KTLSD_CONNS", "200" if SANITIZER else "500"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    eport = env.echo_backend()
    k = env.ktlsd(["--max-conns", str(n + 10)], target_port=eport)
    ctx = tls_ctx(env)
    socks, errors = [None] * n, []
    barrier = threading.Barrier(n + 1, timeout=120)

    def one(i):
        try:
            raw = socket.create_connection(("127.0.0.1", k.port), timeout=60)
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            msg = f"conn {i} ".encode() * 20
            s.sendall(msg)
            got = recv_upto(s, len(msg), 4096)
            if got != msg:
                errors.append(f"conn {i}: bad echo")
            socks[i] = s
        except Exception as e:  # noqa: BLE001
            errors.append(f"conn {i}: {e}")
        try:
            barrier.wait()  # all n are open at once here
        except threading.BrokenBarrierError:
            pass

    check(echo_roundtrip(env, k.port) == b"ping over ktlsd\n", "warm-up echo")
    p0 = pss_kb(k.proc.pid)
    t0 = time.time()
    ths = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ths:
        t.start()
    barrier.wait()
    dt = time.time() - t0
    time.sleep(0.3)
    per = (pss_kb(k.proc.pid) - p0) * 1024 / n
    live = sum(1 for s in socks if s)
    for s in socks:
        if s:
            tls_close(s)
    for t in ths:
        t.join()
    check(not errors, f"{len(errors)} failures, first: {errors[:3]}")
    check(live == n, f"only {live} of {n} connections open at once")
    end = time.time() + 20
    while time.time() < end and k.text().count("reason=closed") < n + 1:
        time.sleep(0.1)
    check(k.text().count("reason=closed") == n + 1,
          f"{k.text().count('reason=closed')} clean conn_end lines for {n} connections + 1")
    print(f"concurrent: {n} mTLS connections open at once, all echoed, in {dt:.2f}s; "
          f"{per:.0f} bytes of ktlsd memory (PSS) per idle connection")
    # Relay buffers must go back to the pool when idle: 64 KiB each would show here.
    if SANITIZER:
        print(f"concurrent: memory bound not checked under {SANITIZER}")
        return
    check(per < 40 * 1024, f"{per:.0f} bytes per idle connection")


TESTS = {
    "good_clients": t_good_clients,
    "bulk": t_bulk,
    "concurrent": t_concurrent,
}

if __name__ == "__main__":
    sys.exit(main(TESTS, needs=("curl", "gnutls-cli")))
