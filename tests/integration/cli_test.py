#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The ktlsd process from outside: usage and certificate errors, log formats, signals.

    cli_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki TEST

errors        bad options, files and certificates: exit 2 with exactly one clear line
json_signals  --log-format json lines parse; SIGTERM drains a live connection then exits
              0, SIGINT stops at once
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import check, echo_roundtrip, free_port, main, tls_connect  # noqa: E402


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
    fifo = os.path.join(env.dir, "fifo.pem")
    os.mkfifo(fifo)
    cases = [
        # A FIFO in a file's place must not hang the start (OpenSSL's read would block).
        ("cert is a FIFO", base + ["--cert", fifo, "--key", env.p("server.key"), "--cacert",
                                   env.p("ca.pem"), "--allow-all"],
         r"cert .*fifo.pem: not a regular file"),
        ("CRL is a FIFO", base + good + ["--crl", fifo], r"crl .*fifo.pem: not a regular file"),
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


TESTS = {
    "errors": t_cli_errors,
    "json_signals": t_json_and_signals,
}

if __name__ == "__main__":
    sys.exit(main(TESTS))
