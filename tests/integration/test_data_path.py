"""The data path under pressure and at its edges:
backpressure keeps memory bounded, a half-close still gets its replies, a
shard's last words reach the client, a request in flight survives SIGTERM,
workers share the port, TLS 1.0 works when allowed, unbuilt keys are refused."""
from __future__ import annotations

import os
import signal
import socket
import threading
import time

from conftest import (database, recv_until, recv_until_eof, run_shardgate, wait_for_blocked_clients,
                      s_client, tls_socket, write_config)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_slow_reader_keeps_proxy_memory_bounded(proxied):
    """100 replies of 1 MB requested and not read: shardgate must stop reading
    the shard instead of buffering 100 MB, then deliver every byte in order."""
    sg, backend = proxied
    value = os.urandom(1 << 20)
    backend.client().set("big", value)
    sock = tls_socket(sg.port(), sg.ca, timeout=20)
    sock.sendall(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * 100)
    before = rss_kib(sg.proc.pid)
    time.sleep(1.5)  # long enough for an unbounded proxy to swallow it all
    grown = rss_kib(sg.proc.pid) - before
    assert grown < 24 * 1024, f"shardgate grew {grown} KiB while its client did not read"

    expected = (b"$1048576\r\n" + value + b"\r\n") * 100
    got = bytearray()
    deadline = time.monotonic() + 30
    while len(got) < len(expected) and time.monotonic() < deadline:
        chunk = sock.recv(1 << 20)
        assert chunk, "connection closed early"
        got += chunk
    sock.close()
    assert bytes(got) == expected


def test_half_close_still_gets_replies(redis_server, shardgate):
    backend = redis_server()
    sg = shardgate([database("plain", 0, backend.address, tls=False)])
    sock = socket.create_connection(("127.0.0.1", sg.port()), timeout=5)
    sock.sendall(b"SET hc 1\r\nGET hc\r\n")
    sock.shutdown(socket.SHUT_WR)
    data, closed = recv_until_eof(sock, timeout=5)
    sock.close()
    assert data == b"+OK\r\n$1\r\n1\r\n"
    assert closed


def test_shard_last_error_before_hangup_reaches_client(redis_server, shardgate):
    backend = redis_server("--maxclients", "1")
    holder = backend.client(single_connection_client=True)
    deadline = time.monotonic() + 5
    while True:  # the fixture's readiness probe may still hold the slot for a moment
        try:
            holder.ping()  # takes the one client slot
            break
        except Exception:  # noqa: BLE001
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    sg = shardgate([database("db1", 0, backend.address)])
    sock = tls_socket(sg.port(), sg.ca)
    sock.sendall(b"PING\r\n")
    data, closed = recv_until_eof(sock, timeout=5)
    sock.close()
    holder.close()
    # Exactly what a direct connection shows: the shard's line, then the close.
    # The line answered the PING, so no "-ERR shard ... closed" follows it.
    assert data == b"-ERR max number of clients reached\r\n", data
    assert closed


def test_request_in_flight_completes_during_sigterm_drain(redis_server, shardgate):
    backend = redis_server()
    sg = shardgate([database("db1", 0, backend.address)], drain_timeout_ms=5000)
    sock = tls_socket(sg.port(), sg.ca, timeout=10)
    sock.sendall(b"BLPOP nothing-here 1\r\n")
    wait_for_blocked_clients(backend.client())  # BLPOP is blocked in redis-server
    started = time.monotonic()
    sg.proc.send_signal(signal.SIGTERM)
    data, closed = recv_until_eof(sock, timeout=8)
    sock.close()
    assert data == b"*-1\r\n", "the blocked request's reply must arrive before the drain closes it"
    assert closed
    assert sg.proc.wait(timeout=8) == 0
    assert time.monotonic() - started < 5, "an idle connection should not wait for the full drain time"


def test_several_workers_share_the_port(redis_server, shardgate):
    backend = redis_server()
    sg = shardgate([database("db1", 0, backend.address)], workers=3)
    threads = len(os.listdir(f"/proc/{sg.proc.pid}/task"))
    assert threads >= 4, f"3 workers + the control thread expected, found {threads} threads"
    errors: list[str] = []

    def client(n: int) -> None:
        try:
            r = sg.client(single_connection_client=True)
            for i in range(20):
                assert r.set(f"w{n}:{i}", i) is True
                assert r.get(f"w{n}:{i}") == str(i).encode()
            r.close()
        except Exception as e:  # noqa: BLE001 — collected and asserted below
            errors.append(repr(e))

    workers = [threading.Thread(target=client, args=(n,)) for n in range(30)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=30)
    assert not errors, errors[:3]
    assert backend.client().dbsize() == 600


def test_tls1_0_client_served_when_min_version_is_1_0(redis_server, shardgate):
    backend = redis_server()
    sg = shardgate([database("db1", 0, backend.address)], tls={"min_version": "1.0"})
    rc, out = s_client(sg.port(), "-tls1", "-cipher", "DEFAULT:@SECLEVEL=0")
    assert "+PONG" in out, out
    assert "TLSv1" in out and "TLSv1.2" not in out.split("Protocol")[1][:20], out


def test_client_certificate_keys_without_client_auth_are_refused_by_name(tmp_path):
    for extra, key in [({"client_ca": "ca.pem"}, "databases[0].client_ca"),
                       ({"client_crl": "crl.pem"}, "databases[0].client_crl"),
                       ({"client_allow": ["cn:x"]}, "databases[0].client_allow")]:
        db = database("db1", 0, "127.0.0.1:7001")
        db.update(extra)
        cfg = write_config(tmp_path, [db])
        result = run_shardgate(["--config", cfg, "--check-config"])
        assert result.returncode != 0
        assert key in result.stderr, result.stderr
