#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""silent_rpc_tls_server.py PORT READYFILE: an RPC-with-TLS "server" that answers the
client's AUTH_TLS probe (RFC 9289 4.1: a NULL call, answered with the STARTTLS verifier)
and then never says anything: the ClientHello that follows stays unanswered, so the
handshake agent's timeout is what ends it."""
import socket
import struct
import sys
import threading


def serve(c):
    try:
        mark = c.recv(4, socket.MSG_WAITALL)
        n = struct.unpack(">I", mark)[0] & 0x7FFFFFFF
        body = c.recv(n, socket.MSG_WAITALL)
        xid = body[:4]
        # REPLY, MSG_ACCEPTED, verifier AUTH_NONE "STARTTLS", SUCCESS
        reply = xid + struct.pack(">III", 1, 0, 0) + struct.pack(">I", 8) + b"STARTTLS" + \
            struct.pack(">I", 0)
        c.sendall(struct.pack(">I", 0x80000000 | len(reply)) + reply)
        while c.recv(65536):
            pass
    except OSError:
        pass


def main():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1])))
    s.listen(8)
    open(sys.argv[2], "w").close()
    while True:
        c = s.accept()[0]
        threading.Thread(target=serve, args=(c,), daemon=True).start()


main()
