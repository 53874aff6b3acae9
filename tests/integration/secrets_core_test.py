#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""No secrets in ktlsd's core files.

    secrets_core_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki TEST

dumpable: ktlsd is not dumpable (PR_GET_DUMPABLE 0, asked inside the process through gdb)
unless started with --allow-core-dumps.
core: after resumption traffic (openssl s_client -sess_out, then -sess_in) and relayed
data, gdb's gcore takes a core of the live server (gcore honours MADV_DONTDUMP, as the
kernel does). The core must not hold the 16-byte key name at the head of the ticket the
client got (it lives in the ticket-key ring beside the keys), nor the plaintext that went
through the relay, while it does hold ordinary heap data (the positive control). Exit 0
pass, 1 fail, 77 skip.
"""
import os
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import (SANITIZER, Skip, check, main, recv_upto, sess_client, tls_close,  # noqa: E402
                     tls_connect)


def gdb_eval(pid, expr):
    r = subprocess.run(["gdb", "-p", str(pid), "-batch", "-nx", "-ex", f"print {expr}"],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"^\$1 = (-?\d+)", r.stdout, re.M)
    if not m and "ptrace" in r.stderr + r.stdout:
        raise Skip(f"gdb cannot attach (ptrace not permitted here): {r.stderr[-300:]}")
    check(m, f"gdb could not evaluate {expr}: {r.stdout[-300:]} {r.stderr[-300:]}")
    return int(m.group(1))


def t_dumpable(env):
    eport = env.echo_backend()
    k = env.ktlsd([], target_port=eport)
    # PR_GET_DUMPABLE is 3.
    check(gdb_eval(k.proc.pid, "(int)prctl(3, 0, 0, 0, 0)") == 0,
          "ktlsd is dumpable by default")
    k2 = env.ktlsd(["--allow-core-dumps"], target_port=eport)
    k2.wait_line(r"event=core_dumps_allowed")
    check(gdb_eval(k2.proc.pid, "(int)prctl(3, 0, 0, 0, 0)") == 1,
          "--allow-core-dumps did not make ktlsd dumpable")
    print("dumpable: 0 by default, 1 with --allow-core-dumps")


def ticket_key_name(env, sess):
    """The first 16 bytes of the session's ticket: OpenSSL's key name (ticket_keys.c)."""
    r = subprocess.run(["openssl", "sess_id", "-in", sess, "-noout", "-text"],
                       capture_output=True, text=True, check=True)
    m = re.search(r"TLS session ticket:\n((?:\s+[0-9a-f]{4} - .*\n)+)", r.stdout)
    check(m, f"no ticket in the saved session:\n{r.stdout}")
    hexbytes = []
    for ln in m.group(1).splitlines():
        # "    0000 - 2c 5b ... 9f-e1 ...   ascii": 16 bytes after the offset
        body = ln.split(" - ", 1)[1][:48].replace("-", " ")
        hexbytes += body.split()
    name = bytes.fromhex("".join(hexbytes[:16]))
    check(len(name) == 16, f"short ticket: {hexbytes}")
    return name


def sink_backend(env, got):
    """A backend that reads and never answers; got[0] counts the bytes it received."""

    def serve(c):
        with c:
            for b in iter(lambda: c.recv(65536), b""):
                got[0] += len(b)

    return env.backend(serve)


def relay(env, port, payload, keep_open):
    s = tls_connect(env, port)
    s.sendall(payload)
    got = recv_upto(s, len(payload))
    check(got == payload, f"echo returned {got!r}")
    if keep_open:
        return s
    tls_close(s)
    return None


def gcore(pid, prefix):
    r = subprocess.run(["gcore", "-o", prefix, str(pid)], capture_output=True, text=True,
                       timeout=180)
    core = f"{prefix}.{pid}"
    check(r.returncode == 0 and os.path.exists(core), f"gcore failed: {r.stderr[-500:]}")
    with open(core, "rb") as f:
        img = f.read()
    os.unlink(core)
    return img


def t_core(env):
    if os.geteuid() != 0:
        # Reading another process's memory needs ptrace rights; as root ktlsd's own
        # non-dumpable flag does not stop gcore, so this test runs as root only.
        raise Skip("gcore of another process needs root here")
    if SANITIZER:
        # A sanitizer's shadow memory is terabytes of mappings: gcore would dump it for
        # minutes, and the heap it checks is the sanitizer's allocator, not ktlsd's.
        raise Skip(f"not under {SANITIZER}: the core would be the sanitizer's memory")
    eport = env.echo_backend()
    k = env.ktlsd(["--resumption"], target_port=eport)
    sess = os.path.join(env.dir, "sess.pem")
    out = sess_client(env, k.port, "-sess_out", sess, ["-tls1_3"])
    check("New," in out, f"first handshake: {out[-400:]}")
    k.conn_end(r"resumed=no")
    out = sess_client(env, k.port, "-sess_in", sess, ["-tls1_3"])
    check("Reused," in out, f"did not resume: {out[-400:]}")
    k.conn_end(r"resumed=yes")
    name = ticket_key_name(env, sess)

    p1, p2 = os.urandom(256), os.urandom(256)
    relay(env, k.port, p1, keep_open=False)
    k.conn_end(r"reason=closed")
    open_conn = relay(env, k.port, p2, keep_open=True)  # idle, its buffers back in the pool

    # One-way traffic: nothing is written back that could reuse (and so overwrite) the
    # buffer OpenSSL decrypted the record in.
    got = [0]
    sink = env.ktlsd([], target_port=sink_backend(env, got))
    p3 = os.urandom(256)
    one_way = tls_connect(env, sink.port)
    one_way.sendall(p3)
    end = time.time() + 10
    while got[0] < len(p3) and time.time() < end:
        time.sleep(0.02)
    check(got[0] == len(p3), f"sink backend got {got[0]} of {len(p3)} bytes")

    prefix = os.path.join(env.dir, "core")
    img = gcore(k.proc.pid, prefix) + gcore(sink.proc.pid, prefix)
    open_conn.close()
    one_way.close()
    # Positive control: the heap is in the core (the listen address is a strdup'd string).
    check(f"127.0.0.1:{k.port}".encode() in img and f"127.0.0.1:{sink.port}".encode() in img,
          "the cores lack ktlsd's heap: no test")
    found = []
    # The middle of each payload: a freed or pooled buffer's first bytes are overwritten
    # by allocator and free-list pointers, which would hide a leak of the rest.
    for what, b in (("ticket key name", name), ("relayed plaintext (closed conn)", p1[96:160]),
                    ("relayed plaintext (idle conn)", p2[96:160]),
                    ("relayed plaintext (one-way conn)", p3[96:160])):
        i = img.find(b)
        if i >= 0:
            found.append(f"{what} {b.hex()} at core offset {i}")
    check(not found, "secrets in the core: " + "; ".join(found))
    print(f"core of {len(img) >> 20} MiB: no ticket key name, no relayed plaintext")


TESTS = {"dumpable": t_dumpable, "core": t_core}

if __name__ == "__main__":
    sys.exit(main(TESTS, needs=("gdb", "gcore")))
