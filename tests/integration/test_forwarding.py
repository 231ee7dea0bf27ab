"""One shard: after TLS, bytes flow both ways and every command behaves as
against redis-server itself."""
from __future__ import annotations

import os
import subprocess
import threading
import time

import redis

from conftest import database, recv_until, tls_socket, wait_for_blocked_clients


def redis_cli(port: int, cacert, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["redis-cli", "--tls", "--cacert", str(cacert),
                           "-h", "127.0.0.1", "-p", str(port), *command],
                          capture_output=True, text=True, timeout=10)


def test_redis_cli_tls_set_get_verifies_self_signed_cert(proxied, tmp_path):
    sg, backend = proxied
    assert sg.ca.is_file(), "self-signed proxy_cert.pem was not written to cert_dir"
    assert (sg.cert_dir / "proxy_key.pem").is_file()
    assert (sg.cert_dir / "proxy_key.pem").stat().st_mode & 0o077 == 0, "key must be 0600"

    set_ = redis_cli(sg.port(), sg.ca, "SET", "greeting", "hello")
    assert set_.returncode == 0 and set_.stdout.strip() == "OK", set_.stdout + set_.stderr
    get = redis_cli(sg.port(), sg.ca, "GET", "greeting")
    assert get.stdout.strip() == "hello", get.stdout + get.stderr
    assert backend.client().get("greeting") == b"hello"

    # The verification is real: a CA that did not sign the certificate is rejected.
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", "k.pem", "-out", "c.pem"],
                   cwd=other, check=True, capture_output=True, timeout=30)
    wrong = redis_cli(sg.port(), other / "c.pem", "GET", "greeting")
    assert "hello" not in wrong.stdout
    assert wrong.returncode != 0 or "rror" in wrong.stdout + wrong.stderr


def test_redis_py_pipeline_of_10000_commands_replies_in_order(proxied):
    sg, _ = proxied
    client = sg.client()
    pipe = client.pipeline(transaction=False)
    for i in range(5000):
        pipe.echo(f"message-{i}")
        pipe.incr("counter")
    replies = pipe.execute()
    assert len(replies) == 10000
    assert replies[0::2] == [f"message-{i}".encode() for i in range(5000)]
    assert replies[1::2] == list(range(1, 5001))


def test_10mb_value_round_trip(proxied):
    sg, backend = proxied
    value = os.urandom(10 * 1024 * 1024)
    client = sg.client(socket_timeout=30)
    assert client.set("big", value) is True
    assert client.strlen("big") == len(value)
    assert client.get("big") == value
    assert backend.client(socket_timeout=30).get("big") == value


def test_multi_exec(proxied):
    sg, _ = proxied
    client = sg.client()
    pipe = client.pipeline(transaction=True)
    pipe.set("tx-key", "1")
    pipe.incr("tx-key")
    pipe.get("tx-key")
    assert pipe.execute() == [True, 2, b"2"]

    # And raw: QUEUED replies, then EXEC's array.
    conn = tls_socket(sg.port(), sg.ca)
    conn.sendall(b"MULTI\r\nINCR tx-key\r\nINCR tx-key\r\nEXEC\r\n")
    reply = recv_until(conn, b":4\r\n")
    conn.close()
    assert reply == b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n:3\r\n:4\r\n"


def test_blpop_woken_by_push_from_another_client(proxied):
    sg, backend = proxied
    waiter = sg.client(socket_timeout=15)
    result: dict = {}

    def wait() -> None:
        start = time.monotonic()
        result["value"] = waiter.blpop("queue", timeout=10)
        result["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=wait)
    thread.start()
    wait_for_blocked_clients(backend.client())  # BLPOP blocks on the server first
    assert sg.client().rpush("queue", "job-1") == 1
    thread.join(timeout=15)
    assert not thread.is_alive()
    assert result["value"] == (b"queue", b"job-1")
    assert result["elapsed"] < 5


def test_subscribe_publish(proxied):
    sg, _ = proxied
    pubsub = sg.client().pubsub()
    pubsub.subscribe("news")
    confirmation = pubsub.get_message(timeout=5)
    assert confirmation and confirmation["type"] == "subscribe"

    assert sg.client().publish("news", "hello subscribers") == 1
    message = None
    deadline = time.monotonic() + 5
    while message is None and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=1)
    assert message is not None
    assert message["type"] == "message" and message["channel"] == b"news"
    assert message["data"] == b"hello subscribers"
    pubsub.close()


def test_hello_3_switches_to_resp3(proxied):
    sg, _ = proxied
    # redis-py 4.3 (Debian 12) has no RESP3 parser, so speak it on a raw socket.
    conn = tls_socket(sg.port(), sg.ca)
    conn.sendall(b"HELLO 3\r\n")
    reply = recv_until(conn, b"modules")
    assert reply.startswith(b"%"), reply  # a RESP3 map
    assert b"$5\r\nproto\r\n:3\r\n" in reply
    conn.sendall(b"HSET h f v\r\nHGETALL h\r\n")
    reply = recv_until(conn, b"$1\r\nv\r\n")
    conn.close()
    assert reply == b":1\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n"


def test_monitor_sees_a_command(proxied):
    sg, _ = proxied
    with sg.client().monitor() as monitor:
        sg.client().set("watched-key", "1")
        seen = []
        for _ in range(10):
            command = monitor.next_command()["command"]
            seen.append(command)
            if "watched-key" in command:
                break
    assert any("SET watched-key 1" in c for c in seen), seen


def test_client_setname_getname(proxied):
    sg, backend = proxied
    client = sg.client(single_connection_client=True)
    assert client.client_setname("through-shardgate") is True
    assert client.client_getname() == "through-shardgate"
    names = [c["name"] for c in backend.client().client_list()]
    assert "through-shardgate" in names


def test_auth_against_backend_with_requirepass(redis_server, shardgate):
    backend = redis_server("--requirepass", "s3cret")
    sg = shardgate([database("db1", 0, backend.address)])

    conn = tls_socket(sg.port(), sg.ca)
    conn.sendall(b"GET k\r\n")
    assert recv_until(conn, b"\r\n").startswith(b"-NOAUTH")
    conn.sendall(b"AUTH wrong\r\n")
    assert recv_until(conn, b"\r\n").startswith(b"-WRONGPASS")
    conn.sendall(b"AUTH s3cret\r\nPING\r\n")
    assert recv_until(conn, b"+PONG\r\n") == b"+OK\r\n+PONG\r\n"
    conn.close()

    client = sg.client(password="s3cret")
    assert client.set("k", "v") is True and client.get("k") == b"v"


def test_two_databases_tls_and_plaintext_listen_at_once(redis_server, shardgate):
    first, second = redis_server(), redis_server()
    sg = shardgate([database("secure", 0, first.address),
                    database("plain", 0, second.address, tls=False)])

    assert sg.client("secure").set("where", "first") is True
    plain = redis.Redis(host="127.0.0.1", port=sg.port("plain"), socket_timeout=10)
    assert plain.set("where", "second") is True

    assert first.client().get("where") == b"first"
    assert second.client().get("where") == b"second"
    assert sg.client("secure").get("where") == b"first"
    assert plain.get("where") == b"second"


def test_connection_keeps_working_across_many_reconnects_of_others(proxied):
    sg, _ = proxied
    steady = sg.client(single_connection_client=True)
    assert steady.set("steady", 0) is True
    for i in range(60):
        other = sg.client(single_connection_client=True)
        assert other.ping() is True
        other.close()
        if i % 10 == 0:
            assert steady.incr("steady") == i // 10 + 1
    assert steady.get("steady") == b"6"
    assert sg.proc.poll() is None


def test_shard_that_never_answers_the_connect_fails_the_client_promptly(shardgate):
    """A shard address that drops SYNs (here: a listening socket whose accept
    queue is full) would leave a forwarded client waiting for the kernel's
    connect retries, minutes. The client gets the shard-down error within the
    connect bound instead, on a plaintext and on a TLS endpoint."""
    import socket
    lst = socket.socket()
    filler = socket.socket()
    try:
        lst.bind(("127.0.0.1", 0))
        lst.listen(0)
        filler.connect(lst.getsockname())  # the one connection the queue holds
        address = f"127.0.0.1:{lst.getsockname()[1]}"
        sg = shardgate([database("tls", 0, address), database("plain", 0, address, tls=False)])
        for name, tls in (("tls", True), ("plain", False)):
            client = sg.client(name, socket_timeout=10) if tls else \
                redis.Redis(host="127.0.0.1", port=sg.port(name), socket_timeout=10)
            started = time.monotonic()
            try:
                client.ping()
                raise AssertionError(f"{name}: PING answered by a shard that never accepted")
            except redis.ResponseError as err:
                assert f"shard {address} unavailable: connect timed out" in str(err), (name, err)
            finally:
                client.close()
            elapsed = time.monotonic() - started
            assert 1.5 <= elapsed < 6, f"{name}: told after {elapsed:.1f} s"
        assert f"shard {address} unavailable: connect timed out" in sg.log()
    finally:
        filler.close()
        lst.close()
