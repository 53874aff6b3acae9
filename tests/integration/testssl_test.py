#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""testssl.sh against ktlsd's server: no finding rated HIGH or CRITICAL.

    testssl_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki

A bounded run (protocols, cipher categories, server preferences and defaults,
vulnerabilities; --fast), about a minute on two cores. The server certificate is the test
PKI's with a CRL distribution point added: testssl rates a certificate without CRL or
OCSP URI HIGH, a property of the operator's certificate, not of ktlsd. Every finding
that is not OK/INFO is printed. testssl 3.0 has no --mtls: everything it checks happens
before the client certificate is asked for; newer ones get --mtls with the test client.
Exit 0 pass, 1 fail, 77 skip (no testssl).
"""
import json
import os
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import Skip, check, main  # noqa: E402

BAD = ("HIGH", "CRITICAL")


def server_cert_with_crl(env):
    name = "crl-server"
    key, csr, ext = (env.p(f"{name}.{x}") for x in ("key", "csr", "ext"))
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", key], check=True, capture_output=True)
    subprocess.run(["openssl", "req", "-new", "-key", key, "-subj", "/O=ktlsd test/CN=server",
                    "-out", csr], check=True, capture_output=True)
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                "crlDistributionPoints=URI:http://127.0.0.1:9/ktlsd-test.crl\n")
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", env.p("ca.pem"), "-CAkey",
                    env.p("ca.key"), "-CAcreateserial", "-days", "90", "-extfile", ext,
                    "-out", env.p(f"{name}.pem")], check=True, capture_output=True)
    return name


def t_testssl(env):
    tool = shutil.which("testssl") or shutil.which("testssl.sh")
    if not tool:
        raise Skip("testssl.sh not installed (scripts/install-deps installs it)")
    eport = env.echo_backend()
    k = env.ktlsd(["--resumption"], target_port=eport, cert=server_cert_with_crl(env))
    out = os.path.join(env.dir, "testssl.json")
    argv = [tool, "--quiet", "--color", "0", "--warnings", "off", "--fast", "-p", "-s", "-S",
            "-P", "-U", "--ip", "127.0.0.1", "--add-ca", env.p("ca.pem"), "--jsonfile", out]
    helptext = subprocess.run([tool, "--help"], capture_output=True, text=True).stdout
    if "--mtls" in helptext:
        both = env.p("client-both.pem")
        with open(both, "w") as f:
            f.write(open(env.p("client.pem")).read() + open(env.p("client.key")).read())
        argv += ["--mtls", both]
    argv.append(f"localhost:{k.port}")
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    check(os.path.exists(out), f"testssl wrote no JSON (rc {r.returncode}): {r.stdout[-1500:]}")
    with open(out) as f:
        findings = json.load(f)
    ids = {x["id"]: x for x in findings}
    # It really tested: the protocol list and a vulnerability check are there.
    for want in ("TLS1_3", "TLS1", "heartbleed", "cipherlist_NULL"):
        check(want in ids, f"testssl did not report {want}: {r.stdout[-1500:]}")
    check(ids["TLS1"]["finding"].startswith("not offered"), f"TLS 1.0: {ids['TLS1']}")
    for x in findings:
        if x["severity"] not in ("OK", "INFO"):
            print(f"testssl {x['severity']}: {x['id']}: {x['finding']}")
    bad = [f"{x['severity']} {x['id']}: {x['finding']}" for x in findings
           if x["severity"] in BAD]
    check(not bad, "testssl findings rated HIGH/CRITICAL:\n  " + "\n  ".join(bad))
    check(k.alive(), "ktlsd died under testssl")


TESTS = {"testssl": t_testssl}

if __name__ == "__main__":
    sys.exit(main(TESTS))
