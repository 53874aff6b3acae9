#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""What ktlsd reports as a peer's identity is exactly what its policy matched.

The security review found a certificate with URI:spiffe://evil.org/admin and
URI:spiffe://example.org/x admitted by 'spiffe://example.org/*', with the backend told
spiffe://evil.org/admin. These tests run the real binary with real clients:
  svid          - the X.509-SVID rule: exactly one URI SAN, a valid SPIFFE ID, else refused
                  with a specific reason; refused and unverified names logged as claimed_*
  proxy_identity - the PROXY v2 SPIFFE TLV carries the matched URI, never another SAN
  server_names  - client mode: RFC 6125 wildcard server certificates, IP SANs for IP targets
  key_password  - an encrypted key never prompts; --key-password-file unlocks it
"""
import base64
import hashlib
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import (check, echo_roundtrip, free_port, ktlsd_client, main,  # noqa: E402
                     plain_roundtrip, s_client)


def field(line, key):
    """The value of key=... in a logfmt line (quoted or bare), or None."""
    import shlex
    for tok in shlex.split(line):
        if tok.startswith(key + "="):
            return tok[len(key) + 1:]
    return None


def t_svid(env):
    eport = env.echo_backend()
    k = env.ktlsd([], target_port=eport, allow=["--allow-uri", "spiffe://example.org/*",
                                                "--allow-cn", "client"])
    # The good client: admitted by the URI rule, and only that name is its identity.
    out = s_client(env, k.port, ["-cert", env.p("client.pem"), "-key", env.p("client.key")],
                   data=b"hello\n", expect=b"hello\n")
    check(b"hello\n" in out, f"good client not echoed: {out!r}")
    line = k.conn_end(r"reason=closed")
    check(field(line, "uri") == "spiffe://example.org/client", line)
    for other in ("dns", "cn", "claimed_uri"):
        check(field(line, other) is None, f"{other} reported beside the identity: {line}")

    # Two URI SANs, the foreign one first: refused although the second and the CN match.
    s_client(env, k.port, ["-cert", env.p("two-uri-client.pem"),
                           "-key", env.p("two-uri-client.key")], data=b"x\n")
    line = k.conn_end(r"reason=\"identity not allowed: not exactly one URI SAN")
    check(field(line, "uri") is None, f"refused peer reported as identity: {line}")
    check(field(line, "claimed_uri") == "spiffe://evil.org/admin spiffe://example.org/x", line)

    # A URI SAN under the trust domain that is no SPIFFE ID ('..' segment): refused.
    s_client(env, k.port, ["-cert", env.p("dotdot-client.pem"),
                           "-key", env.p("dotdot-client.key")], data=b"x\n")
    line = k.conn_end(r"reason=\"identity not allowed: URI SAN is not a valid SPIFFE ID\"")
    check(field(line, "claimed_uri") == "spiffe://example.org/a/../admin", line)

    # A chain that does not verify: its names are claims, never the identity.
    s_client(env, k.port, ["-cert", env.p("other-client.pem"),
                           "-key", env.p("other-client.key")], data=b"x\n")
    line = k.conn_end(r"reason=\"certificate verify failed")
    check(field(line, "uri") is None and field(line, "cn") is None, line)
    check(field(line, "claimed_uri") == "spiffe://example.org/client", line)

    # Rules are validated the same way at start: usage error, exit 2, one line.
    for bad in ("spiffe://example.org/a b", "spiffe://example.org/a/../b",
                "spiffe://example.org:8443/x", "spiffe://Example.org/x"):
        pr = subprocess.run([env.args.ktlsd, "server", "--listen", "127.0.0.1:1", "--target",
                             "127.0.0.1:2", "--cert", env.p("server.pem"), "--key",
                             env.p("server.key"), "--cacert", env.p("ca.pem"), "--allow-uri",
                             bad], capture_output=True, text=True, timeout=20)
        check(pr.returncode == 2 and "allow-uri" in pr.stderr, f"{bad!r}: {pr.returncode} "
              f"{pr.stderr!r}")


def t_proxy_identity(env):
    """Admitted by CN: the header has the CN but no SPIFFE TLV, although the certificate
    carries a URI SAN; admitted by URI: the SPIFFE TLV and no CN TLV, although it has a CN."""
    out = os.path.join(env.dir, "pp2.jsonl")
    bport = env.pp2_backend(out)
    by_cn = env.ktlsd(["--proxy-protocol"], target_port=bport, allow=["--allow-cn", "client"])
    by_uri = env.ktlsd(["--proxy-protocol"], target_port=bport,
                       allow=["--allow-uri", "spiffe://example.org/*"])
    for k in (by_cn, by_uri):
        got = s_client(env, k.port, ["-cert", env.p("client.pem"), "-key",
                                     env.p("client.key")], data=b"ping\n", expect=b"ping\n")
        check(b"ping\n" in got, f"no echo through {k.port}: {got!r}")
        k.conn_end(r"reason=closed")
    with open(out) as f:
        recs = [json.loads(x) for x in f if x.strip()]
    check(len(recs) == 2, f"two headers expected: {recs}")
    check(recs[0].get("cn") == "client" and recs[0].get("spiffe") is None,
          f"CN-admitted peer: SPIFFE TLV must be absent: {recs[0]}")
    check(recs[1].get("spiffe") == "spiffe://example.org/client" and recs[1].get("cn") is None,
          f"URI-admitted: the SPIFFE ID and no CN TLV: {recs[1]}")


def t_server_names(env):
    eport = env.echo_backend()
    # RFC 6125: a '*.example.org' server certificate for the name api.example.org.
    wild = env.ktlsd([], target_port=eport, cert="wild-server")
    cli = ktlsd_client(env, wild.port, ["--server-name", "api.example.org"],
                       target=f"localhost:{wild.port}")
    check(plain_roundtrip(cli.port) == b"plain ping\n", "wildcard server not accepted")
    line = cli.conn_end(r"reason=closed")
    check(field(line, "dns") == "*.example.org", line)
    # The wildcard covers one label only.
    cli2 = ktlsd_client(env, wild.port, ["--server-name", "a.b.example.org"],
                        target=f"localhost:{wild.port}")
    check(plain_roundtrip(cli2.port) == b"", "wildcard matched two labels")
    cli2.conn_end(r"reason=\"identity not allowed\".*claimed_dns=\*\.example\.org")

    # An IP target with no name: the server's IP SAN is checked.
    srv = env.ktlsd([], target_port=eport)
    cli3 = ktlsd_client(env, srv.port, target=f"127.0.0.1:{srv.port}")
    check("verify_ip=127.0.0.1" in cli3.wait_line(r"event=listening"), "no verify_ip")
    check(plain_roundtrip(cli3.port) == b"plain ping\n", "IP SAN not accepted")
    line = cli3.conn_end(r"reason=closed")
    check(field(line, "ip") == "127.0.0.1", line)
    wrong = env.ktlsd([], target_port=eport, cert="wrong-server")
    cli4 = ktlsd_client(env, wrong.port, target=f"127.0.0.1:{wrong.port}")
    check(plain_roundtrip(cli4.port) == b"", "server without the IP SAN accepted")
    cli4.conn_end(r"reason=\"identity not allowed\"")


def t_cn_string_type(env):
    """A CN is compared as text: a BMPString whose UTF-16 bytes spell 'client' (the CN
    U+636C U+6965 U+6E74) is not the CN 'client'."""
    d = env.p("bmp")
    os.makedirs(d)
    with open(os.path.join(d, "req.cnf"), "w", encoding="utf-8") as f:
        f.write("[req]\ndistinguished_name=dn\nstring_mask=MASK:0x800\nprompt=no\nutf8=yes\n"
                "[dn]\nCN=\u636c\u6965\u6e74\n")
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", env.p("bmp.key"), "-config",
                    os.path.join(d, "req.cnf"), "-out", os.path.join(d, "r.csr")],
                   check=True, capture_output=True)
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    subprocess.run(["openssl", "x509", "-req", "-in", os.path.join(d, "r.csr"), "-CA",
                    env.p("ca.pem"), "-CAkey", env.p("ca.key"), "-CAcreateserial", "-days", "2",
                    "-extfile", os.path.join(d, "ext"), "-out", env.p("bmp.pem")],
                   check=True, capture_output=True)
    asn1 = subprocess.run(["openssl", "asn1parse", "-in", env.p("bmp.pem")],
                          capture_output=True, text=True).stdout
    check("BMPSTRING" in asn1, "test certificate has no BMPString CN")
    eport = env.echo_backend()
    k = env.ktlsd(["--proxy-protocol"], target_port=eport, allow=["--allow-cn", "client"])
    s_client(env, k.port, ["-cert", env.p("bmp.pem"), "-key", env.p("bmp.key")], data=b"x\n")
    line = k.conn_end(r"reason=")
    check('reason="identity not allowed"' in line and field(line, "cn") is None,
          f"BMPString CN taken for 'client': {line}")


def t_encrypted_cert(env):
    """An encrypted certificate PEM is refused at start, never a terminal prompt."""
    enc = env.p("enc-cert.pem")
    # A legacy encrypted PEM block (Proc-Type/DEK-Info, key = EVP_BytesToKey(MD5, iv[:8],
    # password), as PEM_ASN1_write with a cipher writes it): no openssl command makes one.
    der = subprocess.run(["openssl", "x509", "-in", env.p("server.pem"), "-outform", "DER"],
                         check=True, capture_output=True).stdout
    iv = os.urandom(16)
    key = hashlib.md5(b"pw" + iv[:8]).digest()
    ct = subprocess.run(["openssl", "enc", "-aes-128-cbc", "-K", key.hex(), "-iv", iv.hex(),
                         "-nosalt"], input=der, check=True, capture_output=True).stdout
    b64 = base64.b64encode(ct).decode()
    body = "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    with open(enc, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\n"
                f"DEK-Info: AES-128-CBC,{iv.hex().upper()}\n\n{body}\n"
                "-----END CERTIFICATE-----\n")
    probe = subprocess.run(["openssl", "x509", "-in", enc, "-noout", "-passin", "pass:pw"],
                           capture_output=True)
    check(probe.returncode == 0, f"test certificate unreadable: {probe.stderr!r}")
    rc, out = run_on_tty([env.args.ktlsd, "server", "--listen", f"127.0.0.1:{free_port()}",
                          "--target", "127.0.0.1:1", "--cert", enc, "--key", env.p("server.key"),
                          "--cacert", env.p("ca.pem"), "--allow-all"], 15)
    check(rc == 2 and "is encrypted" in out and "pass phrase" not in out.lower(),
          f"encrypted cert: rc={rc} (a prompt?) {out!r}")


def run_on_tty(argv, timeout):
    """Runs argv with a pseudo-terminal as its controlling terminal and stdin (where
    OpenSSL's default callback would prompt). Returns (rc or None on timeout, output)."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    out, end, rc = b"", time.time() + timeout, None
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                b = os.read(fd, 4096)
            except OSError:
                b = b""
            out += b
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            rc = os.waitstatus_to_exitcode(status)
            break
    if rc is None:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    os.close(fd)
    return rc, out.decode(errors="replace")


def t_key_password(env):
    enc = env.p("server-enc.key")
    subprocess.run(["openssl", "pkey", "-in", env.p("server.key"), "-aes256", "-passout",
                    "pass:s3cret pass", "-out", enc], check=True)
    good, bad = env.p("pass.txt"), env.p("wrong.txt")
    with open(good, "w") as f:
        f.write("s3cret pass\n")
    with open(bad, "w") as f:
        f.write("guess\n")
    base = [env.args.ktlsd, "server", "--listen", f"127.0.0.1:{free_port()}", "--target",
            "127.0.0.1:1", "--cert", env.p("server.pem"), "--key", enc, "--cacert",
            env.p("ca.pem"), "--allow-all"]
    rc, out = run_on_tty(base, 15)
    check(rc == 2, f"encrypted key without a password file: rc={rc} (a prompt?) {out!r}")
    check("is encrypted: give --key-password-file" in out and "pass phrase" not in out.lower(),
          out)
    rc, out = run_on_tty(base + ["--key-password-file", bad], 15)
    check(rc == 2 and "cannot decrypt it with key-password-file" in out, f"rc={rc} {out!r}")

    eport = env.echo_backend()
    shutil.copy(env.p("server.pem"), env.p("encsrv.pem"))
    shutil.copy(enc, env.p("encsrv.key"))
    k = env.ktlsd(["--key-password-file", good], target_port=eport, cert="encsrv")
    got = echo_roundtrip(env, k.port)
    check(got == b"ping over ktlsd\n", f"server with the unlocked key: {got!r}")
    k.conn_end(r"reason=closed")


TESTS = {"svid": t_svid, "proxy_identity": t_proxy_identity, "server_names": t_server_names,
         "key_password": t_key_password, "cn_string_type": t_cn_string_type,
         "encrypted_cert": t_encrypted_cert}

if __name__ == "__main__":
    sys.exit(main(TESTS))
