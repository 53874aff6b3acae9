#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""OCSP: stapling ktlsd's own certificate (--ocsp-staple, seen by `openssl s_client -status`)
and checking peers against a responder (--ocsp-url, against `openssl ocsp -index ... -port`
on loopback, and hand-made responders that misbehave): good admitted, revoked refused with
reason="certificate revoked", a responder down or slow admits (fail open) or refuses (fail
closed) without ever blocking the worker, and no forged, foreign, stale or oversize answer
counts as good."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import harness
from harness import (Skip, check, free_port, ktlsd_client, plain_roundtrip, tls_close,
                     tls_connect)

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
PAYLOAD = b"ping over ktlsd\n"


def index_line(env, name, revoked):
    """One line of `openssl ca`'s index for certificate name."""
    pem = env.p(f"{name}.pem")

    def field(opt):
        return subprocess.run(["openssl", "x509", "-in", pem, "-noout", opt, "-nameopt",
                               "compat"], check=True, capture_output=True,
                              text=True).stdout.strip().split("=", 1)[1]

    end = time.strftime("%y%m%d%H%M%SZ", time.strptime(field("-enddate"),
                                                       "%b %d %H:%M:%S %Y GMT"))
    serial, subj = field("-serial"), field("-subject")
    if revoked:
        now = time.strftime("%y%m%d%H%M%SZ", time.gmtime(time.time() - 60))
        return f"R\t{end}\t{now},keyCompromise\t{serial}\tunknown\t{subj}\n"
    return f"V\t{end}\t\t{serial}\tunknown\t{subj}\n"


def make_index(env, revoked=("evil-client",)):
    path = os.path.join(env.dir, "index.txt")
    with open(path, "w") as f:
        for name in ("server", "client", "evil-client", "two-uri-client"):
            f.write(index_line(env, name, name in revoked))
    with open(path + ".attr", "w") as f:
        f.write("unique_subject = no\n")  # two-uri-client is CN=client too
    return path


def responder(env, signer="ca", revoked=("evil-client",), port=None):
    """`openssl ocsp` answering for ca's certificates on port (a free one), signed by signer."""
    idx = make_index(env, revoked)
    port = port or free_port()
    pr = env.spawn(["openssl", "ocsp", "-index", idx, "-port", str(port), "-rsigner",
                    env.p(f"{signer}.pem"), "-rkey", env.p(f"{signer}.key"), "-CA",
                    env.p("ca.pem"), "-ndays", "1"], stdout=subprocess.PIPE,
                   stderr=subprocess.DEVNULL, text=True)
    # It says ACCEPT once listening. (No probe connection: OpenSSL 3.0's responder hangs
    # on a connection closed without a request.)
    first = pr.stdout.readline()
    check(first.startswith("ACCEPT"), f"openssl ocsp did not start: {first!r}")
    return port


def response_file(env, cert, out, revoked=(), extra=(), wrap=()):
    """A DER response for cert, made with `openssl ocsp -respout` (no nonce)."""
    idx = make_index(env, revoked)
    subprocess.run(list(wrap) + ["openssl", "ocsp", "-index", idx, "-rsigner", env.p("ca.pem"),
                                 "-rkey", env.p("ca.key"), "-CA", env.p("ca.pem"), "-issuer",
                                 env.p("ca.pem"), "-cert", env.p(f"{cert}.pem"), "-ndays", "1",
                                 "-no_nonce", "-respout", out] + list(extra),
                   check=True, capture_output=True)
    return out


def canned(env, reply):
    """A responder that reads one request and answers the bytes reply (or, for None, never
    answers)."""

    def serve(c):
        try:
            c.settimeout(30)
            got = b""
            while b"\r\n\r\n" not in got:
                b = c.recv(4096)
                if not b:
                    return
                got += b
            if reply is None:
                env.threads_stop.wait(30)
                return
            c.sendall(reply)
        except OSError:
            pass
        finally:
            c.close()

    return env.backend(serve)


def http_reply(body, ctype="application/ocsp-response", length=None):
    n = len(body) if length is None else length
    return (f"HTTP/1.0 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {n}\r\n\r\n"
            .encode() + body)


def served(env, port, who="client"):
    """Whether ktlsd relayed an echo for who."""
    try:
        s = tls_connect(env, port, who, timeout=20)
        s.sendall(PAYLOAD)
        got = b""
        while len(got) < len(PAYLOAD):
            b = s.recv(4096)
            if not b:
                break
            got += b
        tls_close(s)
        return got == PAYLOAD
    except OSError:
        return False


def checker(env, eport, url, extra=()):
    return env.ktlsd(["--ocsp-url", url, "--threads", "1"] + list(extra), target_port=eport,
                     allow=["--allow-all"])


# --- stapling --------------------------------------------------------------------------
def s_client_status(env, port, extra=()):
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
            "-CAfile", env.p("ca.pem"), "-cert", env.p("client.pem"), "-key",
            env.p("client.key"), "-status"] + list(extra)
    pr = subprocess.run(argv, input=b"", capture_output=True, timeout=30)
    return pr.stdout.decode(errors="replace")


def t_staple(env):
    """The server staples its response for every client that asks, TLS 1.3 and 1.2; a
    server without --ocsp-staple sends none; past nextUpdate it stops (one warn line)."""
    eport = env.echo_backend()
    der = response_file(env, "server", os.path.join(env.dir, "staple.der"))
    k = env.ktlsd(["--ocsp-staple", der], target_port=eport)
    for v in ("-tls1_3", "-tls1_2"):
        out = s_client_status(env, k.port, [v])
        check("OCSP Response Status: successful" in out and "Cert Status: good" in out,
              f"{v}: no good staple seen:\n{out[:1500]}")
    print("staple: s_client -status sees 'Cert Status: good' (TLS 1.3 and 1.2)")
    plain = env.ktlsd([], target_port=eport)
    out = s_client_status(env, plain.port)
    check("OCSP response: no response sent" in out, f"staple without --ocsp-staple:\n{out}")

    if not os.path.exists(FAKETIME_LIB):
        raise Skip(f"stale staple not tested: {FAKETIME_LIB} missing (scripts/install-deps "
                   "installs faketime)")
    # Beside the certificates: Landlock lets ktlsd read only the configured files' folders.
    clock = os.path.join(env.pki, "faketime")
    with open(clock, "w") as f:
        f.write("+0\n")
    k2 = env.ktlsd(["--ocsp-staple", der], target_port=eport,
                   env_vars={"LD_PRELOAD": FAKETIME_LIB, "FAKETIME_TIMESTAMP_FILE": clock,
                             "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
    check("Cert Status: good" in s_client_status(env, k2.port), "faked clock: no staple")
    with open(clock, "w") as f:
        f.write("+2d\n")
    out = s_client_status(env, k2.port)
    check("OCSP response: no response sent" in out, f"stale response still stapled:\n{out}")
    line = k2.wait_line(r"event=ocsp_staple_stale")
    check("level=warn" in line, line)
    s_client_status(env, k2.port)
    check(k2.text().count("ocsp_staple_stale") == 1, "stale staple logged more than once")
    print("staple: two days later (past nextUpdate) nothing is stapled; one warn line")


def start_fails(env, extra, expect):
    pr = subprocess.run([env.args.ktlsd, "server", "--listen", f"127.0.0.1:{free_port()}",
                         "--target", "127.0.0.1:9", "--cert", env.p("server.pem"), "--key",
                         env.p("server.key"), "--cacert", env.p("ca.pem"), "--allow-all"] +
                        extra, capture_output=True, text=True, timeout=30)
    check(pr.returncode == 2, f"{extra}: exit {pr.returncode}, want 2: {pr.stderr}")
    check(expect in pr.stderr, f"{extra}: want {expect!r} in {pr.stderr!r}")
    print(f"refused at start: {pr.stderr.strip()}")


def t_staple_errors(env):
    """A staple that is not for our certificate, revoked, expired, not DER or oversize is
    refused at start (exit 2) with the reason."""
    d = env.dir
    start_fails(env, ["--ocsp-staple", response_file(env, "client", f"{d}/c.der")],
                "response is not for this certificate")
    start_fails(env, ["--ocsp-staple", response_file(env, "server", f"{d}/r.der", ["server"])],
                "the certificate is revoked")
    start_fails(env, ["--ocsp-staple", env.p("ca.pem")], "not a DER OCSP response")
    with open(f"{d}/big.der", "wb") as f:
        f.write(b"\x30" * (64 * 1024 + 1))
    start_fails(env, ["--ocsp-staple", f"{d}/big.der"], "larger than 65536 bytes")
    # Signed by a CA that did not issue our certificate.
    idx = make_index(env, ())
    subprocess.run(["openssl", "ocsp", "-index", idx, "-rsigner", env.p("other-ca.pem"),
                    "-rkey", env.p("other-ca.key"), "-CA", env.p("ca.pem"), "-issuer",
                    env.p("ca.pem"), "-cert", env.p("server.pem"), "-ndays", "1",
                    "-no_nonce", "-respout", f"{d}/o.der"], check=True, capture_output=True)
    start_fails(env, ["--ocsp-staple", f"{d}/o.der"], "not signed by the issuer")
    if shutil_which("faketime"):
        response_file(env, "server", f"{d}/old.der", wrap=["faketime", "-f", "-3d"])
        start_fails(env, ["--ocsp-staple", f"{d}/old.der"], "response expired")


def shutil_which(tool):
    import shutil
    return shutil.which(tool)


# --- checking peers --------------------------------------------------------------------
def t_peer(env):
    """Against `openssl ocsp -index -port`: good admitted, revoked refused (and cached);
    responder down: fail open admits with a warn line, fail closed refuses."""
    eport = env.echo_backend()
    rport = responder(env)
    url = f"http://127.0.0.1:{rport}/"
    k = checker(env, eport, url, ["--ocsp-fail", "closed"])
    check(served(env, k.port, "client"), "good client not served")
    k.conn_end(r"reason=closed")
    check(not served(env, k.port, "evil-client"), "revoked client served")
    line = k.conn_end(r'reason="certificate revoked"')
    check("claimed_id=spiffe://evil.org/x" in line, line)
    print(f"peer: revoked refused: {line[line.find('reason='):][:80]}")
    # From the cache now: the responder goes away and nothing changes.
    for pr in env.procs:
        if pr.args and pr.args[0] == "openssl":
            pr.kill()
    check(served(env, k.port, "client"), "good client (cached) not served")
    check(not served(env, k.port, "evil-client"), "revoked client (cached) served")
    k.conn_end(r'reason="certificate revoked"')

    down = f"http://127.0.0.1:{free_port()}/ocsp"
    closed = checker(env, eport, down, ["--ocsp-fail", "closed"])
    check(not served(env, closed.port, "client"), "fail closed: served without an answer")
    line = closed.conn_end(r'reason="ocsp check failed: ')
    check("Connection refused" in line, line)
    print(f"peer: responder down, fail closed: {line[line.find('reason='):][:90]}")
    opened = checker(env, eport, down)
    check(served(env, opened.port, "client"), "fail open: not served")
    line = opened.wait_line(r"event=ocsp_no_answer")
    check("level=warn" in line and "admitted" in line, line)
    print("peer: responder down, fail open: served, warn line ocsp_no_answer")

    # Client mode checks the server: good, then a responder that says it is revoked.
    srv = env.ktlsd([], target_port=eport)
    for revoked, want in (((), "reason=closed"), (("server",), 'reason="certificate revoked"')):
        url = f"http://127.0.0.1:{responder(env, revoked=revoked)}/"
        cli = ktlsd_client(env, srv.port, ["--verify-uri", "spiffe://example.org/server",
                                           "--ocsp-url", url, "--ocsp-fail", "closed"])
        got = plain_roundtrip(cli.port)
        check((got == b"plain ping\n") == (not revoked), f"client mode, revoked={revoked}")
        line = cli.conn_end(want)
        print(f"client mode, server revoked={bool(revoked)}: {line[line.find('reason='):][:60]}")


def t_reload(env):
    """A reload forgets the answers cached under the old generation: a peer the responder now
    says is revoked is refused after SIGHUP (it was served from the cache before it)."""
    eport = env.echo_backend()
    rport = responder(env)
    k = checker(env, eport, f"http://127.0.0.1:{rport}/", ["--ocsp-fail", "closed"])
    check(served(env, k.port, "client"), "good client not served")
    for pr in env.procs:
        if pr.args and pr.args[0] == "openssl":
            pr.kill()
            pr.wait()
    responder(env, revoked=("client",), port=rport)
    check(served(env, k.port, "client"), "the cached good answer was not used")
    k.proc.send_signal(signal.SIGHUP)
    k.wait_line(r"event=reload result=ok", timeout=20)
    check(not served(env, k.port, "client"), "served from an answer cached before the reload")
    line = k.conn_end(r'reason="certificate revoked"')
    print(f"reload: cache dropped, revoked now: {line[line.find('reason='):][:60]}")


def t_slow(env):
    """A responder that never answers: the check gives up after --ocsp-timeout-ms, and one
    worker thread keeps serving others meanwhile (checks run side by side)."""
    eport = env.echo_backend()
    rport = canned(env, None)
    url = f"http://127.0.0.1:{rport}/"
    k = checker(env, eport, url, ["--ocsp-timeout-ms", "1500"])
    results, t0 = [], time.time()
    ths = [threading.Thread(target=lambda: results.append(served(env, k.port)))
           for _ in range(4)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    dt = time.time() - t0
    check(results == [True] * 4, f"fail open with a slow responder: {results}")
    check(1.4 < dt < 4.5, f"4 checks on one worker took {dt:.2f} s (serial would be 6 s)")
    k.wait_line(r"event=ocsp_no_answer.*within 1500 ms")
    print(f"slow: 4 clients, one worker, 1500 ms timeout each: all served in {dt:.2f} s")
    c = checker(env, eport, url, ["--ocsp-timeout-ms", "300", "--ocsp-fail", "closed"])
    t0 = time.time()
    check(not served(env, c.port), "fail closed: served past the timeout")
    line = c.conn_end(r"reason=")
    check("within 300 ms" in line, line)
    print(f"slow: fail closed after {time.time() - t0:.2f} s: "
          f"{line[line.find('reason='):][:90]}")


def refused_with(env, eport, reply, expect, what, host="127.0.0.1"):
    rport = canned(env, reply) if not isinstance(reply, int) else reply
    k = checker(env, eport, f"http://{host}:{rport}/", ["--ocsp-fail", "closed"])
    check(not served(env, k.port, "client"), f"{what}: served")
    line = k.conn_end(r"reason=")
    check("ocsp check failed" in line and expect in line, f"{what}: {line}")
    print(f"{what}: {line[line.find('reason='):][:110]}")


def t_untrusted(env):
    """Answers that must never count as good: signed by another CA, by a certificate of our
    CA without the OCSP signing EKU, for another certificate, with another nonce, garbage,
    oversize. A responder the CA delegated (OCSP signing EKU) is trusted."""
    eport = env.echo_backend()
    d = env.dir
    refused_with(env, eport, responder(env, signer="other-ca"), "not signed by the issuer",
                 "signed by another CA")
    refused_with(env, eport, responder(env, signer="server"), "not signed by the issuer",
                 "signer without OCSPSigning")
    k = checker(env, eport, f"http://127.0.0.1:{responder(env, signer='ocsp-signer')}/",
                ["--ocsp-fail", "closed"])
    check(served(env, k.port, "client"), "delegated responder: good client not served")
    print("delegated responder (OCSPSigning EKU): good client served")
    with open(response_file(env, "server", f"{d}/srv.der"), "rb") as f:
        refused_with(env, eport, http_reply(f.read()), "not for this certificate",
                     "answer for another certificate")
    # A response to some other request that carried a nonce (a replay).
    idx = make_index(env, ())
    subprocess.run(["openssl", "ocsp", "-issuer", env.p("ca.pem"), "-cert", env.p("client.pem"),
                    "-reqout", f"{d}/req.der"], check=True, capture_output=True)
    subprocess.run(["openssl", "ocsp", "-index", idx, "-rsigner", env.p("ca.pem"), "-rkey",
                    env.p("ca.key"), "-CA", env.p("ca.pem"), "-reqin", f"{d}/req.der",
                    "-respout", f"{d}/nonce.der", "-ndays", "1"], check=True,
                   capture_output=True)
    with open(f"{d}/nonce.der", "rb") as f:
        refused_with(env, eport, http_reply(f.read()), "nonce does not match", "replayed nonce")
    # By name: resolved once at start (where localhost is ::1 too, that is tried first).
    refused_with(env, eport, http_reply(b"\x30\x03garbage"), "content length", "garbage",
                 host="localhost")
    refused_with(env, eport, http_reply(b"<html>hi</html>", ctype="text/html"), "responder",
                 "wrong content type")
    big = http_reply(b"\x30\x84\x00\x98\x96\x80" + b"A" * 200000, length=10000006)
    refused_with(env, eport, big, "responder", "10 MB answer")


TESTS = {"staple": t_staple, "staple_errors": t_staple_errors, "peer": t_peer, "reload": t_reload,
         "slow": t_slow,
         "untrusted": t_untrusted}

if __name__ == "__main__":
    sys.exit(harness.main(TESTS))
