"""Routed databases at their edges: commands that could stall a shared shard
connection, connection state held on a client's own shard connection that is
lost, shards that stop answering or close idle connections, and clients that
do not read their replies."""
from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from sharding_env import Err, start_sharded

SHARDS = 3


@pytest.fixture
def db(procs, redis_server, shardgate):
    return start_sharded(redis_server, shardgate)


def test_wait_does_not_stall_other_clients_on_the_shard(db):
    key = db.key_on(0, "after-wait")
    with db.raw() as waiter, db.raw() as other:
        waiter.send("WAIT", "1", "0")  # no replica will ever acknowledge: blocks forever
        # Proven blocked on a shard (redis counts WAIT in blocked_clients),
        # not hoped to be after a sleep.
        deadline = time.monotonic() + 5
        while sum(s.client().info("clients")["blocked_clients"] for s in db.shards) < 1:
            assert time.monotonic() < deadline, "WAIT never blocked on any shard"
            time.sleep(0.01)
        start = time.monotonic()
        assert other.call("SET", key, "v") == "OK"
        assert other.call("GET", key) == b"v"
        assert time.monotonic() - start < 1.0, "a WAIT of another client held the shard's link"


def test_refused_commands_inside_multi_abort_the_transaction(db):
    key = db.tag_on(0, "m") + "k"
    with db.raw() as c:
        assert c.call("SET", key, "before") == "OK"
        replies = c.pipeline([("MULTI",), ("SET", key, "during"), ("SWAPDB", "0", "1"),
                              ("EXEC",)])
        assert replies[0] == "OK" and replies[1] == "QUEUED", replies
        assert isinstance(replies[2], Err) and "swapdb" in replies[2].message.lower(), replies
        assert replies[3] == Err("EXECABORT Transaction discarded because of previous errors."), \
            replies
        assert c.call("GET", key) == b"before", "nothing of the aborted transaction ran"
        replies = c.pipeline([("MULTI",), ("SET", key, "x"), ("AUTH", "pw"), ("EXEC",)])
        assert isinstance(replies[2], Err), f"AUTH inside MULTI must not reach the shard: {replies}"
        assert replies[3].message.startswith("EXECABORT"), replies


def test_quit_while_subscribed_closes_the_connection(db):
    with db.raw() as c:
        c.send("SUBSCRIBE", db.key_on(1, "ch"))
        assert c.read_reply()[0] == b"subscribe"
        c.send("QUIT")
        assert c.read_reply() == "OK"
        c.sock.settimeout(5)
        assert c.sock.recv(1) == b"", "QUIT in pub/sub mode must close the connection"


def shard_client_ids(shard, command_name: str) -> list[str]:
    """IDs of the shard's connections whose last command was command_name."""
    ids = []
    for line in shard.client().execute_command("CLIENT", "LIST").decode().splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if fields.get("cmd") == command_name:
            ids.append(fields["id"])
    return ids


def test_a_lost_watch_makes_exec_fail_instead_of_committing(db):
    key = db.key_on(2, "watched")
    with db.raw() as watcher, db.raw() as other:
        assert watcher.call("SET", key, "orig") == "OK"
        assert watcher.call("WATCH", key) == "OK"
        shard = db.owner(key)
        ids = shard_client_ids(shard, "watch")
        assert ids, "the WATCH connection on the shard"
        for client_id in ids:
            shard.client().execute_command("CLIENT", "KILL", "ID", client_id)
        time.sleep(0.2)
        assert other.call("SET", key, "changed") == "OK"
        replies = watcher.pipeline([("MULTI",), ("SET", key, "mine"), ("EXEC",)])
        assert replies[-1] is None, (
            f"EXEC after the WATCH connection was lost must fail like a changed key: {replies}")
        assert other.call("GET", key) == b"changed"


def test_a_shard_closing_idle_connections_is_not_a_shard_down(db):
    key = db.key_on(1, "idle")
    db.shards[1].client().config_set("timeout", 1)
    with db.raw() as c:
        assert c.call("SET", key, "v") == "OK"
        for _ in range(3):
            time.sleep(1.6)  # the shard closes the idle link in between
            assert c.call("GET", key) == b"v"
    assert "unavailable" not in db.sg.log(), db.sg.log()[-2000:]


def test_a_frozen_shard_answers_with_an_error_after_shard_timeout(procs, redis_server, shardgate):
    frozen = start_sharded(redis_server, shardgate, limits={"shard_timeout_ms": 500})
    key = frozen.key_on(0, "frozen")
    other = frozen.key_on(1, "alive")
    with frozen.raw() as c:
        assert c.call("SET", key, "v") == "OK"
        os.kill(frozen.shards[0].proc.pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            reply = c.call("GET", key)
            took = time.monotonic() - start
            assert isinstance(reply, Err) and "no reply within 500 ms" in reply.message, reply
            assert took < 2.0, f"the error took {took:.2f} s"
            assert c.call("SET", other, "ok") == "OK", "the other shards carry on"
        finally:
            os.kill(frozen.shards[0].proc.pid, signal.SIGCONT)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            if c.call("GET", key) == b"v":
                break
            time.sleep(0.05)
        else:
            pytest.fail("the shard was not served again after SIGCONT")


def test_a_client_that_does_not_read_is_disconnected_at_max_client_output(
        procs, redis_server, shardgate):
    limited = start_sharded(redis_server, shardgate, limits={"max_client_output": 1048576})
    big = limited.key_on(0, "big")
    with limited.raw() as setter:
        assert setter.call("SET", big, "x" * 300_000) == "OK"
    with limited.raw() as hog, limited.raw() as polite:
        hog.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.send_raw(b"".join(hog.encode("GET", big) for _ in range(200)))  # 60 MB of replies
        deadline = time.monotonic() + 10
        while "max_client_output" not in limited.sg.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "max_client_output" in limited.sg.log(), "the proxy should drop the hog"
        assert polite.call("GET", big) == b"x" * 300_000, "other clients are served"


def test_a_shard_killed_under_pipelined_load_loses_no_reply(db):
    """Every request gets exactly one reply, in order, while a shard dies
    mid-pipeline: a value, or the shard's "unavailable" error; never silence."""
    victim = db.shards[1]
    keys = [db.key_on(i % SHARDS, f"load{i}") for i in range(300)]
    with db.raw(timeout=10) as c:
        for key in keys:
            c.send("SET", key, key)
        assert [c.read_reply() for _ in keys] == ["OK"] * len(keys)
        batches, errors = 20, 0
        for batch in range(batches):
            commands = [("GET", k) for k in keys] + [("MGET", *keys[:6])]
            c.send_raw(b"".join(c.encode(*cmd) for cmd in commands))
            if batch == 5:
                victim.proc.kill()  # while the batch is in flight
            replies = [c.read_reply(f"reply {i} of batch {batch}") for i in range(len(commands))]
            for key, reply in zip(keys, replies):
                if isinstance(reply, Err):
                    assert "unavailable" in reply.message and db.shard_index(key) == 1, reply
                    errors += 1
                else:
                    assert reply == key.encode(), f"{key}: got {reply!r}"
            mget = replies[-1]
            assert isinstance(mget, Err) or mget == [k.encode() for k in keys[:6]], mget
        assert errors > 0, "the killed shard's keys must have failed"
        assert c.call("GET", keys[0]) == keys[0].encode(), "shard 0 serves on the same connection"


def test_a_private_connection_left_idle_is_closed_and_reopened_when_needed(
        procs, redis_server, shardgate):
    idle = start_sharded(redis_server, shardgate, limits={"private_idle_ms": 300})
    queue = idle.key_on(1, "q")
    shard = idle.owner(queue)
    with idle.raw() as c:
        assert c.call("BLPOP", queue, "0.1") is None  # times out on the client's own link
        assert shard_client_ids(shard, "blpop"), "BLPOP ran on a connection of its own"
        deadline = time.monotonic() + 5
        while shard_client_ids(shard, "blpop") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not shard_client_ids(shard, "blpop"), "the idle private connection was not closed"
        assert c.call("RPUSH", queue, "job") == 1
        assert c.call("BLPOP", queue, "1") == [queue.encode(), b"job"], "a new one is opened"
        # A connection holding WATCH state is kept however long it idles.
        assert c.call("WATCH", queue) == "OK"
        time.sleep(1.0)
        assert shard_client_ids(shard, "watch"), "the WATCH connection must stay"
        assert c.pipeline([("MULTI",), ("RPUSH", queue, "x"), ("EXEC",)])[-1] == [1]
