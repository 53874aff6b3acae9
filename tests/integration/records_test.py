#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""ktlsd's own TLS 1.3 records on a host without kTLS (libktls's record layer, relay
records=ktlsd) against clients nobody here wrote:

  key_update     openssl s_client updates its keys and asks for ours mid-stream ("K"):
                 the echo goes on both ways under the new keys
  hostile        after a good handshake: a forged record (bad tag), an oversized one, a
                 record sent in the clear, a stream cut inside a record; each ends its
                 connection with its own reason, the client hears the alert RFC 8446 names
                 where there is one, and a good client is served after each
  small_records  thousands of tiny records, and records split across TCP segments, arrive
                 byte for byte
  split_fatal    a ktlsd client still reading through OpenSSL (no ticket yet) gets a forged
                 record: it ends the connection and says nothing more (no close_notify)

    records_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki key_update
"""
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import (check, echo_roundtrip, free_port, ktlsd_client, main,  # noqa: E402
                     recv_upto, tls_close, tls_connect)


def t_key_update(env):
    k = env.ktlsd(["--ktls", "off"], target_port=env.echo_backend())
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{k.port}", "-servername",
            "localhost", "-CAfile", env.p("ca.pem"), "-verify_return_error", "-quiet",
            "-no_ign_eof", "-cert", env.p("client.pem"), "-key", env.p("client.key")]
    pr = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    out = [b""]
    threading.Thread(target=lambda: [out.__setitem__(0, out[0] + b) for b in
                                     iter(lambda: pr.stdout.read1(4096), b"")],
                     daemon=True).start()

    def say(line, want):
        pr.stdin.write(line)
        pr.stdin.flush()
        end = time.time() + 10
        while want is not None and want not in out[0] and time.time() < end:
            time.sleep(0.02)
        check(want is None or want in out[0], f"no {want!r} echoed: {out[0]!r}")

    say(b"before\n", b"before\n")
    for cmd in (b"K\n", b"k\n"):  # s_client: update ours and request the peer's; then not
        say(cmd, None)
        time.sleep(0.3)  # s_client reads its commands one line per read
    say(b"after\n", b"after\n")
    pr.stdin.close()
    pr.wait(timeout=10)
    line = k.conn_end(r"")
    check(" records=ktlsd " in line and "reason=closed" in line, f"key update end: {line}")
    check(f"bytes_in={len(b'before' b'after') + 2} " in line, f"bytes in: {line}")
    print(f"KeyUpdate both ways, echo went on: {line[line.find('reason='):]}")


def raw_after_handshake(env, port, raw, expect_alert):
    """A good handshake and one echo, then raw bytes under the TLS session; what the client
    read back after them (an alert name, or how the stream ended)."""
    s = tls_connect(env, port)
    s.sendall(b"hello\n")
    check(recv_upto(s, 6) == b"hello\n", "echo before the raw bytes")
    socket.socket.sendall(s, raw)
    if raw[:1] == b"\x17" and len(raw) < 5 + int.from_bytes(raw[3:5], "big"):
        socket.socket.shutdown(s, socket.SHUT_WR)  # the record never completes
    s.settimeout(10)
    try:
        got = s.recv(100)
        seen = f"read {got!r}"
    except ssl.SSLError as e:
        seen = e.reason or str(e)
    except OSError as e:
        seen = f"{type(e).__name__}"
    s.close()
    if expect_alert:
        check(expect_alert in seen, f"client saw {seen!r}, not {expect_alert}")
    return seen


def t_hostile(env):
    k = env.ktlsd(["--ktls", "off"], target_port=env.echo_backend())
    body = os.urandom(64)
    cases = [
        # (what, raw bytes, the alert the client hears, ktlsd's reason)
        ("forged record", b"\x17\x03\x03\x00\x40" + body, "BAD_RECORD_MAC",
         "record failed authentication"),
        ("oversized record", b"\x17\x03\x03\x41\x01" + body, "RECORD_OVERFLOW",
         "record longer than TLS allows"),
        ("record in the clear", b"\x16\x03\x03\x00\x04\x18\x00\x00\x01", "UNEXPECTED_MESSAGE",
         "malformed or unexpected record"),
        ("cut inside a record", b"\x17\x03\x03\x00\x40" + body[:10], None,
         "client closed inside a record"),
    ]
    for what, raw, alert, reason in cases:
        seen = raw_after_handshake(env, k.port, raw, alert)
        line = k.conn_end(reason)
        check(" level=warn " in f" {line}" and "records=ktlsd" in line, f"{what}: {line}")
        print(f"{what}: client saw {seen}; {line[line.find('reason='):line.find(' uri=')]}")
        got = echo_roundtrip(env, k.port)
        check(got == b"ping over ktlsd\n", f"good client after {what} got {got!r}")
        k.conn_end(r"reason=closed")
    check(k.alive(), "ktlsd died")


def t_small_records(env):
    k = env.ktlsd(["--ktls", "off"], target_port=env.echo_backend())
    s = tls_connect(env, k.port)
    n = 3000
    for i in range(n):  # one record each (Python's ssl writes one per call); 9 KB of echo
        s.sendall(b"%02d\n" % (i % 100))  # fits the socket buffers meanwhile
    got = recv_upto(s, n * 3)
    want = b"".join(b"%02d\n" % (i % 100) for i in range(n))
    check(got == want, f"tiny records: {len(got)} of {len(want)} bytes back")

    # Records split across TCP segments: a memory BIO client, its records sent a few
    # bytes at a time.
    raw = socket.create_connection(("127.0.0.1", k.port), timeout=10)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ctx = ssl.create_default_context(cafile=env.p("ca.pem"))
    ctx.load_cert_chain(env.p("client.pem"), env.p("client.key"))
    inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inb, outb, server_hostname="localhost")
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            raw.sendall(outb.read())
            inb.write(raw.recv(65536))
    raw.sendall(outb.read())
    payload = os.urandom(40000)
    obj.write(payload)
    wire = outb.read()
    for i in range(0, len(wire), 7):
        raw.sendall(wire[i:i + 7])
        if i % 700 == 0:
            time.sleep(0.001)
    back = b""
    end = time.time() + 20
    while len(back) < len(payload) and time.time() < end:
        try:
            back += obj.read(65536)
        except ssl.SSLWantReadError:
            inb.write(raw.recv(65536))
    check(back == payload, f"split records: {len(back)} of {len(payload)} bytes back")
    raw.close()
    tls_close(s)
    print(f"{n} one-line records and {len(wire)} bytes of records sent 7 bytes at a time: "
          "all echoed")


def t_split_fatal(env):
    """A resuming ktlsd client still reads through OpenSSL (no ticket yet) when the server's
    record fails authentication: OpenSSL's fatal alert goes nowhere (the records are
    ktlsd's), so nothing may follow it; a close_notify would tell the server all was well."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(env.p("server.pem"), env.p("server.key"))
    ctx.load_verify_locations(env.p("ca.pem"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.num_tickets = 0  # the client stays on OpenSSL's reads, waiting for one
    lsock = socket.create_server(("127.0.0.1", free_port()))
    lsock.settimeout(20)
    seen = []

    def server():
        raw, _ = lsock.accept()
        s = ctx.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False)
        s.settimeout(10)
        check(recv_upto(s, 3) == b"hi\n", "the client's first bytes")
        socket.socket.sendall(s, b"\x17\x03\x03\x00\x40" + os.urandom(64))
        try:
            got = s.recv(100)
            seen.append("close_notify" if got == b"" else f"read {got!r}")
        except ssl.SSLEOFError:
            seen.append("eof")
        except (ssl.SSLError, OSError) as e:
            seen.append(type(e).__name__)
        s.close()

    th = threading.Thread(target=server, daemon=True)
    th.start()
    cli = ktlsd_client(env, lsock.getsockname()[1], ["--verify-uri", "spiffe://example.org/server"])
    app = socket.create_connection(("127.0.0.1", cli.port), timeout=10)
    app.sendall(b"hi\n")
    line = cli.conn_end(r"")
    th.join(20)
    app.close()
    check(" records=ktlsd " in line and " level=warn " in f" {line}", f"client end: {line}")
    check(seen == ["eof"], f"after its forged record the server saw {seen}, not a bare EOF")
    print(f"forged record in the split: server saw {seen[0]}; "
          f"{line[line.find('reason='):line.find(' uri=')]}")


TESTS = {"key_update": t_key_update, "hostile": t_hostile, "small_records": t_small_records,
         "split_fatal": t_split_fatal}

if __name__ == "__main__":
    sys.exit(main(TESTS))
