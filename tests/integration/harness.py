# SPDX-License-Identifier: MIT
"""The integration tests' shared harness: real ktlsd processes on 127.0.0.1, real clients
(openssl s_client, curl, gnutls-cli, Python's ssl module), real backends, and the runner.

A feature's tests live in their own FEATURE_test.py beside this file, end with

    if __name__ == "__main__":
        sys.exit(harness.main(TESTS, needs=("curl",)))

and run as

    FEATURE_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki [TEST...]

Every test makes its own PKI in a temp dir (KTLSD_KEEP_TMP=1 keeps it), picks free ports,
and kills what it started, also on failure. Exit 0 pass, 1 fail, 77 skip (reason on stderr).
"""
import argparse
import hashlib
import os
import random
import re
import select
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

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

    def backend(self, serve):
        """A TCP server in this process on a free port: serve(conn) runs in a thread of its
        own for each connection; accepting stops when the Env closes."""
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", 0))
        ls.listen(1024)
        ls.settimeout(0.2)

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
        return ls.getsockname()[1]

    def echo_backend(self):
        """Echoes until EOF, then closes."""

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

        return self.backend(serve)

    def pp2_backend(self, out):
        """pp2_backend.py on a free port, one JSON line per PROXY v2 header into out."""
        be = self.spawn([sys.executable, os.path.join(HERE, "pp2_backend.py"), "0", out],
                        stdout=subprocess.PIPE, text=True)
        first = be.stdout.readline().split()
        check(first[:1] == ["listening"], f"pp2 backend did not start: {first}")
        return int(first[1])

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
            text = self.text()
            # A line ktlsd is still writing is not a line yet: a match on half of it
            # would hand the caller a truncated record.
            lines = text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]
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


def keepalive_timer(filt):
    """The keepalive timer ss shows on the one established socket matching filt, in s. ss
    shows one timer per socket: while a retransmit timer is pending ("on") it hides the
    keepalive one, so look again for a few seconds; a socket without keepalive never has it."""
    end = time.time() + 5
    while True:
        out = subprocess.run(["ss", "-tnoe", "state", "established", filt],
                             capture_output=True, text=True, timeout=10).stdout
        rows = [ln for ln in out.splitlines()[1:] if ln.strip()]
        check(len(rows) == 1, f"ss {filt}: expected one socket, got {out!r}")
        m = re.search(r"timer:\(keepalive,(\d+)(ms|sec|min)", rows[0])
        if m or time.time() > end:
            break
        time.sleep(0.2)
    check(m, f"no keepalive timer on {filt}: {rows[0]}")
    return int(m.group(1)) * {"ms": 0.001, "sec": 1, "min": 60}[m.group(2)]


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


def recv_upto(s, n, bufsize=65536):
    """What s gives until n bytes or its EOF."""
    got = b""
    while len(got) < n:
        b = s.recv(bufsize)
        if not b:
            break
        got += b
    return got


def echo_roundtrip(env, port, who="client", payload=b"ping over ktlsd\n"):
    s = tls_connect(env, port, who)
    s.sendall(payload)
    got = recv_upto(s, len(payload))
    tls_close(s)
    return got


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


def http(addr, path, method="GET", body=b""):
    """One HTTP/1.0 request to addr (a port on 127.0.0.1, or a unix socket path):
    (status, headers dict, body bytes)."""
    if isinstance(addr, int):
        s = socket.create_connection(("127.0.0.1", addr), timeout=10)
    else:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(addr)
    req = f"{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    s.sendall(req.encode() + body)
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {ln.split(":", 1)[0].lower(): ln.split(":", 1)[1].strip() for ln in lines[1:]}
    return status, hdrs, rest


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


# --- the runner -----------------------------------------------------------------------
def printable(text):
    """Control characters other than newline and tab shown escaped: a log line that a peer
    tried to break (CR, ESC) stays visible as such in the failure output."""
    return "".join(c if c in "\n\t" or c.isprintable() else repr(c)[1:-1] for c in text)


def dump_logs(env):
    """The tail of every log a failed test left, on stderr."""
    time.sleep(1)  # let ktlsd finish the connection's log line
    for name in sorted(os.listdir(env.dir)):
        if name.endswith(".log"):
            with open(os.path.join(env.dir, name), "rb") as f:
                tail = f.read()[-2000:].decode("utf-8", errors="backslashreplace")
            print(f"--- {name} (tail)\n{printable(tail)}", file=sys.stderr)


def run_one(args, name, fn):
    """Runs one test in its own Env; returns 0, 1 or SKIP."""
    env = Env(args)
    try:
        fn(env)
    except Skip as e:
        print(f"skip {name}: {e}", file=sys.stderr)
        return SKIP
    except Exception as e:  # noqa: BLE001 -- Fail, or a client's error: both fail the test
        if isinstance(e, Fail):
            print(f"FAIL {name}: {e}", file=sys.stderr)
        else:
            print(f"FAIL {name}:\n{traceback.format_exc()}", file=sys.stderr)
        dump_logs(env)
        return 1
    finally:
        env.close()
    print(f"PASS {name}")
    return 0


def main(tests, needs=()):
    """Every test file's runner. tests: {name: function(env)}; needs: programs besides openssl
    (which scripts/pki uses) whose absence skips. Runs the TESTs named on the command line
    one after the other, each in its own Env (a file with one test runs it when none is
    named); exits 1 if any failed, 77 if all skipped, else 0."""
    ap = argparse.ArgumentParser(description=sys.modules["__main__"].__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ktlsd", required=True)
    ap.add_argument("--pki-script", required=True)
    ap.add_argument("tests", nargs="*", metavar="TEST", help=" | ".join(sorted(tests)))
    args = ap.parse_args()
    names = args.tests or (list(tests) if len(tests) == 1 else [])
    if not names:
        ap.error("name a TEST")
    for name in names:
        if name not in tests:
            ap.error(f"unknown TEST {name!r} (choose from {', '.join(sorted(tests))})")
    for tool in ("openssl",) + tuple(needs):
        if not shutil.which(tool):
            print(f"skip: {tool} not installed (scripts/install-deps installs it)",
                  file=sys.stderr)
            return SKIP
    status = [run_one(args, name, tests[name]) for name in names]
    if 1 in status:
        return 1
    return SKIP if all(s == SKIP for s in status) else 0
