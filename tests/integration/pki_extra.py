# SPDX-License-Identifier: MIT
"""More of the throwaway test PKI than scripts/pki makes: new CAs (roots and intermediates),
leaf certificates from any of them, and CRLs. All ECDSA P-256, PEM, written with the openssl
command line into a directory the test owns."""
import os
import subprocess
import tempfile


def _ossl(*argv, cwd=None):
    r = subprocess.run(["openssl", *argv], capture_output=True, text=True, cwd=cwd)
    if r.returncode:
        raise RuntimeError(f"openssl {' '.join(argv)}: {r.stderr.strip()}")
    return r.stdout


def _key(path):
    _ossl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    os.chmod(path, 0o600)


def _sign(d, name, ca, subj, ext, days=825):
    """name.csr signed by ca (a path prefix: ca.pem / ca.key) with extensions ext."""
    csr, extf = os.path.join(d, name + ".csr"), os.path.join(d, name + ".ext")
    _ossl("req", "-new", "-key", os.path.join(d, name + ".key"), "-subj", subj, "-out", csr)
    with open(extf, "w") as f:
        f.write(ext)
    serial = "0x" + os.urandom(12).hex()
    _ossl("x509", "-req", "-in", csr, "-CA", ca + ".pem", "-CAkey", ca + ".key", "-set_serial",
          serial, "-days", str(days), "-extfile", extf, "-out", os.path.join(d, name + ".pem"))
    os.unlink(csr)
    os.unlink(extf)


def new_ca(d, name, cn, issuer=None):
    """d/name.{pem,key}: a root CA, or with issuer (a path prefix) an intermediate."""
    _key(os.path.join(d, name + ".key"))
    if issuer is None:
        _ossl("req", "-x509", "-new", "-key", os.path.join(d, name + ".key"), "-subj",
              f"/O=ktlsd test/CN={cn}", "-days", "3650", "-addext",
              "basicConstraints=critical,CA:TRUE", "-addext",
              "keyUsage=critical,keyCertSign,cRLSign", "-out", os.path.join(d, name + ".pem"))
    else:
        _sign(d, name, issuer, f"/O=ktlsd test/CN={cn}",
              "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n", 3650)
    return os.path.join(d, name)


def new_leaf(d, name, ca, cn, san, eku="client"):
    """d/name.{pem,key} signed by ca (a path prefix), a fresh key and a random serial."""
    _key(os.path.join(d, name + ".key"))
    _sign(d, name, ca, f"/O=ktlsd test/OU={eku}/CN={cn}",
          "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,"
          f"keyEncipherment\nextendedKeyUsage={eku}Auth\nsubjectAltName={san}\n")
    return os.path.join(d, name)


def serial(cert_pem):
    """The certificate's serial as openssl prints it (upper-case hex)."""
    return _ossl("x509", "-in", cert_pem, "-noout", "-serial").strip().split("=", 1)[1]


def make_crl(ca, out, revoked=(), days=30):
    """A CRL of ca (a path prefix) revoking the certificates (PEM paths) in revoked, at out."""
    with tempfile.TemporaryDirectory() as db:
        with open(os.path.join(db, "index.txt"), "w"):
            pass
        with open(os.path.join(db, "crlnumber"), "w") as f:
            f.write("01\n")
        cnf = os.path.join(db, "ca.cnf")
        with open(cnf, "w") as f:
            f.write(f"[ca]\ndefault_ca = d\n[d]\ndatabase = {db}/index.txt\n"
                    f"crlnumber = {db}/crlnumber\ndefault_md = sha256\n"
                    f"default_crl_days = {days}\n")
        for cert in revoked:
            _ossl("ca", "-config", cnf, "-revoke", cert, "-cert", ca + ".pem", "-keyfile",
                  ca + ".key")
        _ossl("ca", "-config", cnf, "-gencrl", "-cert", ca + ".pem", "-keyfile", ca + ".key",
              "-out", out)
    return out


def replace(path, data):
    """Writes data to path the way rotation tools do: a temporary file renamed over it."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def read(path):
    with open(path, "rb") as f:
        return f.read()
