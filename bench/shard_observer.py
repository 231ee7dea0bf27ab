#!/usr/bin/python3
"""bench/shard_observer.py: a TLS shard that says which handshakes resumed.

A small TLS server in front of a plaintext redis-server. It accepts TLS
(requiring a client certificate, as a shard with `tls-auth-clients yes` does),
appends one JSON line per completed handshake to --events:

    {"t": <unix time>, "reused": true|false, "version": "TLSv1.3"}

then relays bytes both ways to the redis-server's plain port. When the
redis-server closes its side (CLIENT KILL), the TLS side is closed too, with
close_notify as redis-server closes its own TLS connections, so the proxy in
front sees its shard connection end cleanly and must reconnect.

It is the same observer for every target that speaks TLS to the shard, so
haproxy, stunnel and shardgate are counted the same way: by the server, from
SSL_session_reused(), not by anything the proxy reports about itself.

Not for throughput: one thread per connection, in Python. bench/run uses it
only for the shard-reconnect workload; GET/SET and handshakes go to the real
redis-server's TLS port.

    shard_observer.py --port P --backend-port B --cert C --key K --ca CA --events FILE
"""
from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import ssl
import sys
import threading
import time


def relay(conn: ssl.SSLSocket, back: socket.socket) -> None:
    """Copies both ways on one thread (an SSL object is not for two threads).
    When redis-server closes (CLIENT KILL), the TLS side is closed as
    redis-server closes its own TLS connections: close_notify
    (SSL_shutdown), then the socket. A client that sees an unclean close may
    drop the session it would resume (OpenSSL marks such a session bad), so a
    silent close here would measure the observer, not the proxy."""
    conn.setblocking(False)
    back.setblocking(False)
    try:
        while True:
            ready = [conn] if conn.pending() else select.select([conn, back], [], [])[0]
            if conn in ready:
                try:
                    data = conn.recv(65536)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    data = None
                if data == b"":
                    return              # the proxy closed: close redis' side below
                if data:
                    back.setblocking(True)
                    back.sendall(data)
                    back.setblocking(False)
            if back in ready:
                data = back.recv(65536)
                if not data:
                    conn.settimeout(1)
                    try:
                        conn.unwrap()   # close_notify; waits up to 1 s for the peer's
                    except (OSError, ssl.SSLError, ValueError):
                        pass
                    return
                conn.setblocking(True)
                conn.sendall(data)
                conn.setblocking(False)
    except (OSError, ssl.SSLError):
        pass


def serve(conn: ssl.SSLSocket, backend_port: int, events, lock: threading.Lock) -> None:
    try:
        conn.do_handshake()
    except (OSError, ssl.SSLError) as e:
        with lock:
            events.write(json.dumps({"t": time.time(), "error": str(e)[:200]}) + "\n")
            events.flush()
        conn.close()
        return
    conn.settimeout(None)
    # Written before the first byte is relayed: once the proxy has a reply
    # through this connection, its handshake is already on record.
    with lock:
        events.write(json.dumps({"t": time.time(), "reused": conn.session_reused,
                                 "version": conn.version()}) + "\n")
        events.flush()
    try:
        back = socket.create_connection(("127.0.0.1", backend_port), timeout=5)
    except OSError:
        conn.close()
        return
    back.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    relay(conn, back)
    conn.close()
    back.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--backend-port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--ca", required=True, help="CA the clients' certificates must chain to")
    ap.add_argument("--events", required=True, help="JSON lines, one per handshake")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.load_verify_locations(args.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    # Session ids (TLS 1.2) and tickets (both versions) are on by default; one
    # context for the process, so every ticket it issued can be resumed.
    events = open(args.events, "a", buffering=1)
    lock = threading.Lock()
    lsock = socket.create_server(("127.0.0.1", args.port), backlog=128)
    print(f"listening on {args.port}", flush=True)
    while True:
        raw, _ = lsock.accept()
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.settimeout(10)          # the handshake; serve() then blocks without limit
        try:
            conn = ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        except OSError:
            raw.close()
            continue

        threading.Thread(target=serve, args=(conn, args.backend_port, events, lock),
                         daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
