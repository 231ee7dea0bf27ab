"""`multiplex: true` on a one-shard database: clients share a few pipelined
shard connections instead of one each, and still see exactly what one
redis-server would answer them (the lever for per-request CPU and the
10,000-connection figure, documented in docs/routing.md "Multiplexing one shard").
"""
from __future__ import annotations

import threading
import time

import pytest
import redis

from conftest import database, wait_for_blocked_clients
from sharding_env import RespClient
from test_differential import run_differential


def shard_connections(backend) -> int:
    """Client connections redis-server holds, not counting the one asking."""
    with backend.client() as r:
        return len(r.client_list()) - 1


def start_one_shard(redis_server, shardgate, multiplex: bool | None, workers: int = 1):
    backend = redis_server()
    db = database("db1", 0, backend.address)
    if multiplex is not None:
        db["multiplex"] = multiplex
    return shardgate([db], workers=workers), backend


@pytest.mark.parametrize("multiplex", [False, True])
def test_shard_connections_per_client_or_shared(redis_server, shardgate, multiplex):
    sg, backend = start_one_shard(redis_server, shardgate, multiplex)
    base = shard_connections(backend)
    clients = [sg.client() for _ in range(20)]
    try:
        for i, c in enumerate(clients):
            assert c.set(f"k{i}", i) is True
        for i, c in enumerate(clients):
            assert c.get(f"k{i}") == str(i).encode()
        held = shard_connections(backend) - base
        if multiplex:
            # One shared link for the one worker; the 20 clients add nothing.
            assert held <= 1, f"multiplex: 20 clients hold {held} shard connections"
        else:
            assert held == 20, f"plain forwarding: 20 clients hold {held} shard connections"
    finally:
        for c in clients:
            c.close()
    if multiplex:
        assert "multiplexed" in sg.log(), sg.log()


def test_default_is_plain_forwarding_and_log_says_which(redis_server, shardgate):
    sg, backend = start_one_shard(redis_server, shardgate, None)
    with sg.client() as c:
        assert c.ping()
    assert "multiplexed" not in sg.log()
    assert f"-> shard {backend.address}," in sg.log(), sg.log()


def test_random_commands_reply_as_one_redis_server(redis_server, shardgate):
    sg, _ = start_one_shard(redis_server, shardgate, True, workers=2)
    reference = redis_server()
    with RespClient.tls(sg.port(), sg.ca, timeout=30) as target, \
            RespClient.plain(reference.port, timeout=30) as ref:
        errors = run_differential(target, ref, count=10000)
        assert errors > 50, f"only {errors} error replies: the mix proves too little"
        assert sorted(target.call("KEYS", "*")) == sorted(ref.call("KEYS", "*"))


def test_concurrent_pipelines_each_get_their_own_replies(redis_server, shardgate):
    """Eight clients pipelining on one shared shard link: every reply must come
    back to the client that asked, in its order."""
    sg, backend = start_one_shard(redis_server, shardgate, True)
    rounds, depth = 20, 200
    failures: list[str] = []

    def run(n: int) -> None:
        try:
            with sg.client() as c:
                for r in range(rounds):
                    p = c.pipeline(transaction=False)
                    for i in range(depth):
                        p.incr(f"counter:{n}")
                        p.get(f"counter:{n}")
                    replies = p.execute()
                    base = r * depth
                    want = []
                    for i in range(depth):
                        want += [base + i + 1, str(base + i + 1).encode()]
                    if replies != want:
                        failures.append(f"client {n} round {r}: first mismatch "
                                        f"{next(x for x in zip(replies, want) if x[0] != x[1])}")
                        return
        except Exception as e:  # noqa: BLE001 - reported below, not swallowed
            failures.append(f"client {n}: {e!r}")

    threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert not failures, failures
    with backend.client() as r:
        assert [int(r.get(f"counter:{n}")) for n in range(8)] == [rounds * depth] * 8


def test_stateful_commands_work_multiplexed(redis_server, shardgate):
    sg, backend = start_one_shard(redis_server, shardgate, True)
    with sg.client() as a, sg.client() as b:
        # MULTI/EXEC and WATCH.
        p = a.pipeline(transaction=True)
        p.set("m", 1).incr("m").get("m")
        assert p.execute() == [True, 2, b"2"]
        with a.pipeline(transaction=True) as w:
            w.watch("m")
            b.set("m", 100)  # another client changes the watched key
            w.multi()
            w.set("m", 5)
            with pytest.raises(redis.WatchError):
                w.execute()
        assert a.get("m") == b"100"

        # A blocking pop on one client, released by a push from another.
        got: list = []
        t = threading.Thread(target=lambda: got.append(a.blpop(["q"], timeout=10)))
        t.start()
        with backend.client() as r:
            wait_for_blocked_clients(r)
        # The shared link is not held by the blocked client: b is answered
        # while a is still blocked.
        assert b.ping()
        assert t.is_alive(), "BLPOP returned before anything was pushed"
        assert b.rpush("q", "x") == 1
        t.join(timeout=10)
        assert got == [(b"q", b"x")]

        # SELECT keeps its database for this client only.
        with sg.client(db=1) as c1:
            c1.set("only-in-1", "y")
            assert c1.get("only-in-1") == b"y"
        assert a.get("only-in-1") is None

        # Pub/sub.
        ps = a.pubsub()
        ps.subscribe("news")
        deadline = time.monotonic() + 5
        msg = ps.get_message(timeout=1)
        assert msg and msg["type"] == "subscribe", msg
        assert b.publish("news", "hello") == 1
        while time.monotonic() < deadline:
            msg = ps.get_message(timeout=1)
            if msg and msg["type"] == "message":
                break
        assert msg and msg["data"] == b"hello", msg
        ps.close()


def test_refused_commands_name_multiplex_not_several_shards(redis_server, shardgate):
    sg, _ = start_one_shard(redis_server, shardgate, True)
    with sg.client() as c:
        for argv, what in ((["SWAPDB", "0", "1"], "swapdb"), (["CLIENT", "KILL", "ID", "1"],
                                                               "CLIENT kill")):
            with pytest.raises(redis.ResponseError) as err:
                c.execute_command(*argv)
            text = str(err.value)
            assert f"{what} is not supported on a multiplexed database (multiplex: true)" in text
            assert "several shards" not in text


def test_shard_with_requirepass_needs_shard_password(redis_server, shardgate):
    """The shared shard connections carry no client's AUTH: without
    shard_password the log says which key to set; with it clients need none."""
    backend = redis_server("--requirepass", "s3cret")
    db = database("db1", 0, backend.address)
    db["multiplex"] = True
    sg = shardgate([db])
    assert "the shard has a password: set this database's shard_password" in sg.log(), sg.log()
    with sg.client() as c, pytest.raises(redis.exceptions.AuthenticationError):
        c.get("k")

    db2 = database("db2", 0, backend.address)
    db2["shard_password"] = "s3cret"
    sg2 = shardgate([db2])
    with sg2.client() as c:
        assert c.set("k", "v") is True and c.get("k") == b"v"
    assert "no shard answered COMMAND" not in sg2.log(), sg2.log()
