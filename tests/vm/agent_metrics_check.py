#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""agent_metrics_check.py --admin HOST:PORT --log AGENTLOG [--promtool P] [--want EXPR]...
[--save FILE]

Checks `ktlsd agent --admin`'s /metrics against the agent's own log: every
ktlsd_agent_handshakes_total{consumer,role,outcome} equals the number of event=agent_handshake
lines with those fields, ktlsd_handshakes_total{service="agent",result="ok"} the outcome=ok
lines, the failed series (all reasons) the other lines, the timeouts, connections_total all
lines, the histogram's count the ok ones, kTLS installs, peer keys, DONE errors; nothing in
flight; ktlsd_service_info says mode="agent". /healthz and /readyz are 200, promtool check
metrics passes. Each --want is NAME>=N or NAME==N on a derived count: ok, refused, failed,
timeout, unsupported, peer_keys, or reason:R (ktlsd_handshakes_total's failed reason R), or
consumer:C (ok lines of consumer C). Used inside the guest by tests/vm/agent_nfs_test; can be
run by hand on a saved log and metrics (--metrics-file). Exit 0 pass, 1 fail.
"""
import argparse
import http.client
import re
import subprocess
import sys
import time

KV = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
SAMPLE = re.compile(r'^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def log_lines(path):
    out = []
    with open(path, errors="replace") as f:
        for ln in f:
            kv = {k: v.strip('"') for k, v in KV.findall(ln)}
            if kv.get("event") == "agent_handshake":
                out.append(kv)
    return out


def samples(text):
    out = []
    for ln in text.splitlines():
        m = SAMPLE.match(ln)
        if m and not ln.startswith("#"):
            out.append((m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def total(s, name, **labels):
    return sum(v for n, lab, v in s if n == name and all(lab.get(k) == w for k, w in labels.items()))


def get(admin, path):
    host, _, port = admin.rpartition(":")
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    return r.status, r.read().decode()


def compare(lines, s):
    """Every mismatch between the log and the metrics, as text."""
    bad = []

    def eq(what, got, want):
        if got != want:
            bad.append(f"{what}: metrics say {got:g}, the log {want}")

    consumers, outcomes = ("nfs", "nvme", "tlshd"), ("ok", "refused", "failed", "timeout",
                                                     "unsupported")
    for c in consumers:
        for r in ("server", "client"):
            for o in outcomes:
                n = sum(1 for x in lines if (x.get("consumer"), x.get("role"), x.get("outcome"))
                        == (c, r, o))
                key = dict(service="agent", consumer=c, role=r, outcome=o)
                if not any(nm == "ktlsd_agent_handshakes_total" and lab == key for nm, lab, _ in s):
                    bad.append(f"no series ktlsd_agent_handshakes_total{key}")
                eq(f"agent_handshakes {c}/{r}/{o}",
                   total(s, "ktlsd_agent_handshakes_total", **key), n)
    ok = sum(1 for x in lines if x.get("outcome") == "ok")
    tmo = sum(1 for x in lines if x.get("outcome") == "timeout")
    eq('handshakes_total{result="ok"}', total(s, "ktlsd_handshakes_total", service="agent",
                                              result="ok"), ok)
    eq('handshakes_total{result="failed"}', total(s, "ktlsd_handshakes_total", service="agent",
                                                  result="failed"), len(lines) - ok)
    eq('handshakes_total{reason="timeout"}', total(s, "ktlsd_handshakes_total", service="agent",
                                                   reason="timeout"), tmo)
    eq('limit_hits_total{limit="handshake_timeout"}',
       total(s, "ktlsd_limit_hits_total", service="agent", limit="handshake_timeout"), tmo)
    eq("handshake_duration_seconds_count",
       total(s, "ktlsd_handshake_duration_seconds_count", service="agent"), ok)
    eq("connections_total", total(s, "ktlsd_connections_total", service="agent"), len(lines))
    eq("connections_active (in flight)", total(s, "ktlsd_connections_active", service="agent"), 0)
    eq('ktls_installs_total{result="ok"}', total(s, "ktlsd_ktls_installs_total", service="agent",
                                                 result="ok"), ok)
    eq("peer_keys_total", total(s, "ktlsd_agent_peer_keys_total", service="agent"),
       sum(1 for x in lines if x.get("role") == "server" and x.get("auth") == "x509"
           and x.get("remote_auth")))
    eq("done_errors_total", total(s, "ktlsd_agent_done_errors_total", service="agent"),
       sum(1 for x in lines if x.get("done_error")))
    eq('service_info{mode="agent"}', total(s, "ktlsd_service_info", service="agent",
                                           mode="agent"), 1)
    eq("ktlsd_ready", total(s, "ktlsd_ready"), 1)
    return bad, ok


def derived(lines, s, name):
    if name.startswith("reason:"):
        return total(s, "ktlsd_handshakes_total", service="agent", result="failed",
                     reason=name[7:])
    if name.startswith("consumer:"):
        return sum(1 for x in lines if x.get("consumer") == name[9:] and x.get("outcome") == "ok")
    if name == "peer_keys":
        return total(s, "ktlsd_agent_peer_keys_total", service="agent")
    return sum(1 for x in lines if x.get("outcome") == name)


def wants(lines, s, exprs):
    bad = []
    for e in exprs:
        m = re.fullmatch(r"([\w:]+)(>=|==)(\d+)", e)
        if not m:
            bad.append(f"--want {e!r}: expected NAME>=N or NAME==N")
            continue
        got, op, n = derived(lines, s, m.group(1)), m.group(2), int(m.group(3))
        if not (got >= n if op == ">=" else got == n):
            bad.append(f"want {e}: it is {got:g}")
    return bad


def process_view(s):
    """Live only: the sandboxed agent still reads its own /proc (process_*) and the
    kernel's TLS counters (ktlsd_kernel_tls_*), as the server does."""
    bad = []
    if not total(s, "process_resident_memory_bytes") > 0:
        bad.append("process_resident_memory_bytes is 0: /proc/self unreadable in the sandbox")
    if not any(k[0].startswith("ktlsd_kernel_tls_") for k in s):
        bad.append("no ktlsd_kernel_tls_* series: /proc/net/tls_stat unreadable")
    return bad


def endpoints(admin):
    bad = []
    for path, want in (("/healthz", "ok"), ("/readyz", "ready")):
        st, body = get(admin, path)
        if st != 200 or body.strip() != want:
            bad.append(f"{path}: HTTP {st} {body.strip()!r}, want 200 {want!r}")
    return bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--admin")
    ap.add_argument("--metrics-file")
    ap.add_argument("--log", required=True)
    ap.add_argument("--promtool")
    ap.add_argument("--want", action="append", default=[])
    ap.add_argument("--save")
    a = ap.parse_args()
    # The agent counts before it logs; a retry only covers a scrape racing the last line.
    for attempt in range(3):
        text = open(a.metrics_file).read() if a.metrics_file else get(a.admin, "/metrics")[1]
        lines, s = log_lines(a.log), samples(text)
        bad, ok = compare(lines, s)
        if not bad or a.metrics_file:
            break
        time.sleep(0.5)
    bad += wants(lines, s, a.want)
    if a.admin:
        bad += endpoints(a.admin) + process_view(s)
    if a.save:
        with open(a.save, "w") as f:
            f.write(text)
    if a.promtool:
        pr = subprocess.run([a.promtool, "check", "metrics"], input=text, text=True,
                            capture_output=True)
        if pr.returncode:
            bad.append(f"promtool check metrics: {pr.stdout}{pr.stderr}".strip())
    if bad:
        print("agent_metrics_check: FAIL\n  " + "\n  ".join(bad))
        return 1
    print(f"agent_metrics_check: {len(lines)} handshakes logged ({ok} ok) match /metrics"
          f"{'; promtool ok' if a.promtool else ''}; wants: {' '.join(a.want) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
