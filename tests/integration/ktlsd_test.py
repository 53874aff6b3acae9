#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Integration tests for `ktlsd server`: real ktlsd processes on 127.0.0.1, real clients
(openssl s_client, curl, gnutls-cli, Python's ssl module) and real backends.

    ktlsd_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki TEST

TEST is one of the names in TESTS below. Every test makes its own PKI in a temp dir,
picks free ports, and kills what it started, also on failure. Exit 0 pass, 1 fail,
77 skip (reason on stderr).
"""
import argparse
import select
import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

SKIP = 77
# Set by scripts/test for sanitizer builds: memory bounds then measure the sanitizer's
# shadow memory and quarantine, not ktlsd's, and TSan runs several times slower.
SANITIZER = os.environ.get("KTLSD_SANITIZER", "")
HERE = os.path.dirname(os.path.abspath(__file__))


class Skip(Exception):
    pass


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=60.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise Fail(f"nothing listening on port {port}")


class Env:
    """Temp dir, PKI, child processes, and everything needed to clean up."""

    def __init__(self, args):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="ktlsd-it-")
        self.pki = os.path.join(self.dir, "pki")
        subprocess.run([args.pki_script, self.pki], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs = []
        self.threads_stop = threading.Event()

    def p(self, name):
        return os.path.join(self.pki, name)

    def close(self):
        self.threads_stop.set()
        for pr in self.procs:
            if pr.poll() is None:
                pr.kill()
            try:
                pr.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if os.environ.get("KTLSD_KEEP_TMP"):
            print(f"kept {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def spawn(self, argv, **kw):
        pr = subprocess.Popen(argv, **kw)
        self.procs.append(pr)
        return pr

    # --- backends -------------------------------------------------------------------
    def http_backend(self, root=None):
        port = free_port()
        root = root or self.dir
        self.spawn([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                    "--directory", root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port)
        return port

    def echo_backend(self):
        """Threaded echo server in this process: echoes until EOF, then closes."""
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", 0))
        ls.listen(1024)
        ls.settimeout(0.2)
        port = ls.getsockname()[1]

        def serve(c):
            try:
                while True:
                    b = c.recv(1 << 17)
                    if not b:
                        break
                    c.sendall(b)
                c.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            finally:
                c.close()

        def loop():
            while not self.threads_stop.is_set():
                try:
                    c, _ = ls.accept()
                except socket.timeout:
                    continue
                except OSError:
                    break
                threading.Thread(target=serve, args=(c,), daemon=True).start()
            ls.close()

        threading.Thread(target=loop, daemon=True).start()
        return port

    # --- ktlsd ----------------------------------------------------------------------
    def ktlsd(self, extra, target_port=None, listen_port=None, allow=None, wait=True,
              cert="server", log_name=None, env_vars=None, wrap=()):
        """wrap: a command line to run ktlsd under (prlimit ...)."""
        listen_port = listen_port or free_port()
        argv = [self.args.ktlsd, "server", "--listen", f"127.0.0.1:{listen_port}",
                "--target", f"127.0.0.1:{target_port}" if target_port else extra.pop(0),
                "--cert", self.p(f"{cert}.pem"), "--key", self.p(f"{cert}.key"),
                "--cacert", self.p("ca.pem"), "--threads", "2"]
        argv += allow if allow is not None else ["--allow-uri", "spiffe://example.org/client"]
        argv = list(wrap) + argv + extra
        log = os.path.join(self.dir, log_name or f"ktlsd-{listen_port}.log")
        pr = self.spawn(argv, stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                        env=dict(os.environ, **env_vars) if env_vars else None)
        k = Ktlsd(pr, listen_port, log)
        if wait:
            k.wait_line(r"event=listening|\"event\": ?\"listening\"", timeout=60)
        return k


class Ktlsd:
    def __init__(self, proc, port, log):
        self.proc, self.port, self.log = proc, port, log
        self.seen = 0

    def text(self):
        with open(self.log) as f:
            return f.read()

    def wait_line(self, pattern, timeout=10.0, new_only=False):
        """Returns the first log line matching pattern (after the last match if new_only)."""
        rx = re.compile(pattern)
        end = time.time() + timeout
        while time.time() < end:
            lines = self.text().splitlines()
            start = self.seen if new_only else 0
            for i in range(start, len(lines)):
                if rx.search(lines[i]):
                    if new_only:
                        self.seen = i + 1
                    return lines[i]
            if self.proc.poll() is not None and not new_only:
                break
            time.sleep(0.05)
        raise Fail(f"no log line matching {pattern!r} in {self.log}:\n{self.text()[-3000:]}")

    def conn_end(self, pattern, timeout=10.0):
        return self.wait_line(r"event=conn_end.*" + pattern, timeout, new_only=True)

    def alive(self):
        return self.proc.poll() is None


# --- clients --------------------------------------------------------------------------
def tls_ctx(env, who="client", verify_server=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(env.p("ca.pem"))
    if who:
        ctx.load_cert_chain(env.p(f"{who}.pem"), env.p(f"{who}.key"))
    if not verify_server:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def tls_connect(env, port, who="client", timeout=20):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return tls_ctx(env, who).wrap_socket(raw, server_hostname="localhost")


def tls_close(s):
    """Ends a TLS connection as a well-behaved client does: close_notify first. (Python's
    close() alone sends none, and ktlsd logs such an end as truncated.)"""
    try:
        s.settimeout(5)
        s.unwrap()
    except (OSError, ValueError):
        pass
    s.close()


def interact(argv, data, expect=None, timeout=15):
    """Runs a client, feeds it data, and (with expect) waits until expect shows up on its
    stdout before closing its stdin, so no client races its own EOF against the echo."""
    pr = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    out, err = [b""], [b""]

    def rd(stream, acc):
        for chunk in iter(lambda: stream.read1(65536), b""):
            acc[0] += chunk

    ts = [threading.Thread(target=rd, args=(pr.stdout, out), daemon=True),
          threading.Thread(target=rd, args=(pr.stderr, err), daemon=True)]
    for t in ts:
        t.start()
    try:
        pr.stdin.write(data)
        pr.stdin.flush()
    except BrokenPipeError:
        pass
    end = time.time() + timeout
    if expect is not None:
        while time.time() < end and expect not in out[0] and pr.poll() is None:
            time.sleep(0.02)
    try:
        pr.stdin.close()
    except BrokenPipeError:
        pass
    try:
        pr.wait(timeout=max(0.1, end - time.time()))
    except subprocess.TimeoutExpired:
        pr.kill()
        pr.wait()
    for t in ts:
        t.join(timeout=2)
    return pr.returncode, out[0], err[0].decode(errors="replace")


def s_client(env, port, args, data=b"", timeout=15, expect=None):
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
            "-CAfile", env.p("ca.pem"), "-verify_return_error", "-quiet", "-no_ign_eof"] + args
    return interact(argv, data, expect, timeout)


def gnutls_cli(env, port, data, expect, who="client", timeout=30):
    argv = ["gnutls-cli", "--x509cafile", env.p("ca.pem"), "--x509certfile",
            env.p(f"{who}.pem"), "--x509keyfile", env.p(f"{who}.key"), "--port", str(port),
            "localhost"]
    return interact(argv, data, expect, timeout)


def echo_roundtrip(env, port, who="client", payload=b"ping over ktlsd\n"):
    s = tls_connect(env, port, who)
    s.sendall(payload)
    got = b""
    while len(got) < len(payload):
        b = s.recv(65536)
        if not b:
            break
        got += b
    tls_close(s)
    return got


def good_client_works(env, k):
    got = echo_roundtrip(env, k.port)
    check(got == b"ping over ktlsd\n", f"good client after bad peer got {got!r}")
    k.conn_end(r"reason=closed.*uri=spiffe://example.org/client")
    check(k.alive(), "ktlsd died")


def bulk(env, port, size, who="client"):
    """Sends size bytes of random data and reads the echo at the same time; sha256 both.

    One thread, non-blocking: an SSL object must not be read and written from two threads
    at once, so the full-duplex transfer is a select() loop."""
    rnd = random.Random(1234)
    chunk = rnd.randbytes(1 << 20)
    tx_hash, rx_hash = hashlib.sha256(), hashlib.sha256()
    s = tls_connect(env, port, who, timeout=120)
    s.setblocking(False)
    sent, got, i, pending = 0, 0, 0, b""
    t0 = time.time()
    deadline = t0 + 300
    while got < size:
        check(time.time() < deadline, f"bulk stalled: sent {sent}, got {got} of {size}")
        progress = False
        if sent < size or pending:
            if not pending:
                # Vary the data so a reordered or duplicated block changes the hash.
                blk = chunk[i % 251:] + chunk[: i % 251]
                pending = blk[: min(size - sent, 1 << 16)]
                tx_hash.update(pending)
                sent += len(pending)
                i += 1
            try:
                n = s.send(pending)
                pending = pending[n:]
                progress = True
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                pass
        try:
            b = s.recv(1 << 18)
            if not b:
                break
            rx_hash.update(b)
            got += len(b)
            progress = True
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        if not progress and not s.pending():
            select.select([s], [s] if (pending or sent < size) else [], [], 1.0)
    dt = time.time() - t0
    tls_close(s)
    check(got == size, f"echo returned {got} of {size} bytes (sent {sent})")
    check(tx_hash.digest() == rx_hash.digest(), "sha256 of echoed data differs")
    return dt


# --- tests ----------------------------------------------------------------------------
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
            got = b""
            while len(got) < len(msg):
                b = s.recv(4096)
                if not b:
                    break
                got += b
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


def t_json_and_signals(env):
    """--log-format json lines parse; SIGTERM drains a live connection then exits 0."""
    eport = env.echo_backend()
    k = env.ktlsd(["--log-format", "json"], target_port=eport)
    check(echo_roundtrip(env, k.port) == b"ping over ktlsd\n", "json: echo failed")
    line = k.wait_line(r'"event":"conn_end"')
    obj = json.loads(line)
    for f in ("peer", "uri", "tls", "cipher", "ktls", "bytes_in", "bytes_out", "duration_ms",
              "reason"):
        check(f in obj, f"json conn_end lacks {f}: {line}")
    check(obj["reason"] == "closed" and obj["uri"] == "spiffe://example.org/client", line)

    # SIGTERM with a connection open: it keeps working, new ones are refused, exit 0 at end.
    s = tls_connect(env, k.port)
    s.sendall(b"1")
    check(s.recv(1) == b"1", "echo before SIGTERM")
    k.proc.send_signal(signal.SIGTERM)
    k.wait_line(r'"event":"shutdown"')
    time.sleep(0.3)
    s.sendall(b"2")
    check(s.recv(1) == b"2", "live connection broken by SIGTERM drain")
    try:
        tls_connect(env, k.port, timeout=2).close()
        refused = False
    except OSError:
        refused = True
    check(refused, "new connection accepted while draining")
    check(k.alive(), "exited before the live connection finished")
    s.close()
    rc = k.proc.wait(timeout=10)
    check(rc == 0, f"exit status {rc} after drain")

    # SIGINT: stop now even with a connection open.
    k2 = env.ktlsd([], target_port=eport)
    s = tls_connect(env, k2.port)
    s.sendall(b"1")
    s.recv(1)
    k2.proc.send_signal(signal.SIGINT)
    rc = k2.proc.wait(timeout=5)
    check(rc == 0, f"SIGINT exit status {rc}")
    s.close()


def run_cli(env, argv):
    r = subprocess.run([env.args.ktlsd] + argv, capture_output=True, timeout=20)
    return r.returncode, r.stderr.decode()


def t_cli_errors(env):
    """Usage and certificate errors: exit 2 with exactly one clear line."""
    port = free_port()
    base = ["server", "--listen", f"127.0.0.1:{port}", "--target", "127.0.0.1:1"]
    good = ["--cert", env.p("server.pem"), "--key", env.p("server.key"), "--cacert",
            env.p("ca.pem"), "--allow-all"]
    garbage = os.path.join(env.dir, "garbage.pem")
    with open(garbage, "w") as f:
        f.write("this is not PEM\n")
    cases = [
        ("missing cert file", base + ["--cert", "/nonexistent/x.pem", "--key",
                                      env.p("server.key"), "--cacert", env.p("ca.pem"),
                                      "--allow-all"], r"cert /nonexistent/x.pem: No such file"),
        ("key not matching cert", base + ["--cert", env.p("server.pem"), "--key",
                                          env.p("client.key"), "--cacert", env.p("ca.pem"),
                                          "--allow-all"], r"does not match cert"),
        ("unreadable CA", base + ["--cert", env.p("server.pem"), "--key", env.p("server.key"),
                                  "--cacert", garbage, "--allow-all"], r"cacert .*garbage.pem"),
        ("cert is not a certificate", base + ["--cert", garbage, "--key", env.p("server.key"),
                                              "--cacert", env.p("ca.pem"), "--allow-all"],
         r"cert .*garbage.pem: "),
        ("no allow rule", base + good[:-1], r"no --allow-uri.*refusing to start"),
        ("bad listen address", ["server", "--listen", "127.0.0.1", "--target", "127.0.0.1:1"]
         + good, r"--listen '127.0.0.1': expected host:port"),
        ("unix listen", ["server", "--listen", "unix:/tmp/x", "--target", "127.0.0.1:1"]
         + good, r"only valid as a target"),
        ("bad port", ["server", "--listen", "127.0.0.1:99999", "--target", "127.0.0.1:1"]
         + good, r"port must be"),
        ("bad ktls mode", base + good + ["--ktls", "maybe"], r"--ktls: invalid value 'maybe'"),
        ("bad URI pattern", base + good + ["--allow-uri", "spiffe://*.org/x"],
         r"--allow-uri 'spiffe://\*.org/x': expected an exact URI"),
        ("unknown option", base + good + ["--frobnicate"], r"unknown option"),
        ("missing --target", ["server", "--listen", f"127.0.0.1:{port}"] + good,
         r"--target is required"),
        ("bad min-tls", base + good + ["--min-tls", "1.1"], r"--min-tls: invalid value"),
    ]
    for name, argv, rx in cases:
        rc, err = run_cli(env, argv)
        lines = err.strip().splitlines()
        check(rc == 2, f"{name}: exit {rc}, stderr {err!r}")
        check(len(lines) == 1, f"{name}: expected one line, got {err!r}")
        check(re.search(rx, lines[0]), f"{name}: {lines[0]!r} does not match {rx!r}")
        print(f"{name}: exit 2: {lines[0]}")

    rc, err = run_cli(env, base + good + ["--ktls", "require"])
    if "kernel has no kTLS" in err or rc == 2:
        check(rc == 2 and len(err.strip().splitlines()) == 1 and "no kTLS" in err,
              f"--ktls require without kTLS: exit {rc} {err!r}")
        print(f"ktls require: exit 2: {err.strip()}")


def write(env, name, text):
    path = os.path.join(env.dir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def t_config(env):
    """Two services in one process from an INI file; check-config errors with line numbers."""
    e1, e2 = env.echo_backend(), env.echo_backend()
    p1, p2 = free_port(), free_port()
    cfg = write(env, "two.ini", f"""; two services, one process
[global]
threads = 2
log-format = logfmt

[service spiffe]
listen = 127.0.0.1:{p1}
target = 127.0.0.1:{e1}
cert = {env.p('server.pem')}
key = {env.p('server.key')}
cacert = {env.p('ca.pem')}
allow-uri = spiffe://example.org/other spiffe://example.org/client

[service dns]
listen = 127.0.0.1:{p2}
target = 127.0.0.1:{e2}
cert = {env.p('server.pem')}
key = {env.p('server.key')}
cacert = {env.p('ca.pem')}
allow-dns = evil.example.net
""")
    r = subprocess.run([env.args.ktlsd, "check-config", cfg], capture_output=True, timeout=20)
    check(r.returncode == 0, f"check-config of a good file: {r.stderr.decode()}")
    log = os.path.join(env.dir, "config.log")
    pr = env.spawn([env.args.ktlsd, "--config", cfg], stderr=open(log, "w"))
    k = Ktlsd(pr, p1, log)
    k.wait_line(r"event=listening service=dns")
    check(echo_roundtrip(env, p1) == b"ping over ktlsd\n", "service spiffe: good client")
    k.conn_end(r"service=spiffe .*reason=closed")
    check(echo_roundtrip(env, p2, who="evil-client") == b"ping over ktlsd\n",
          "service dns: evil-client is allowed there by DNS SAN")
    k.conn_end(r"service=dns .*reason=closed .*dns=evil.example.net")
    rc, out, err = s_client(env, p2, ["-cert", env.p("client.pem"), "-key",
                                      env.p("client.key")], b"x\n")
    k.conn_end(r'service=dns .*reason="identity not allowed"')
    pr.send_signal(signal.SIGTERM)
    check(pr.wait(timeout=10) == 0, "config run did not exit 0 on SIGTERM")

    svc = f"""[service a]
listen = 127.0.0.1:{p1}
target = 127.0.0.1:{e1}
cert = {env.p('server.pem')}
key = {env.p('server.key')}
cacert = {env.p('ca.pem')}
"""
    cases = [
        ("malformed line", svc + "allow-all = yes\nthis line has no equals sign\n", 8,
         r"malformed line"),
        ("unknown key", svc + "allow-all = yes\nallow-everything = yes\n", 8,
         r"unknown key 'allow-everything'"),
        ("bad address", svc.replace(f"listen = 127.0.0.1:{p1}", "listen = 127.0.0.1:http")
         + "allow-all = yes\n", 2, r"listen '127.0.0.1:http': port must be"),
        ("missing cert", svc.replace(env.p("server.pem"), "/nonexistent/server.pem")
         + "allow-all = yes\n", 4, r"cert /nonexistent/server.pem: No such file"),
        ("no allow rule", "[global]\nthreads = 1\n\n" + svc, 4, r"no allow-uri.*allow-all"),
        ("unknown section", "[services a]\nlisten = 127.0.0.1:1\n", 1, r"unknown section"),
        ("key not matching cert", svc.replace(env.p("server.key"), env.p("client.key"))
         + "allow-all = yes\n", 1, r"does not match cert"),
    ]
    for name, text, line, rx in cases:
        path = write(env, "bad.ini", text)
        r = subprocess.run([env.args.ktlsd, "check-config", path], capture_output=True,
                           timeout=20)
        err = r.stderr.decode().strip()
        check(r.returncode == 2, f"{name}: exit {r.returncode} {err!r}")
        check(len(err.splitlines()) == 1, f"{name}: not one line: {err!r}")
        check(f"bad.ini:{line}:" in err, f"{name}: expected line {line} in {err!r}")
        check(re.search(rx, err), f"{name}: {err!r} does not match {rx!r}")
        print(f"check-config {name}: exit 2: {err}")
        # The daemon refuses the same file the same way.
        r = subprocess.run([env.args.ktlsd, "--config", path], capture_output=True, timeout=20)
        check(r.returncode == 2 and r.stderr.decode().strip() == err,
              f"--config {name}: {r.returncode} {r.stderr!r}")


def ktlsd_client(env, target_port, extra=(), cert="client", target=None, wrap=()):
    """ktlsd client on a free port; target defaults to 127.0.0.1:PORT with --server-name
    localhost. wrap: a command line to run it under (a mount namespace)."""
    port = free_port()
    argv = [env.args.ktlsd, "client", "--listen", f"127.0.0.1:{port}", "--target",
            target or f"127.0.0.1:{target_port}", "--cert", env.p(f"{cert}.pem"), "--key",
            env.p(f"{cert}.key"), "--cacert", env.p("ca.pem"), "--threads", "2"]
    if not target:
        argv += ["--server-name", "localhost"]
    argv = list(wrap) + argv + list(extra)
    log = os.path.join(env.dir, f"ktlsd-client-{port}.log")
    pr = env.spawn(argv, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    k = Ktlsd(pr, port, log)
    k.wait_line(r"event=listening", timeout=60)
    return k


def plain_roundtrip(port, payload=b"plain ping\n", timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(payload)
    got = b""
    try:
        while len(got) < len(payload):
            b = s.recv(65536)
            if not b:
                break
            got += b
    except OSError:
        pass
    s.close()
    return got


def plain_bulk(port, size, timeout=120):
    rnd = random.Random(99)
    chunk = rnd.randbytes(1 << 20)
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    txh, rxh, err = hashlib.sha256(), hashlib.sha256(), []

    def sender():
        try:
            left, i = size, 0
            while left:
                blk = (chunk[i % 97:] + chunk[: i % 97])[:min(left, len(chunk))]
                s.sendall(blk)
                txh.update(blk)
                left -= len(blk)
                i += 1
            s.shutdown(socket.SHUT_WR)  # half-close must travel through both ktlsd
        except Exception as e:  # noqa: BLE001
            err.append(e)

    t0 = time.time()
    th = threading.Thread(target=sender)
    th.start()
    got = 0
    while True:
        b = s.recv(1 << 18)
        if not b:
            break
        rxh.update(b)
        got += len(b)
    th.join()
    dt = time.time() - t0
    s.close()
    check(not err, f"sender: {err}")
    check(got == size, f"got {got} of {size}")
    check(txh.digest() == rxh.digest(), "sha256 differs")
    return dt


def t_client_mode(env):
    """ktlsd client: sidecar pair end to end, against openssl s_server, bad servers refused."""
    eport = env.echo_backend()
    srv = env.ktlsd([], target_port=eport)
    cli = ktlsd_client(env, srv.port, ["--verify-uri", "spiffe://example.org/server"])
    check(plain_roundtrip(cli.port) == b"plain ping\n", "sidecar pair echo")
    line = cli.conn_end(r"reason=closed")
    check("uri=spiffe://example.org/server" in line and "tls=TLSv1.3" in line, line)
    srv.conn_end(r"reason=closed .*uri=spiffe://example.org/client")
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


def log_fields(line):
    """key=value pairs of one logfmt line (quoted values unquoted)."""
    return {k: v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', line)}


def sess_client(env, port, sess_flag, sess_file, extra=(), cert=None):
    """openssl s_client saving (-sess_out) or offering (-sess_in) a session; returns its
    stdout, which says "New" or "Reused" for the handshake."""
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
            "-CAfile", env.p("ca.pem"), "-verify_return_error", "-cert",
            cert or env.p("client.pem"), "-key", env.p("client.key"), sess_flag,
            sess_file] + list(extra)
    pr = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    # Stay connected long enough for the TLS 1.3 tickets to arrive before it saves them.
    time.sleep(0.5)
    try:
        pr.stdin.write(b"x\n")
        pr.stdin.flush()
    except BrokenPipeError:
        pass
    time.sleep(0.5)
    out, _ = pr.communicate(timeout=30)
    return out.decode(errors="replace")


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
        print(f"{flag}: expiry across resumption not tested: {FAKETIME_LIB} missing")
        return
    short = short_client_cert(env, 2)
    clock = os.path.join(env.dir, "faketime")
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


def pss_kb(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for ln in f:
            if ln.startswith("Pss:"):
                return int(ln.split()[1])
    return 0


def tls_stat():
    try:
        with open("/proc/net/tls_stat") as f:
            return {k: int(v) for k, v in (ln.split() for ln in f if ln.strip())}
    except OSError:
        return None


def t_vm_ktls(env):
    """Inside a kTLS kernel: --ktls require, good clients, bulk; kernel counters agree."""
    if tls_stat() is None:
        subprocess.run(["modprobe", "tls"], capture_output=True)
    if tls_stat() is None:
        raise Skip("no /proc/net/tls_stat: this kernel has no kTLS (run under tests/vm)")
    size = int(os.environ.get("KTLSD_BULK_MIB", "8")) << 20
    eport = env.echo_backend()
    k = env.ktlsd(["--ktls", "require"], target_port=eport)
    before = tls_stat()

    # Hold one connection open and read the kernel's view while it is established.
    s = tls_connect(env, k.port)
    s.sendall(b"hold")
    check(s.recv(4) == b"hold", "echo over kTLS")
    during = tls_stat()
    check(during["TlsCurrTxSw"] > before["TlsCurrTxSw"] - 0 and during["TlsCurrTxSw"] > 0,
          f"TlsCurrTxSw not > 0 while connected: {during}")
    check(during["TlsCurrRxSw"] > 0, f"TlsCurrRxSw not > 0 while connected: {during}")
    s.close()
    line = k.conn_end(r"reason=closed")
    check("ktls=tx+rx" in line, f"connection not on kTLS: {line}")

    hport = env.http_backend()
    kh = env.ktlsd(["--ktls", "require"], target_port=hport)
    for tls in ("1.3", "1.2"):
        flags = ["--tlsv1.2", "--tls-max", "1.2"] if tls == "1.2" else []
        r = subprocess.run(["curl", "-sS", "--fail", "--cert", env.p("client.pem"), "--key",
                            env.p("client.key"), "--cacert", env.p("ca.pem")] + flags
                           + [f"https://localhost:{kh.port}/"], capture_output=True, timeout=60)
        check(r.returncode == 0 and b"<html" in r.stdout.lower(),
              f"curl TLS {tls} over kTLS: {r.stderr.decode()}")
        line = kh.conn_end(r"reason=closed")
        check("ktls=tx+rx" in line and f"tls=TLSv{tls}" in line, f"curl: {line}")

    rc, out, err = s_client(env, k.port, ["-cert", env.p("client.pem"), "-key",
                                          env.p("client.key")], b"hello s_client\n", timeout=60,
                           expect=b"hello s_client")
    check(b"hello s_client" in out, f"s_client over kTLS: {err[-400:]}")
    check("ktls=tx+rx" in k.conn_end(r"reason=closed"), "s_client not on kTLS")
    rc, out, err = gnutls_cli(env, k.port, b"hello gnutls\n", b"hello gnutls", timeout=60)
    check(b"hello gnutls" in out, f"gnutls-cli over kTLS: {err[-400:]}")
    check("ktls=tx+rx" in k.conn_end(r"reason=closed"), "gnutls-cli not on kTLS")

    dt = bulk(env, k.port, size)
    line = k.conn_end(r"reason=closed")
    check("ktls=tx+rx" in line and f"bytes_in={size}" in line, f"bulk: {line}")
    # Memory per idle established kTLS connection: no SSL object is kept.
    n = int(os.environ.get("KTLSD_IDLE_CONNS", "100"))
    held = [tls_connect(env, k.port, timeout=60) for _ in range(10)]
    for h in held:
        h.sendall(b"w")
        h.recv(1)
    time.sleep(0.5)
    p0 = pss_kb(k.proc.pid)
    for _ in range(n):
        h = tls_connect(env, k.port, timeout=60)
        h.sendall(b"i")
        h.recv(1)
        held.append(h)
    time.sleep(0.5)
    p1 = pss_kb(k.proc.pid)
    per = (p1 - p0) * 1024 / n
    print(f"kTLS idle connections: PSS {p0} -> {p1} KiB for {n}: {per:.0f} bytes each")
    check(per < 8192, f"{per:.0f} bytes of userspace memory per idle kTLS connection")
    for h in held:
        h.close()
    for _ in range(n + 10):
        k.conn_end(r"reason=closed")

    # Client mode mirrors it: a sidecar pair, both ends on kTLS.
    cli = ktlsd_client(env, k.port, ["--verify-uri", "spiffe://example.org/server", "--ktls",
                                     "require"])
    dt2 = plain_bulk(cli.port, size)
    line = cli.conn_end(r"reason=closed")
    check("ktls=tx+rx" in line and f"bytes_in={size}" in line, f"client mode: {line}")
    check("ktls=tx+rx" in k.conn_end(r"reason=closed"), "pair: server end not on kTLS")
    print(f"kTLS sidecar pair {size >> 20} MiB each way in {dt2:.2f}s")

    # Resumption under kTLS: the server's tickets go out before its kernel TX takes over
    # (counted into the record sequence), the client reads them through OpenSSL and hands
    # RX over after. A sequence off by one would fail authentication in the kernel
    # (EBADMSG, TlsDecryptError) instead of echoing byte-exact.
    kr = env.ktlsd(["--ktls", "require", "--resumption"], target_port=eport)
    clr = ktlsd_client(env, kr.port, ["--verify-uri", "spiffe://example.org/server", "--ktls",
                                      "require", "--threads", "1"])
    seen = []
    for i in range(3):
        dtr = plain_bulk(clr.port, size // 4)
        c = log_fields(clr.conn_end(r"reason=closed"))
        sv = log_fields(kr.conn_end(r"reason=closed"))
        for end, f in (("client", c), ("server", sv)):
            check(f.get("ktls") == "tx+rx" and f.get("bytes_in") == str(size // 4),
                  f"resumption pair, {end} end: {f}")
        check(sv.get("uri") == "spiffe://example.org/client", f"identity: {sv}")
        seen.append(c.get("resumed"))
    check(seen == ["no", "yes", "yes"], f"resumed under kTLS: {seen}")
    # While one resumed pair connection is open, the kernel holds TLS state for both of
    # its ends: TX and RX of the ktlsd client's socket and of the ktlsd server's.
    base = tls_stat()
    h = socket.create_connection(("127.0.0.1", clr.port), timeout=30)
    h.sendall(b"hold")
    check(h.recv(4) == b"hold", "echo through the resumed kTLS pair")
    open_ = tls_stat()
    for key in ("TlsCurrTxSw", "TlsCurrRxSw"):
        check(open_[key] - base[key] >= 2, f"{key} {base[key]} -> {open_[key]} with a pair open")
    h.close()
    clr.conn_end(r"reason=closed .*resumed=yes")
    kr.conn_end(r"reason=closed")
    print(f"kTLS + resumption: {seen}, {size // 4 >> 20} MiB each way per connection")
    after = tls_stat()
    check(after["TlsDecryptError"] == before["TlsDecryptError"],
          f"TlsDecryptError rose: {before} -> {after}")
    check(after["TlsTxSw"] > before["TlsTxSw"] and after["TlsRxSw"] > before["TlsRxSw"],
          f"kernel TLS counters did not move: {before} -> {after}")
    print(f"kTLS bulk {size >> 20} MiB each way in {dt:.2f}s; tls_stat {after}")


def t_vm_bulk(env):
    """Debug helper (not registered): just the kTLS bulk echo."""
    if tls_stat() is None:
        raise Skip("no kTLS")
    eport = env.echo_backend()
    k = env.ktlsd(["--ktls", "require"], target_port=eport)
    size = int(os.environ.get("KTLSD_BULK_MIB", "8")) << 20
    dt = bulk(env, k.port, size)
    print(k.conn_end(r"reason=closed"), dt)


def t_proxy_protocol(env):
    """--proxy-protocol: the backend gets a PROXY v2 header with the client's address and
    verified identity before any data; refused peers never reach it."""
    out = os.path.join(env.dir, "pp2.jsonl")
    be = env.spawn([sys.executable, os.path.join(HERE, "pp2_backend.py"), "0", out],
                   stdout=subprocess.PIPE, text=True)
    first = be.stdout.readline().split()
    check(first[:1] == ["listening"], f"pp2 backend did not start: {first}")
    k = env.ktlsd(["--proxy-protocol", "--resumption"], target_port=int(first[1]))

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
    "vm_bulk": t_vm_bulk,
    "good_clients": t_good_clients,
    "bulk": t_bulk,
    "concurrent": t_concurrent,
    "bad_peers": t_bad_peers,
    "json_signals": t_json_and_signals,
    "cli_errors": t_cli_errors,
    "config": t_config,
    "vm_ktls": t_vm_ktls,
    "client_mode": t_client_mode,
    "resumption": t_resumption,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ktlsd", required=True)
    ap.add_argument("--pki-script", required=True)
    ap.add_argument("test", choices=sorted(TESTS))
    args = ap.parse_args()
    for tool in ("openssl", "curl", "gnutls-cli"):
        if not shutil.which(tool):
            print(f"skip: {tool} not installed", file=sys.stderr)
            return SKIP
    env = Env(args)
    try:
        TESTS[args.test](env)
    except Skip as e:
        print(f"skip: {e}", file=sys.stderr)
        return SKIP
    except Fail as e:
        print(f"FAIL {args.test}: {e}", file=sys.stderr)
        time.sleep(1)  # let ktlsd finish the connection's log line
        for name in sorted(os.listdir(env.dir)):
            if name.endswith(".log"):
                with open(os.path.join(env.dir, name)) as f:
                    tail = f.read()[-2000:]
                print(f"--- {name} (tail)\n{tail}", file=sys.stderr)
        return 1
    finally:
        env.close()
    print(f"PASS {args.test}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
