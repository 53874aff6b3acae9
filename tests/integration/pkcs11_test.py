#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""PKCS#11 private keys (--key pkcs11:...) through OpenSSL's pkcs11 provider, with a SoftHSM2
token made in the test's temp dir (SOFTHSM2_CONF): the server's and a ktlsd client's key in
the token serve real handshakes (TLS 1.3 and 1.2); the config file takes the URI; the
errors (no PIN, wrong PIN, no such object, a key that is not the certificate's, no
provider) exit 2 with one line, the PIN never in it."""
import os
import subprocess
import sys

import harness
from harness import check, echo_roundtrip, free_port, ktlsd_client, plain_roundtrip

SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
PROVIDER = "/usr/lib/x86_64-linux-gnu/ossl-modules/pkcs11.so"
PIN = "40418"


def token(env):
    """A SoftHSM2 token "ktlsd" holding server.key and client.key; the env for ktlsd."""
    if harness.SANITIZER:
        raise harness.Skip("pkcs11-provider dlopens the PKCS#11 module with RTLD_DEEPBIND, "
                           f"which the {harness.SANITIZER} runtime refuses")
    if not os.path.exists(SOFTHSM):
        raise harness.Skip(f"{SOFTHSM} missing (softhsm2; scripts/install-deps installs it)")
    if not os.path.exists(PROVIDER):
        raise harness.Skip(f"{PROVIDER} missing (pkcs11-provider from bookworm-backports; "
                           "scripts/install-deps installs it)")
    d = os.path.join(env.dir, "hsm")
    os.makedirs(os.path.join(d, "tokens"))
    conf = os.path.join(d, "softhsm2.conf")
    with open(conf, "w") as f:
        f.write(f"directories.tokendir = {d}/tokens\nobjectstore.backend = file\n"
                "log.level = ERROR\n")
    e = dict(os.environ, SOFTHSM2_CONF=conf, PKCS11_PROVIDER_MODULE=SOFTHSM)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "ktlsd", "--pin", PIN,
                    "--so-pin", "123456"], env=e, check=True, capture_output=True)
    for i, name in enumerate(("server", "client")):
        p8 = os.path.join(d, f"{name}.p8")
        subprocess.run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", env.p(f"{name}.key"),
                        "-out", p8], check=True, capture_output=True)
        subprocess.run(["softhsm2-util", "--import", p8, "--token", "ktlsd", "--label", name,
                        "--id", f"0{i + 1}", "--pin", PIN], env=e, check=True,
                       capture_output=True)
        os.unlink(p8)
    pin = os.path.join(d, "pin")
    with open(pin, "w") as f:
        f.write(PIN + "\n")
    return {"SOFTHSM2_CONF": conf, "PKCS11_PROVIDER_MODULE": SOFTHSM}, pin


def uri(obj):
    return f"pkcs11:token=ktlsd;object={obj};type=private"


def t_pkcs11(env):
    """Keys in the token serve: server (TLS 1.3, 1.2) and a ktlsd client, from the CLI and a
    config file."""
    hsm_env, pin = token(env)
    eport = env.echo_backend()
    k = env.ktlsd(["--key", uri("server"), "--key-password-file", pin], target_port=eport,
                  env_vars=hsm_env)
    check(echo_roundtrip(env, k.port) == b"ping over ktlsd\n", "echo with the key in a token")
    k.conn_end(r"reason=closed .*tls=TLSv1.3")
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{k.port}", "-tls1_2",
                          "-CAfile", env.p("ca.pem"), "-cert", env.p("client.pem"), "-key",
                          env.p("client.key"), "-verify_return_error"], input=b"",
                         capture_output=True, timeout=30).stdout.decode()
    check("Verify return code: 0" in out and "TLSv1.2" in out, f"TLS 1.2: {out[-600:]}")
    print("server key in SoftHSM2: TLS 1.3 echo and TLS 1.2 handshake verified")

    cli = ktlsd_client(env, k.port, ["--verify-uri", "spiffe://example.org/server", "--key",
                                     uri("client") + f"?pin-source=file:{pin}"],
                       wrap=["env"] + [f"{a}={b}" for a, b in hsm_env.items()])
    check(plain_roundtrip(cli.port) == b"plain ping\n", "ktlsd client with its key in a token")
    line = k.conn_end(r"reason=closed")
    check("uri=spiffe://example.org/client" in line, line)
    print("client key in SoftHSM2 (pin-source in the URI): the server admits it")

    port = free_port()
    conf = os.path.join(env.dir, "p11.ini")
    with open(conf, "w") as f:
        f.write(f"[service p11]\nlisten = 127.0.0.1:{port}\ntarget = 127.0.0.1:{eport}\n"
                f"cert = {env.p('server.pem')}\nkey = {uri('server')}\n"
                f"key-password-file = {pin}\ncacert = {env.p('ca.pem')}\n"
                "allow-uri = spiffe://example.org/client\n")
    log = os.path.join(env.dir, "conf.log")
    pr = env.spawn([env.args.ktlsd, "--config", conf], stderr=open(log, "w"),
                   env=dict(os.environ, **hsm_env))
    kc = harness.Ktlsd(pr, port, log)
    kc.wait_line(r"event=listening")
    check(echo_roundtrip(env, port) == b"ping over ktlsd\n", "config file with a pkcs11 key")
    print("config file: key = pkcs11:... serves")


def fails(env, hsm_env, key, expect, extra=(), forbid=PIN):
    pr = subprocess.run([env.args.ktlsd, "server", "--listen", f"127.0.0.1:{free_port()}",
                         "--target", "127.0.0.1:9", "--cert", env.p("server.pem"), "--key", key,
                         "--cacert", env.p("ca.pem"), "--allow-all"] + list(extra),
                        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
                        env=dict(os.environ, **hsm_env))
    check(pr.returncode == 2, f"{key}: exit {pr.returncode}, want 2: {pr.stderr}")
    check(expect in pr.stderr, f"{key}: want {expect!r} in {pr.stderr!r}")
    check(len(pr.stderr.strip().splitlines()) == 1, f"not one line: {pr.stderr!r}")
    check(forbid not in pr.stderr, f"the PIN is in the message: {pr.stderr!r}")
    print(f"refused: {pr.stderr.strip()}")


def t_errors(env):
    """Each way a PKCS#11 key can fail says what, in one line, exit 2, without the PIN."""
    hsm_env, pin = token(env)
    bad = os.path.join(env.dir, "bad-pin")
    with open(bad, "w") as f:
        f.write("999999\n")
    fails(env, hsm_env, uri("server"), "no PIN: give key-password-file")
    fails(env, hsm_env, uri("server"), "no private key found", ["--key-password-file", bad])
    fails(env, hsm_env, uri("nope") + f"?pin-value={PIN}", "no private key found")
    fails(env, hsm_env, uri("client") + f"?pin-value={PIN}", "does not match cert")
    fails(env, dict(hsm_env, OPENSSL_MODULES="/nonexistent"), uri("server"),
          "pkcs11 provider is not installed", ["--key-password-file", pin])
    pr = subprocess.run([env.args.ktlsd, "check-config", "/dev/null"], capture_output=True)
    check(pr.returncode == 2, "check-config of an empty file")


TESTS = {"pkcs11": t_pkcs11, "errors": t_errors}

if __name__ == "__main__":
    sys.exit(harness.main(TESTS, needs=("softhsm2-util",)))
