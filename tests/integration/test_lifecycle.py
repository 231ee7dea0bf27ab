"""Lifecycle at the edges: a shard that is down, and
SIGTERM with a client still connected."""
from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import time

from conftest import database, recv_until_eof, tls_socket


def test_backend_down_gives_err_naming_the_shard_and_closes(redis_server, shardgate,
                                                           refused_address):
    dead = refused_address
    live = redis_server()
    sg = shardgate([database("down", 0, dead),
                    database("up", 0, live.address)])

    conn = tls_socket(sg.port("down"), sg.ca)
    # shardgate may dial the shard at accept or at the first command; only send
    # once it has not already answered, so our bytes never race its close.
    conn.settimeout(1)
    try:
        first = conn.recv(4096)
    except socket.timeout:
        first = None
    if first is None:
        conn.sendall(b"PING\r\n")
        data, closed = recv_until_eof(conn, timeout=5)
    elif first == b"":
        data, closed = b"", True
    else:
        rest, closed = recv_until_eof(conn, timeout=5)
        data = first + rest
    conn.close()
    assert closed, f"connection still open 5 s after the shard refused; got {data!r}"
    assert data.startswith(b"-ERR"), data
    assert f"shard {dead}".encode() in data, data
    assert data.count(b"\r\n") == 1, data

    # shardgate keeps serving the other database.
    assert sg.proc.poll() is None
    assert sg.client("up").ping() is True


def test_sigterm_with_client_connected_exits_zero_within_drain_time(redis_server, shardgate):
    backend = redis_server()
    drain_ms = 1000
    sg = shardgate([database("db1", 0, backend.address)], drain_timeout_ms=drain_ms)
    client = sg.client(single_connection_client=True)
    assert client.set("before-sigterm", "1") is True  # connected, and idle from now on

    sg.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    # No longer accepting: a new client is not served.
    try:
        fresh = tls_socket(sg.port(), sg.ca, timeout=2)
        fresh.sendall(b"PING\r\n")
        served = b"+PONG" in fresh.recv(64)
        fresh.close()
    except (OSError, ssl.SSLError, socket.timeout):
        served = False
    assert not served, "shardgate accepted a new client after SIGTERM"

    try:
        code = sg.proc.wait(timeout=drain_ms / 1000 + 3)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {drain_ms / 1000 + 3} s after SIGTERM\n{sg.log()}")
    assert code == 0, f"exit code {code}\n{sg.log()}"
    client.close()
