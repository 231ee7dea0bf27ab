"""What a user meets first, and what a direct Redis connection would show:
plaintext Redis on a TLS endpoint gets one readable line, and a shard that
closes a connection after answering is seen as a close, not as an extra reply."""
from __future__ import annotations

import socket
import subprocess
import time

from conftest import database, recv_until_eof, tls_client_context, tls_socket, wait_for_blocked_clients

TLS_REQUIRED = b"-ERR this endpoint requires TLS (redis-cli: add --tls)\r\n"


def _database(name: str, port: int, shard: str, multiplex: bool) -> dict:
    db = database(name, port, shard)
    if multiplex:
        db["multiplex"] = True
    return db


def test_redis_cli_without_tls_is_told_to_add_tls(redis_server, shardgate):
    backend = redis_server()
    sg = shardgate([_database("plain-forward", 0, backend.address, False),
                    _database("multiplexed", 0, backend.address, True)])
    for name in ("plain-forward", "multiplexed"):
        out = subprocess.run(["redis-cli", "-p", str(sg.port(name)), "PING"],
                             capture_output=True, text=True, timeout=10)
        assert "this endpoint requires TLS (redis-cli: add --tls)" in out.stdout + out.stderr, \
            (name, out)
        # The raw bytes: exactly one RESP error line, then the close.
        with socket.create_connection(("127.0.0.1", sg.port(name)), timeout=5) as raw:
            raw.sendall(b"*1\r\n$4\r\nPING\r\n")
            data, closed = recv_until_eof(raw, timeout=5)
        assert closed and data == TLS_REQUIRED, (name, data)
        # An inline command too (telnet, nc).
        with socket.create_connection(("127.0.0.1", sg.port(name)), timeout=5) as raw:
            raw.sendall(b"PING\r\n")
            data, closed = recv_until_eof(raw, timeout=5)
        assert closed and data == TLS_REQUIRED, (name, data)
    # TLS clients are served as before.
    assert sg.client("plain-forward").ping() is True
    assert sg.client("multiplexed").ping() is True


def test_shard_closing_after_its_reply_is_a_clean_close(redis_server, shardgate):
    """CLIENT KILL SKIPME no: redis answers :1 and closes. The client must read
    :1 and then the close (with TLS close_notify), as from redis-server itself,
    not an extra -ERR line that it would take for its next command's reply."""
    backend = redis_server()
    sg = shardgate([database("db1", 0, backend.address)])
    raw = socket.create_connection(("127.0.0.1", sg.port()), timeout=5)
    # Ragged EOFs raise instead of reading as b"": b"" proves a close_notify.
    conn = tls_client_context(sg.ca).wrap_socket(raw, server_hostname="localhost",
                                                 suppress_ragged_eofs=False)
    conn.sendall(b"*4\r\n$6\r\nCLIENT\r\n$4\r\nKILL\r\n$6\r\nSKIPME\r\n$2\r\nno\r\n")
    data = b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        chunk = conn.recv(4096)  # SSLEOFError here: closed without close_notify
        if not chunk:
            break
        data += chunk
    else:
        raise AssertionError(f"not closed 5 s after the shard closed; got {data!r}")
    assert data == b":1\r\n", data
    conn.close()

    # A request still waiting when the shard goes still gets the line.
    conn = tls_socket(sg.port(), sg.ca)
    conn.sendall(b"PING\r\n")
    assert conn.recv(64) == b"+PONG\r\n"
    backend_client = backend.client()
    conn.sendall(b"*3\r\n$5\r\nBLPOP\r\n$7\r\nnothing\r\n$1\r\n0\r\n")
    wait_for_blocked_clients(backend_client)  # the BLPOP waits on the shard
    backend_client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    data, closed = recv_until_eof(conn, timeout=5)
    conn.close()
    assert closed
    assert data == f"-ERR shard {backend.address} closed the connection\r\n".encode(), data
