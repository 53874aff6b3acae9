#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""--intercept CIDR:PORT[-PORT] (sk_lookup, bpf/steer.bpf.c): a client dialling an address
and port where nothing listens is served by ktlsd's listener, and the address it dialled
(getsockname of the accepted socket) is in the conn_end line (dst=) and the PROXY v2 header.
Needs root (CAP_BPF + CAP_NET_ADMIN) and a kernel with sk_lookup (5.9+): else it skips.

    steer_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki
"""
import json
import os
import socket
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import Skip, check, free_port, main, tls_close, tls_ctx  # noqa: E402


def need_bpf():
    if os.geteuid() != 0:
        raise Skip("--intercept needs CAP_BPF and CAP_NET_ADMIN: run as root")


def port_closed(host, port):
    try:
        socket.create_connection((host, port), timeout=2).close()
        return False
    except OSError:
        return True


def roundtrip(env, host, port, payload):
    raw = socket.create_connection((host, port), timeout=20)
    src = raw.getsockname()
    with tls_ctx(env).wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            b = s.recv(4096)
            if not b:
                break
            got += b
        tls_close(s)
    return got, src


def t_intercept_served(env):
    """127.0.0.2:PORT and a port range on 127.0.0.3 have no listener; with --intercept they
    reach ktlsd (listening on 127.0.0.1) and the backend; other ports stay refused."""
    need_bpf()
    port = free_port()
    lo = free_port()
    check(port_closed("127.0.0.2", port), f"something already listens on 127.0.0.2:{port}")
    k = env.ktlsd(["--intercept", f"127.0.0.2/32:{port}", "--intercept",
                   f"127.0.0.0/8:{lo}-{lo + 1}"], target_port=env.echo_backend())
    k.wait_line(r"event=intercepting.*rules=")
    got, src = roundtrip(env, "127.0.0.2", port, b"steered\n")
    check(got == b"steered\n", f"echo through the intercepted address: {got!r}")
    line = k.conn_end(r"reason=closed")
    check(f"dst=127.0.0.2:{port}" in line, f"conn_end lacks the dialled address: {line}")
    check(f"peer={src[0]}:{src[1]}" in line, f"conn_end peer: {line}")
    got, _ = roundtrip(env, "127.0.0.3", lo + 1, b"range\n")
    check(got == b"range\n", f"echo through the port range: {got!r}")
    k.conn_end(rf"dst=127.0.0.3:{lo + 1}.*reason=closed")
    # Not in any rule: the normal lookup, which finds nothing.
    other = free_port()
    check(port_closed("127.0.0.2", other), f"127.0.0.2:{other} was taken over")
    # The listener's own address still works and logs no dst.
    got, _ = roundtrip(env, "127.0.0.1", k.port, b"direct\n")
    check(got == b"direct\n", "the listen address itself")
    line = k.conn_end(r"reason=closed")
    check(f"dst=127.0.0.1:{k.port}" in line, f"dst on a direct connection: {line}")


def t_intercept_proxy_v2(env):
    """The PROXY v2 header carries the dialled address as the destination."""
    need_bpf()
    port = free_port()
    out = os.path.join(env.dir, "pp2.jsonl")
    k = env.ktlsd(["--proxy-protocol", "--intercept", f"127.0.0.2:{port}"],
                  target_port=env.pp2_backend(out))
    got, src = roundtrip(env, "127.0.0.2", port, b"x\n")
    check(got == b"x\n", f"echo: {got!r}")
    k.conn_end(r"reason=closed")
    with open(out) as f:
        recs = [json.loads(x) for x in f if x.strip()]
    check(len(recs) == 1, f"one header expected: {recs}")
    check(recs[0].get("dst") == f"127.0.0.2:{port}", f"PROXY v2 dst: {recs[0]}")
    check(recs[0].get("src") == f"{src[0]}:{src[1]}", f"PROXY v2 src: {recs[0]}")


def t_intercept_gone_on_exit(env):
    """The steering lives as long as the process: after ktlsd exits nothing answers."""
    need_bpf()
    port = free_port()
    k = env.ktlsd(["--intercept", f"127.0.0.2:{port}"], target_port=env.echo_backend())
    check(not port_closed("127.0.0.2", port), "not steered while running")
    k.proc.kill()
    k.proc.wait(timeout=10)
    check(port_closed("127.0.0.2", port), "still steered after ktlsd died")


def t_intercept_bad_values(env):
    """Bad --intercept values are refused with the reason, exit 2, before anything starts."""
    cases = {
        "127.0.0.2": "expected CIDR:PORT",
        "127.0.0.2/33:80": "prefix length must be 0-32",
        "10.0.0.1/8:80": "bits set past its prefix",
        "127.0.0.2:0": "ports 1-65535",
        "127.0.0.2:90-80": "backwards",
        "[127.0.0.1]:80": "brackets are for IPv6",
        "fd00::/64:80": "IPv6 in brackets",
        "host.example:80": "not an IPv4 or IPv6 address",
    }
    for val, want in cases.items():
        r = subprocess.run([env.args.ktlsd, "server", "--listen", "127.0.0.1:1", "--target",
                            "127.0.0.1:2", "--cert", env.p("server.pem"), "--key",
                            env.p("server.key"), "--cacert", env.p("ca.pem"), "--allow-all",
                            "--intercept", val], capture_output=True, text=True, timeout=30)
        check(r.returncode == 2 and want in r.stderr,
              f"--intercept {val}: want exit 2 and {want!r}, got {r.returncode}: {r.stderr}")


def t_intercept_unprivileged(env):
    """Without CAP_BPF/CAP_NET_ADMIN the error says which capabilities, exit 2."""
    if os.geteuid() != 0 or not os.path.exists("/usr/sbin/capsh") and \
            not os.path.exists("/sbin/capsh"):
        raise Skip("needs root and capsh to drop capabilities")
    port = free_port()
    argv = [env.args.ktlsd, "server", "--listen", f"127.0.0.1:{free_port()}", "--target",
            "127.0.0.1:2", "--cert", env.p("server.pem"), "--key", env.p("server.key"),
            "--cacert", env.p("ca.pem"), "--allow-all", "--intercept", f"127.0.0.2:{port}"]
    r = subprocess.run(["capsh", "--drop=cap_bpf,cap_net_admin,cap_sys_admin", "--"] +
                       ["-c", " ".join(argv)], capture_output=True, text=True, timeout=30)
    check(r.returncode == 2 and "CAP_BPF and CAP_NET_ADMIN" in r.stderr,
          f"want exit 2 naming the capabilities, got {r.returncode}: {r.stderr}")


def t_relay_option(env):
    """--relay: bad values refused; sockmap without kTLS refused with the reason (the host
    kernel has none); auto starts and the listening line names the relay it got."""
    base = [env.args.ktlsd, "server", "--listen", "127.0.0.1:1", "--target", "127.0.0.1:2",
            "--cert", env.p("server.pem"), "--key", env.p("server.key"), "--cacert",
            env.p("ca.pem"), "--allow-all"]
    r = subprocess.run(base + ["--relay", "fast"], capture_output=True, text=True, timeout=30)
    check(r.returncode == 2 and "--relay: invalid value 'fast'" in r.stderr,
          f"--relay fast: {r.returncode} {r.stderr}")
    have_ktls = os.path.exists("/proc/net/tls_stat")
    if not have_ktls:
        r = subprocess.run(base + ["--relay", "sockmap"], capture_output=True, text=True,
                           timeout=30)
        check(r.returncode == 2 and "--relay sockmap: needs kTLS" in r.stderr,
              f"--relay sockmap without kTLS: {r.returncode} {r.stderr}")
    k = env.ktlsd(["--relay", "auto"], target_port=env.echo_backend())
    line = k.wait_line(r"event=listening")
    check(("relay=userspace" if not have_ktls else "relay=") in line, f"listening: {line}")


TESTS = {
    "relay_option": t_relay_option,
    "served": t_intercept_served,
    "proxy_v2": t_intercept_proxy_v2,
    "gone_on_exit": t_intercept_gone_on_exit,
    "bad_values": t_intercept_bad_values,
    "unprivileged": t_intercept_unprivileged,
}

if __name__ == "__main__":
    sys.exit(main(TESTS))
