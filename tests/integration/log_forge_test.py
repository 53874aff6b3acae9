#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A client certificate cannot forge ktlsd log lines.

    log_forge_test.py --ktlsd BUILD/ktlsd --pki-script scripts/pki

The test CA signs a client certificate whose CN, URI and DNS names carry CR, LF and a
whole fake log line (and one invalid UTF-8 byte). Refused (policy) and accepted
(--allow-all), in logfmt and JSON: every log line must still be a real ktlsd line, none
may start with the forged text, and the names must still be in the conn_end line,
escaped. Exit 0 pass, 1 fail, 77 skip.
"""
import json
import ssl
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from harness import Fail, check, echo_roundtrip, main  # noqa: E402

FORGED = "ts=2024-01-01T00:00:00.000Z level=info event=forged"
CN = f"a\r\n{FORGED}_cn"
URI = f"spiffe://example.org/client\r\n{FORGED}_uri"
DNS = b"a\xffb\rforged"  # IA5String with a byte that is not UTF-8


def forged_cert(env):
    """CN, URI and DNS names with line breaks, signed by the test CA; returns its name."""
    name = "forged-client"
    key, csr, ext = (env.p(f"{name}.{x}") for x in ("key", "csr", "ext"))
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", key], check=True, capture_output=True)
    # -subj takes the control bytes as they are; the extension file uses OpenSSL config
    # escapes (\r \n) and the raw 0xff byte.
    subprocess.run(["openssl", "req", "-new", "-key", key, "-subj", f"/O=ktlsd test/CN={CN}",
                    "-out", csr], check=True, capture_output=True)
    uri_conf = URI.replace("\r", "\\r").replace("\n", "\\n")
    dns_conf = DNS.replace(b"\r", b"\\r")
    with open(ext, "wb") as f:
        f.write(b"basicConstraints=critical,CA:FALSE\n"
                b"keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
                b"subjectAltName=@alt\n[alt]\nURI.1=" + uri_conf.encode() + b"\nDNS.1=" + dns_conf
                + b"\n")
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", env.p("ca.pem"), "-CAkey",
                    env.p("ca.key"), "-CAcreateserial", "-days", "2", "-extfile", ext, "-out",
                    env.p(f"{name}.pem")], check=True, capture_output=True)
    txt = subprocess.run(["openssl", "x509", "-in", env.p(f"{name}.pem"), "-noout", "-text"],
                         capture_output=True, check=True).stdout
    check(b"\n" + FORGED.encode() + b"_uri" in txt.replace(b"\r", b""),
          "the test certificate does not carry the forged URI")
    return name


def lines_of(k):
    """The log as any reader may split it: LF, CR and the Unicode line breaks."""
    with open(k.log, "rb") as f:
        raw = f.read()
    return raw, raw.decode("utf-8", errors="strict").splitlines()


def connect(env, k, who, accepted):
    if accepted:
        got = echo_roundtrip(env, k.port, who=who)
        check(got == b"ping over ktlsd\n", f"accepted forged client got {got!r}")
        return
    try:
        echo_roundtrip(env, k.port, who=who)
    except (ssl.SSLError, OSError):
        return
    raise Fail("the policy let the forged client in")


def no_forged_line(k):
    raw, lines = lines_of(k)
    for ln in lines:
        check(not ln.startswith("ts=2024-01-01") and "forged" not in ln.split(" ")[0],
              f"a certificate started a log line: {ln!r}")
    check(b"\r" not in raw and b"\x1b" not in raw, "raw CR or ESC in the log")
    return lines


def logfmt_case(env, eport, who, allow, accepted):
    k = env.ktlsd([], target_port=eport, allow=allow)
    connect(env, k, who, accepted)
    k.conn_end(r"reason=" + ("closed" if accepted else ""))
    lines = no_forged_line(k)
    for ln in lines:
        check(ln.startswith("ts=20") and " level=" in ln, f"not a ktlsd logfmt line: {ln!r}")
    end = [ln for ln in lines if "event=conn_end" in ln][-1]
    # Admitted (allow-all): the one identity, the CN (the URI is no SPIFFE ID). Refused:
    # every name, as a claim.
    pre = "" if accepted else "claimed_"
    check(f'{pre}cn="a\\r\\n{FORGED}_cn"' in end, f"cn missing or not escaped: {end}")
    if not accepted:
        check(f'claimed_uri="spiffe://example.org/client\\r\\n{FORGED}_uri"' in end,
              f"uri missing or not escaped: {end}")
        check('claimed_dns="a\\xffb\\rforged"' in end, f"dns missing or not escaped: {end}")


def json_case(env, eport, who, allow, accepted):
    k = env.ktlsd(["--log-format", "json"], target_port=eport, allow=allow)
    connect(env, k, who, accepted)
    k.wait_line(r'"event": ?"conn_end"', timeout=10)
    lines = no_forged_line(k)
    objs = []
    for ln in lines:
        try:
            objs.append(json.loads(ln))
        except ValueError:
            raise Fail(f"not a JSON log line: {ln!r}")
    end = [o for o in objs if o.get("event") == "conn_end"][-1]
    pre = "" if accepted else "claimed_"
    check(end.get(pre + "cn") == CN, f"cn lost or changed: {end}")
    if not accepted:
        check(end.get("claimed_uri") == URI, f"uri lost or changed: {end}")
        # Invalid UTF-8 is kept as U+FFFD rather than dropping the field.
        check(end.get("claimed_dns") == "a\ufffdb\rforged", f"dns lost: {end}")


def t_log_forge(env):
    who = forged_cert(env)
    eport = env.echo_backend()
    logfmt_case(env, eport, who, None, accepted=False)
    logfmt_case(env, eport, who, ["--allow-all"], accepted=True)
    json_case(env, eport, who, None, accepted=False)
    json_case(env, eport, who, ["--allow-all"], accepted=True)


TESTS = {"log_forge": t_log_forge}

if __name__ == "__main__":
    sys.exit(main(TESTS))
