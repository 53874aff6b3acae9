#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Test backend that expects a PROXY protocol v2 header on every connection.

    pp2_backend.py PORT OUT.jsonl      (PORT 0: any free port)
    pp2_backend.py --self-test

Listens on 127.0.0.1:PORT and prints "listening PORT" on stdout once it accepts. For each
connection it reads one v2 header, checks it strictly (signature, version, command, family,
lengths, every TLV and PP2_TYPE_SSL sub-TLV inside its parent, CRC32C when present), appends
one JSON line to OUT.jsonl, then echoes everything after the header back until EOF. A bad
header gives a line {"error": "..."} and the connection is closed without echoing.

JSON keys: cmd ("PROXY"/"LOCAL"), family ("tcp4"/"tcp6"/"unix"/"unspec"), src and dst
("ip:port", "[ip6]:port" or the unix path), ssl (bool), client_flags, verify,
ssl_version, cn, cipher, spiffe (null when absent), crc32c (null, true: checked and
matched), tlvs (types in order). Type 0xE0 is ktlsd's SPIFFE ID TLV (daemon/proxy_v2.h).
"""
import ipaddress
import json
import socket
import struct
import sys
import threading

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
PP2_TYPE_CRC32C = 0x03
PP2_TYPE_SSL = 0x20
SUB_VERSION, SUB_CN, SUB_CIPHER = 0x21, 0x22, 0x23
TYPE_SPIFFE = 0xE0
ADDR_LEN = {0x00: 0, 0x11: 12, 0x21: 36, 0x31: 216}
FAMILY = {0x00: "unspec", 0x11: "tcp4", 0x21: "tcp6", 0x31: "unix"}


class BadHeader(Exception):
    pass


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def tlvs(data, where):
    """Yields (type, offset of value, value) for each TLV; lengths must fit exactly."""
    off = 0
    while off < len(data):
        if len(data) - off < 3:
            raise BadHeader(f"truncated TLV header in {where} at {off}")
        t, n = data[off], struct.unpack_from("!H", data, off + 1)[0]
        if n > len(data) - off - 3:
            raise BadHeader(f"TLV 0x{t:02x} in {where} overruns it ({n} bytes)")
        yield t, off + 3, data[off + 3:off + 3 + n]
        off += 3 + n


def text(v, what):
    try:
        return v.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadHeader(f"{what} is not UTF-8: {e}") from None


def unix_path(b):
    return b.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


def parse(hdr):
    """hdr: the whole header (16 fixed bytes + body). Returns the JSON-ready dict."""
    if hdr[:12] != SIG:
        raise BadHeader("bad signature")
    ver_cmd, fam, body_len = hdr[12], hdr[13], struct.unpack_from("!H", hdr, 14)[0]
    if ver_cmd >> 4 != 2:
        raise BadHeader(f"version {ver_cmd >> 4}, want 2")
    if ver_cmd & 0xF not in (0, 1):
        raise BadHeader(f"unknown command {ver_cmd & 0xF}")
    if fam not in ADDR_LEN:
        raise BadHeader(f"unsupported family/transport 0x{fam:02x}")
    if ver_cmd & 0xF == 1 and fam == 0:
        raise BadHeader("PROXY command without addresses")
    body = hdr[16:]
    assert len(body) == body_len
    alen = ADDR_LEN[fam]
    if body_len < alen:
        raise BadHeader(f"length {body_len} < address block {alen}")
    out = {"cmd": "PROXY" if ver_cmd & 0xF else "LOCAL", "family": FAMILY[fam],
           "src": None, "dst": None, "ssl": False, "client_flags": None, "verify": None,
           "ssl_version": None, "cn": None, "cipher": None, "spiffe": None,
           "crc32c": None, "tlvs": []}
    a = body[:alen]
    if fam == 0x11:
        s, d = ipaddress.IPv4Address(a[0:4]), ipaddress.IPv4Address(a[4:8])
        sp, dp = struct.unpack_from("!HH", a, 8)
        out["src"], out["dst"] = f"{s}:{sp}", f"{d}:{dp}"
    elif fam == 0x21:
        s, d = ipaddress.IPv6Address(a[0:16]), ipaddress.IPv6Address(a[16:32])
        sp, dp = struct.unpack_from("!HH", a, 32)
        out["src"], out["dst"] = f"[{s}]:{sp}", f"[{d}]:{dp}"
    elif fam == 0x31:
        out["src"], out["dst"] = unix_path(a[:108]), unix_path(a[108:])
    seen = set()
    for t, voff, v in tlvs(body[alen:], "header"):
        out["tlvs"].append(t)
        if t in seen and t in (PP2_TYPE_SSL, PP2_TYPE_CRC32C, TYPE_SPIFFE):
            raise BadHeader(f"duplicate TLV 0x{t:02x}")
        seen.add(t)
        if t == PP2_TYPE_SSL:
            if len(v) < 5:
                raise BadHeader("PP2_TYPE_SSL shorter than 5 bytes")
            out["ssl"] = True
            out["client_flags"] = v[0]
            out["verify"] = struct.unpack_from("!I", v, 1)[0]
            names = {SUB_VERSION: "ssl_version", SUB_CN: "cn", SUB_CIPHER: "cipher"}
            for st, _, sv in tlvs(v[5:], "PP2_TYPE_SSL"):
                if st in names:
                    if out[names[st]] is not None:
                        raise BadHeader(f"duplicate SSL sub-TLV 0x{st:02x}")
                    out[names[st]] = text(sv, names[st])
        elif t == PP2_TYPE_CRC32C:
            if len(v) != 4:
                raise BadHeader("PP2_TYPE_CRC32C is not 4 bytes")
            at = 16 + alen + voff
            zeroed = hdr[:at] + b"\0\0\0\0" + hdr[at + 4:]
            want = struct.unpack("!I", v)[0]
            if crc32c(zeroed) != want:
                raise BadHeader(f"CRC32C mismatch: header says {want:08x}, "
                                f"computed {crc32c(zeroed):08x}")
            out["crc32c"] = True
        elif t == TYPE_SPIFFE:
            out["spiffe"] = text(v, "SPIFFE ID")
    return out


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise BadHeader(f"EOF after {len(buf)} of {n} header bytes")
        buf += chunk
    return buf


def read_header(conn):
    fixed = recv_exact(conn, 16)
    if fixed[:12] != SIG:
        raise BadHeader("bad signature")
    return parse(fixed + recv_exact(conn, struct.unpack_from("!H", fixed, 14)[0]))


class Backend:
    def __init__(self, port, out_path):
        self.out_path = out_path
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]

    def record(self, obj):
        with self.lock, open(self.out_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(obj, sort_keys=True) + "\n")

    def handle(self, conn):
        with conn:
            try:
                conn.settimeout(30)
                info = read_header(conn)
            except (BadHeader, OSError) as e:
                self.record({"error": str(e)})
                return
            # The line is on disk before the first echoed byte: a client that got its
            # echo can read the record.
            self.record(info)
            conn.settimeout(None)
            try:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()


def self_test():
    """Hand-written headers (independent of the C encoder) through a real socket."""
    import os
    import tempfile

    def tlv(t, v):
        return bytes([t]) + struct.pack("!H", len(v)) + v

    ssl = tlv(0x20, b"\x07" + b"\0\0\0\0" + tlv(0x21, b"TLSv1.3") + tlv(0x22, b"client")
              + tlv(0x23, b"TLS_AES_128_GCM_SHA256"))
    addrs = bytes([192, 0, 2, 1, 127, 0, 0, 1]) + struct.pack("!HH", 40000, 8443)
    tail = addrs + ssl + tlv(0xE0, b"spiffe://example.org/client")
    good = SIG + b"\x21\x11" + struct.pack("!H", len(tail)) + tail
    crc_tail = tail + tlv(0x03, b"\0\0\0\0")
    crc_hdr = bytearray(SIG + b"\x21\x11" + struct.pack("!H", len(crc_tail)) + crc_tail)
    crc_hdr[-4:] = struct.pack("!I", crc32c(bytes(crc_hdr)))
    bad_crc = bytearray(crc_hdr)
    bad_crc[20] ^= 1
    overrun = SIG + b"\x21\x11" + struct.pack("!H", len(addrs) + 3) + addrs + b"\xe0\x00\x05"
    six = (bytes(15) + b"\x01") * 2 + struct.pack("!HH", 1, 2)
    cases = [
        (good, {"src": "192.0.2.1:40000", "dst": "127.0.0.1:8443", "ssl_version": "TLSv1.3",
                "cn": "client", "cipher": "TLS_AES_128_GCM_SHA256", "client_flags": 7,
                "verify": 0, "spiffe": "spiffe://example.org/client", "crc32c": None}),
        (bytes(crc_hdr), {"crc32c": True, "cn": "client"}),
        (SIG + b"\x21\x21" + struct.pack("!H", 36) + six,
         {"src": "[::1]:1", "dst": "[::1]:2", "ssl": False, "family": "tcp6"}),
        (SIG + b"\x20\x00\x00\x00", {"cmd": "LOCAL", "src": None}),
        (bytes(bad_crc), {"error": "CRC32C mismatch"}),
        (overrun, {"error": "overruns"}),
        (b"GET / HTTP/1.1\r\n\r\n", {"error": "bad signature"}),
        (SIG + b"\x22\x11\x00\x0c" + addrs, {"error": "unknown command"}),
        (SIG + b"\x21\x11\x00\x08" + addrs[:8], {"error": "address block"}),
    ]
    fd, path = tempfile.mkstemp(suffix=".jsonl")
    os.close(fd)
    b = Backend(0, path)
    threading.Thread(target=b.serve, daemon=True).start()
    failures = 0
    for i, (hdr, want) in enumerate(cases):
        payload = b"hello %d" % i
        with socket.create_connection(("127.0.0.1", b.port), timeout=10) as c:
            try:
                c.sendall(hdr + payload)
                c.shutdown(socket.SHUT_WR)
            except OSError:  # a refused header may be closed on before we are done
                pass
            echoed = b""
            while True:
                try:
                    d = c.recv(65536)
                except ConnectionResetError:  # refused headers: closed unread
                    break
                if not d:
                    break
                echoed += d
        with open(path, encoding="utf-8") as f:
            got = json.loads(f.read().splitlines()[i])
        ok = True
        for k, v in want.items():
            if k == "error":
                ok &= v in got.get("error", "")
            else:
                ok &= got.get(k) == v
        ok &= echoed == (b"" if "error" in want else payload)
        if not ok:
            failures += 1
            print(f"case {i}: want {want}, echo {payload!r}; got {got}, echo {echoed!r}",
                  file=sys.stderr)
    os.unlink(path)
    print(f"{len(cases) - failures}/{len(cases)} cases ok")
    return 1 if failures else 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    b = Backend(int(argv[1]), argv[2])
    print(f"listening {b.port}", flush=True)
    try:
        b.serve()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
