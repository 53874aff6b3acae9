#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Hitless reload: SIGHUP and file changes (inotify, no signal) rebuild the services; a
failed build keeps the old ones; old services go when their last connection does.

    reload_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki TEST

rotation     5 clients handshake back to back for 20 s while, every second, the server's
             certificate is replaced by rename (even seconds, no signal) or the CA bundle
             and a certificate from a new CA are written and SIGHUP sent (odd seconds):
             zero failed handshakes, 3 connections held from the start all still echo,
             every client sees each new serial (or a later one) within 3 s of its write,
             and each rename alone was reloaded (trigger="file change") within 3 s
broken_pair  a certificate that does not match the key, then a CA bundle that is no PEM:
             each logs event=reload result=failed with the reason, the old certificate is
             still served; the next good pair is taken and logged result=ok
memory       1,000 reloads with connections held across them and then closed: VmRSS after
             the last is within 4 MiB of what it was after the first 100
storm        the pair rewritten by rename in a tight loop for 5 s: handshakes every 100 ms
             all succeed, reloads stay debounced (at most one per 200 ms), RSS stays
             within 4 MiB, the last write is served within 3 s of the storm's end
config       --config: [global] threads changed is named in not_applied; a service added
             starts accepting, one moved to another address stops on the old one (its
             connection runs on), one removed stops; a change that cannot be made (mode on
             the same address) or a broken file is refused with the reason
"""
import calendar
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import (SANITIZER, Fail, Ktlsd, check, free_port, http, log_fields,  # noqa: E402
                     main)
import pki_extra as px  # noqa: E402


def client_ctx(env, trust, who):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(trust)
    ctx.load_cert_chain(who + ".pem", who + ".key")
    return ctx


def handshake(ctx, port, timeout=10):
    """One connection: its server certificate's serial, after one echo."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    serial = int(s.getpeercert()["serialNumber"], 16)
    s.sendall(b"x")
    check(s.recv(1) == b"x", "no echo")
    try:
        s.unwrap()
    except (OSError, ValueError):
        pass
    s.close()
    return serial


def live_files(env):
    """live/server.{pem,key} and live/bundle.pem, the files ktlsd is started on."""
    live = os.path.join(env.dir, "live")
    os.mkdir(live)
    for src, dst in (("server.pem", "server.pem"), ("server.key", "server.key"),
                     ("ca.pem", "bundle.pem")):
        px.replace(os.path.join(live, dst), px.read(env.p(src)))
    return live


def start(env, live, eport, extra=()):
    return env.ktlsd(["--cacert", os.path.join(live, "bundle.pem")] + list(extra),
                     target_port=eport, cert="../live/server")


def install(live, leaf):
    """A new pair the way rotation tools write one: key, then certificate, each by rename."""
    px.replace(os.path.join(live, "server.key"), px.read(leaf + ".key"))
    px.replace(os.path.join(live, "server.pem"), px.read(leaf + ".pem"))


SAN = "DNS:localhost,IP:127.0.0.1,URI:spiffe://example.org/server"


def t_rotation(env):
    newca = px.new_ca(env.pki, "newca", "ktlsd test CA 2")
    nclient = px.new_leaf(env.pki, "nclient", newca, "nclient", "URI:spiffe://example.org/client")
    with open(env.p("trust.pem"), "wb") as f:  # the clients trust both CAs from the start
        f.write(px.read(env.p("ca.pem")) + px.read(newca + ".pem"))
    leaves = [px.new_leaf(env.pki, f"srv{i}", env.p("ca") if i % 2 == 0 else newca, "server",
                          SAN, "server") for i in range(20)]
    serials = [int(px.serial(leaf + ".pem"), 16) for leaf in leaves]
    live = live_files(env)
    k = start(env, live, env.echo_backend())
    held = [client_ctx(env, env.p("trust.pem"), env.p("client")).wrap_socket(
        socket.create_connection(("127.0.0.1", k.port), timeout=10),
        server_hostname="localhost") for _ in range(3)]
    stop, fails, seen = threading.Event(), [], {}
    newca_ok = threading.Event()

    def client(n, who, gate=None):
        ctx = client_ctx(env, env.p("trust.pem"), who)
        seen[n] = []
        if gate:
            gate.wait()
        while not stop.is_set():
            try:
                seen[n].append((time.time(), handshake(ctx, k.port)))
            except Exception as e:  # noqa: BLE001
                fails.append(f"client {n}: {e!r}")

    ts = [threading.Thread(target=client, args=(n, env.p("client"))) for n in range(4)]
    ts.append(threading.Thread(target=client, args=(4, nclient, newca_ok)))
    for t in ts:
        t.start()
    writes = []
    try:
        for i, leaf in enumerate(leaves):
            time.sleep(max(0.0, 1.0 - (time.time() - (writes[-1][0] if writes else 0))))
            t = time.time()
            if i % 2 == 0:
                install(live, leaf)
            else:
                px.replace(os.path.join(live, "bundle.pem"), px.read(env.p("trust.pem")))
                install(live, leaf)
                k.proc.send_signal(signal.SIGHUP)
                if not newca_ok.is_set():  # its client starts once the bundle is in use
                    k.wait_line(r"event=reload result=ok.*cacert", timeout=5)
                    newca_ok.set()
            writes.append((t, serials[i]))
        time.sleep(3)
    finally:
        stop.set()
        for t in ts:
            t.join(timeout=30)
    check(not fails, f"{len(fails)} failed handshakes, first: {fails[:3]}")
    index = {s: i for i, s in enumerate(serials)}
    for n, recs in seen.items():
        check(recs, f"client {n} made no handshake")
        for i, (t, s) in enumerate(writes):
            if n == 4 and i == 0:
                continue  # it starts after the first SIGHUP
            # this serial, or (a client slowed down past its second) a later one
            seen_at = [r[0] for r in recs if index.get(r[1], -1) >= i]
            check(seen_at and seen_at[0] <= t + 3.0,
                  f"client {n} did not see serial {i} within 3 s of its write")
    # and the renames, with no signal, were each taken within 3 s (a later SIGHUP's
    # serial must not stand in for them)
    file_reloads = reload_times(k, "file change")
    for i, (t, s) in enumerate(writes):
        if i % 2 == 0:
            check(any(t < r <= t + 3.0 for r in file_reloads),
                  f"rename {i} was not reloaded within 3 s without a signal")
    for s in held:
        s.sendall(b"held\n")
        check(s.recv(10) == b"held\n", "a held connection did not survive the reloads")
        s.close()
    text = k.text()
    check("result=failed" not in text, "a reload failed")
    total = sum(len(r) for r in seen.values())
    print(f"{total} handshakes by 5 clients over {len(writes)} rotations, 0 failed; "
          f"{text.count('event=reload result=ok')} reloads")


def reload_times(k, trigger):
    """Wall-clock times of the successful reloads with this trigger (from their ts=)."""
    out = []
    for ln in k.text().splitlines():
        if "event=reload result=ok" in ln and f'trigger="{trigger}"' in ln:
            ts = log_fields(ln)["ts"]
            out.append(calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) +
                       float("0" + ts[19:-1]))
    return out


def serve_serial(env, port, trust=None):
    return handshake(client_ctx(env, trust or env.p("ca.pem"), env.p("client")), port)


def t_broken_pair(env):
    live = live_files(env)
    k = start(env, live, env.echo_backend())
    first = serve_serial(env, k.port)
    px.replace(os.path.join(live, "server.pem"), px.read(env.p("wrong-server.pem")))
    line = log_fields(k.wait_line(r"event=reload result=failed", timeout=5))
    check("does not match cert" in line.get("reason", ""), f"reason: {line}")
    check(line.get("trigger") == "file change", f"trigger: {line}")
    check(serve_serial(env, k.port) == first, "the old certificate is no longer served")
    px.replace(os.path.join(live, "bundle.pem"), b"not a certificate\n")
    nxt = px.new_leaf(env.pki, "srv2", env.p("ca"), "server", SAN, "server")
    install(live, nxt)
    k.wait_line(r"event=reload result=failed.*reason=.*cacert", timeout=5, new_only=True)
    check(serve_serial(env, k.port) == first, "a broken bundle replaced the old service")
    px.replace(os.path.join(live, "bundle.pem"), px.read(env.p("ca.pem")))
    line = log_fields(k.wait_line(r"event=reload result=ok", timeout=5))
    check(line.get("changed") == "server:cert,key", f"changed: {line}")
    check(serve_serial(env, k.port) == int(px.serial(nxt + ".pem"), 16), "new pair not served")


def vmrss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return 0


def wait_reloads(k, n, timeout=10):
    """Until the log says reloads=n (read from where the last call stopped)."""
    end = time.time() + timeout
    while time.time() < end:
        k.fh.seek(k.pos)
        chunk = k.fh.read()
        # Whole lines only: a line ktlsd is still writing is read again next time.
        chunk = chunk[:chunk.rfind("\n") + 1]
        k.pos += len(chunk)
        if f"reloads={n} " in chunk:
            return
        time.sleep(0.002)
    raise Fail(f"reload {n} not logged")


def t_memory(env):
    live = live_files(env)
    k = start(env, live, env.echo_backend(), ["--threads", "2"])
    k.fh, k.pos = open(k.log), 0
    ctx = client_ctx(env, env.p("ca.pem"), env.p("client"))
    held, base = [], 0
    for n in range(1, 1001):
        k.proc.send_signal(signal.SIGHUP)
        wait_reloads(k, n)
        if n % 50 == 0:
            # a connection on this generation; the one of two generations ago ends
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", k.port), timeout=10),
                                server_hostname="localhost")
            s.sendall(b"m")
            check(s.recv(1) == b"m", "echo")
            held.append(s)
            if len(held) > 2:
                held.pop(0).close()
        if n == 100:
            base = vmrss_kb(k.proc.pid)
    for s in held:
        s.close()
    time.sleep(0.5)
    last = vmrss_kb(k.proc.pid)
    print(f"VmRSS after 100 reloads {base} kB, after 1000 {last} kB ({last - base:+d} kB)")
    # A sanitizer's quarantine holds freed memory: there the reloads run for its reports.
    check(SANITIZER or last - base < 4096, f"VmRSS grew {last - base} kB over 900 reloads")


def t_storm(env):
    live = live_files(env)
    k = start(env, live, env.echo_backend())
    a = px.new_leaf(env.pki, "sa", env.p("ca"), "server", SAN, "server")
    b = px.new_leaf(env.pki, "sb", env.p("ca"), "server", SAN, "server")
    pairs = [(px.read(x + ".key"), px.read(x + ".pem")) for x in (a, b)]
    time.sleep(0.5)
    rss0, t0, n, fails = vmrss_kb(k.proc.pid), time.time(), 0, 0
    ctx = client_ctx(env, env.p("ca.pem"), env.p("client"))
    next_probe = t0
    while time.time() - t0 < 5.0:
        key, pem = pairs[n % 2]
        px.replace(os.path.join(live, "server.key"), key)
        px.replace(os.path.join(live, "server.pem"), pem)
        n += 1
        if time.time() >= next_probe:  # still serving, every 100 ms
            next_probe += 0.1
            try:
                handshake(ctx, k.port)
            except (OSError, ssl.SSLError):
                fails += 1
    t_end = time.time()
    last = int(px.serial((a if (n - 1) % 2 == 0 else b) + ".pem"), 16)
    deadline = t_end + 3.0
    while time.time() < deadline and handshake(ctx, k.port) != last:
        time.sleep(0.05)
    check(handshake(ctx, k.port) == last, "the last write was not served within 3 s")
    reloads = k.text().count("event=reload result=")
    rss = vmrss_kb(k.proc.pid)
    print(f"{n} pair rewrites in 5 s: {reloads} reloads, {fails} failed probes, "
          f"VmRSS {rss0} -> {rss} kB")
    check(fails == 0, f"{fails} handshakes failed during the storm")
    # debounced: at most one reload per quiet spell, at least one per second
    check(reloads <= 5 / 0.2 + 2, f"{reloads} reloads for a 5 s storm: not debounced")
    check(SANITIZER or rss - rss0 < 4096, f"VmRSS grew {rss - rss0} kB in the storm")


def refused_port(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except OSError:
        return True


def t_config(env):
    port, port2, port3, eport = free_port(), free_port(), free_port(), env.echo_backend()
    aport = free_port()
    cfg = os.path.join(env.dir, "ktlsd.conf")
    g2 = f"[global]\nthreads = 2\nadmin = 127.0.0.1:{aport}\n"

    def svc(name, p):
        return (f"[service {name}]\nlisten = 127.0.0.1:{p}\ntarget = 127.0.0.1:{eport}\n"
                f"cert = {env.p('server.pem')}\nkey = {env.p('server.key')}\n"
                f"cacert = {env.p('ca.pem')}\nallow-uri = spiffe://example.org/client\n")

    px.replace(cfg, (g2 + svc("s", port)).encode())
    log = os.path.join(env.dir, "ktlsd-config.log")
    k = Ktlsd(env.spawn([env.args.ktlsd, "--config", cfg], stdout=subprocess.DEVNULL,
                        stderr=open(log, "w")), port, log)
    k.wait_line(r"event=listening", timeout=60)
    ctx = client_ctx(env, env.p("ca.pem"), env.p("client"))
    held = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                           server_hostname="localhost")
    # [global] cannot change live: named, the rest applies
    px.replace(cfg, (g2.replace("threads = 2", "threads = 4") + svc("s", port)).encode())
    line = log_fields(k.wait_line(r"event=reload result=ok", timeout=5, new_only=True))
    check(line.get("not_applied") == "threads" and line.get("changed") == "config",
          f"reload: {line}")
    # a service added starts accepting
    px.replace(cfg, (g2 + svc("s", port) + svc("t", port2)).encode())
    line = log_fields(k.wait_line(r"event=reload result=ok", timeout=5, new_only=True))
    check(line.get("changed") == "+t config", f"reload: {line}")
    check(serve_serial(env, port2), "the added service does not serve")
    # s moves to another address: its old one closes, its connection runs on
    px.replace(cfg, (g2 + svc("s", port3) + svc("t", port2)).encode())
    line = log_fields(k.wait_line(r"event=reload result=ok", timeout=5, new_only=True))
    check(line.get("changed") == "-s +s config", f"reload: {line}")
    check(serve_serial(env, port3) and serve_serial(env, port2), "s or t not serving")
    check(refused_port(port), "the old address of s still accepts")
    held.sendall(b"h")
    check(held.recv(1) == b"h", "a connection of the moved service was cut")
    # t removed; a mode change on the same address cannot be done in one reload
    bad = svc("s", port3).replace("[service s]", "[service s]\nmode = client\n")
    px.replace(cfg, (g2 + bad.replace(
        "allow-uri", "verify-uri")).encode())
    k.wait_line(r"event=reload result=failed.*still holds it", timeout=5, new_only=True)
    check(serve_serial(env, port2), "a failed reload stopped t")
    px.replace(cfg, (g2 + svc("s", port3)).encode())
    line = log_fields(k.wait_line(r"event=reload result=ok", timeout=5, new_only=True))
    check(line.get("changed") == "-t config", f"reload: {line}")
    check(refused_port(port2), "removed service t still accepts")
    # The admin endpoint lists what runs: a removed service's slot is empty, not a crash.
    status, _, text = http(aport, "/metrics")
    check(status == 200 and 'ktlsd_service_info{service="s"' in text.decode() and
          'service="t"' not in text.decode(), f"/metrics after t was removed: {status}")
    check(k.alive(), "ktlsd died serving /metrics after a service was removed")
    px.replace(cfg, b"[service s]\nlisten = nonsense\n")
    k.wait_line(r"event=reload result=failed.*reason=.*ktlsd.conf:2", timeout=5, new_only=True)
    check(serve_serial(env, port3), "the running service stopped")
    tls_close_quiet(held)
    k.proc.send_signal(signal.SIGTERM)
    check(k.proc.wait(timeout=30) == 0, "ktlsd did not drain and exit cleanly")


def tls_close_quiet(s):
    try:
        s.unwrap()
    except (OSError, ValueError):
        pass
    s.close()


TESTS = {"rotation": t_rotation, "broken_pair": t_broken_pair, "memory": t_memory,
         "storm": t_storm, "config": t_config}

if __name__ == "__main__":
    sys.exit(main(TESTS))
