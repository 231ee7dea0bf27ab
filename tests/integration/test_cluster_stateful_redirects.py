"""A client in a stateful mode on a Redis Cluster database never sees the
cluster move under it (docs/routing.md, "Redirects: what is retried").

shardgate with `cluster: {seeds}` in front of a real six-node cluster
(cluster_env: three masters, one replica each), spoken to in raw RESP so every
reply is checked as bytes; where a thing happens is checked on the nodes
themselves (INFO's blocked_clients, PUBSUB SHARDNUMSUB).

- BLPOP blocked on a master whose slot is resharded away (Redis 7 unblocks it
  with -MOVED): shardgate blocks it again on the new owner (blocked_clients
  there), and an LPUSH through shardgate wakes it with the value; the client
  never sees MOVED. The same across a CLUSTER FAILOVER (the old master answers
  -UNBLOCKED and closes the connection). A BLPOP whose master is killed is
  not resent (it may have popped): the client gets the error, and a value
  pushed after the failover is not taken by a ghost.
- SSUBSCRIBE on a shard channel whose slot is resharded away (Redis 7 sends
  the subscriber a `sunsubscribe`): the client never sees it, the channel is
  subscribed again on the new owner (PUBSUB SHARDNUMSUB there), and SPUBLISH
  through shardgate or straight to the new owner reaches the client. The
  same after the channel's master is killed and its replica took over.
- A RESP3 client (whose commands all go on connections of its own): a GET
  and an SSUBSCRIBE both follow a reshard; its MGET, EXISTS and MSET over
  several slots follow ASK, TRYAGAIN and MOVED slot by slot (a command
  sent while one waits out a TRYAGAIN runs after it), and so do
  multi-key commands on one slot and one pipelined before QUIT.
- MULTI/EXEC whose slot is resharded between the queued commands and EXEC:
  the replies are the transaction's, as if nothing moved, and the values are
  on the new owner; with WATCH, EXEC answers null (aborted, the client
  retries) and nothing was written; a retry then commits. No MOVED either way.
"""
from __future__ import annotations

import time

import pytest

from cluster_env import ClusterEnv, ClusterNode, start_cluster
from conftest import wait_for_blocked_clients
from sharding_env import Err, RespClient, keyslot

REPLY_TIMEOUT_S = 30.0
MOVE_TIMEOUT_S = 30.0


def cluster_db(seeds: list[str]) -> dict:
    return {"name": "big", "listen": "127.0.0.1:0", "tls": False,
            "cluster": {"seeds": seeds, "refresh_interval_ms": 60000}}


@pytest.fixture
def env(procs, tmp_path):
    return start_cluster(procs, tmp_path)


@pytest.fixture
def sg(env, shardgate):
    return shardgate([cluster_db([env.masters()[0].address])])


def raw(sg) -> RespClient:
    return RespClient.plain(sg.port("big"), timeout=REPLY_TIMEOUT_S)


def key_in_slot(slot: int, stem: str) -> str:
    """A key that hashes to `slot` (through a {tag})."""
    for n in range(1_000_000):
        tag = "{%s%d}" % (stem, n)
        if keyslot(tag) == slot:
            return tag + "k"
    raise AssertionError(f"no key found for slot {slot}")


def first_slot_of(env: ClusterEnv, master: ClusterNode) -> int:
    """The slot `redis-cli --cluster reshard ... --cluster-slots 1` moves
    first from `master`: its lowest."""
    return env.slot_map().index(master.port)


def blocked_on(node: ClusterNode) -> int:
    with node.client() as direct:
        return direct.info("clients")["blocked_clients"]


def wait_blocked(node: ClusterNode, what: str, count: int = 1,
                 timeout: float = MOVE_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        seen = blocked_on(node)
        if seen >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: {seen} client(s) blocked on {node} after {timeout} s, "
                         f"expected {count}")


def no_reply_yet(conn: RespClient, what: str) -> None:
    conn.sock.settimeout(0.05)
    try:
        data = conn.sock.recv(1 << 16, 2)  # MSG_PEEK
        assert not data, f"{what}: a reply arrived while it should still be blocked: {data!r}"
    except (TimeoutError, BlockingIOError):
        pass
    finally:
        conn.sock.settimeout(conn.timeout)


def assert_no_redirect(reply, what: str) -> None:
    if isinstance(reply, Err):
        assert not str(reply).startswith(("-MOVED", "-ASK")), f"{what}: the client saw {reply}"


# ---------------------------------------------------------------- blocking


def test_blpop_follows_its_slot_when_it_is_resharded(env, sg):
    source, target = env.masters()[0], env.masters()[1]
    slot = first_slot_of(env, source)
    key = key_in_slot(slot, "bq")
    with raw(sg) as waiter, raw(sg) as pusher:
        waiter.send("BLPOP", key, "0")
        wait_for_blocked_clients(source.client(), 1)
        no_reply_yet(waiter, "BLPOP before the reshard")
        env.reshard(1, source, target)
        assert env.slot_owner(slot) is target
        # Redis 7 unblocks it on the old owner (-MOVED); shardgate blocks it
        # again on the new one.
        wait_blocked(target, "BLPOP after the reshard")
        assert blocked_on(source) == 0
        no_reply_yet(waiter, "BLPOP after the reshard")
        assert pusher.call("LPUSH", key, "job1") == 1
        reply = waiter.read_reply("BLPOP")
        assert_no_redirect(reply, "BLPOP")
        assert reply == [key.encode(), b"job1"]
        with target.client() as direct:
            assert direct.llen(key) == 0
        assert blocked_on(target) == 0
        # The connection carries on, routing by the new owner.
        assert waiter.call("RPUSH", key, "x") == 1
        assert waiter.call("BRPOP", key, "1") == [key.encode(), b"x"]


def test_blocking_commands_of_each_kind_follow_a_reshard(env, sg):
    """BRPOP, BLMOVE (both keys of one slot), BZPOPMIN and XREAD BLOCK."""
    source, target = env.masters()[0], env.masters()[1]
    slot = first_slot_of(env, source)
    tag = key_in_slot(slot, "kinds")[:-1]
    waiters = [raw(sg) for _ in range(4)]
    try:
        waiters[0].send("BRPOP", f"{tag}l", "0")
        waiters[1].send("BLMOVE", f"{tag}m", f"{tag}dst", "LEFT", "RIGHT", "0")
        waiters[2].send("BZPOPMIN", f"{tag}z", "0")
        waiters[3].send("XREAD", "BLOCK", "0", "STREAMS", f"{tag}s", "$")
        wait_blocked(source, "before the reshard", 4)
        env.reshard(1, source, target)
        wait_blocked(target, "after the reshard", 4)
        with raw(sg) as pusher:
            assert pusher.call("RPUSH", f"{tag}l", "a") == 1
            assert pusher.call("RPUSH", f"{tag}m", "b") == 1
            assert pusher.call("ZADD", f"{tag}z", "1", "c") == 1
            xid = pusher.call("XADD", f"{tag}s", "*", "f", "v")
        replies = [w.read_reply("blocked command") for w in waiters]
        for r in replies:
            assert_no_redirect(r, "a blocking command")
        assert replies[0] == [f"{tag}l".encode(), b"a"]
        assert replies[1] == b"b"
        assert replies[2] == [f"{tag}z".encode(), b"c", b"1"]
        assert replies[3] == [[f"{tag}s".encode(), [[xid, [b"f", b"v"]]]]]
        with target.client() as direct:
            assert direct.lrange(f"{tag}dst", 0, -1) == [b"b"]
    finally:
        for w in waiters:
            w.close()


def test_blpop_follows_a_manual_failover(env, sg):
    master = env.masters()[0]
    replica = env.replicas(master)[0]
    slot = first_slot_of(env, master)
    key = key_in_slot(slot, "fq")
    with raw(sg) as waiter, raw(sg) as pusher:
        waiter.send("BLPOP", key, "0")
        wait_for_blocked_clients(master.client(), 1)
        env.failover(replica)
        assert env.slot_owner(slot) is replica
        # The old master, now a replica, answered -UNBLOCKED and closed the
        # connection; shardgate blocks the command again on the new master.
        wait_blocked(replica, "BLPOP after the failover")
        no_reply_yet(waiter, "BLPOP after the failover")
        assert pusher.call("LPUSH", key, "job2") == 1
        reply = waiter.read_reply("BLPOP")
        assert_no_redirect(reply, "BLPOP")
        assert reply == [key.encode(), b"job2"]


def test_blpop_on_a_killed_master_is_answered_with_the_error_not_resent(env, sg):
    master = env.masters()[0]
    slot = first_slot_of(env, master)
    key = key_in_slot(slot, "dq")
    with raw(sg) as waiter, raw(sg) as pusher:
        waiter.send("BLPOP", key, "0")
        wait_for_blocked_clients(master.client(), 1)
        dead, promoted = env.kill_master(0)
        reply = waiter.read_reply("BLPOP on a killed master")
        assert isinstance(reply, Err) and str(reply).startswith(f"-ERR shard {dead.address} unavailable"), \
            f"BLPOP on a killed master: {reply!r}"
        assert blocked_on(promoted) == 0
        # Once the replica serves the slot, a push stays in the list: nobody
        # was blocked again in the client's name.
        deadline = time.monotonic() + MOVE_TIMEOUT_S
        while True:
            r = pusher.call("LPUSH", key, "job")
            if r == 1:
                break
            assert isinstance(r, Err) and time.monotonic() < deadline, f"LPUSH after the failover: {r!r}"
            time.sleep(0.1)
        with promoted.client() as direct:
            assert direct.lrange(key, 0, -1) == [b"job"]


# ---------------------------------------------------------------- shard channels


def shard_subscribers(node: ClusterNode, channel: str) -> int:
    with node.client() as direct:
        reply = direct.execute_command("PUBSUB", "SHARDNUMSUB", channel)
    return int(reply[1])


def wait_shard_subscribed(node: ClusterNode, channel: str, what: str,
                          timeout: float = MOVE_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        try:
            seen = shard_subscribers(node, channel)
        except Exception as e:  # noqa: BLE001 - a node still starting; polled again
            seen = f"{type(e).__name__}: {e}"
        if seen == 1:
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: SHARDNUMSUB {channel} on {node} is {seen} after {timeout} s")


def expect_smessage(sub: RespClient, channel: str, payload: str, what: str) -> None:
    frame = sub.read_reply(what)
    assert frame == [b"smessage", channel.encode(), payload.encode()], \
        f"{what}: the subscriber got {frame!r}"


def test_ssubscribe_follows_its_slot_when_it_is_resharded(env, sg):
    source, target = env.masters()[0], env.masters()[1]
    slot = first_slot_of(env, source)
    channel = key_in_slot(slot, "sc")
    with raw(sg) as sub, raw(sg) as pub:
        sub.send("SSUBSCRIBE", channel)
        assert sub.read_reply("SSUBSCRIBE") == [b"ssubscribe", channel.encode(), 1]
        assert shard_subscribers(source, channel) == 1
        assert pub.call("SPUBLISH", channel, "before") == 1
        expect_smessage(sub, channel, "before", "SPUBLISH before the reshard")
        env.reshard(1, source, target)
        # Redis 7 told the old owner's subscriber "sunsubscribe"; shardgate
        # subscribed again on the new owner instead.
        wait_shard_subscribed(target, channel, "after the reshard")
        assert shard_subscribers(source, channel) == 0
        no_reply_yet(sub, "after the reshard (no sunsubscribe)")
        assert pub.call("SPUBLISH", channel, "through") == 1
        expect_smessage(sub, channel, "through", "SPUBLISH through shardgate")
        with target.client() as direct:
            assert direct.execute_command("SPUBLISH", channel, "direct") == 1
        expect_smessage(sub, channel, "direct", "SPUBLISH on the new owner")
        # Leaving works where it lives now.
        sub.send("SUNSUBSCRIBE", channel)
        assert sub.read_reply("SUNSUBSCRIBE") == [b"sunsubscribe", channel.encode(), 0]
        assert shard_subscribers(target, channel) == 0


def test_ssubscribe_follows_a_killed_master_to_its_replica(env, sg):
    master = env.masters()[0]
    slot = first_slot_of(env, master)
    channel = key_in_slot(slot, "kc")
    with raw(sg) as sub, raw(sg) as pub:
        sub.send("SSUBSCRIBE", channel)
        assert sub.read_reply("SSUBSCRIBE") == [b"ssubscribe", channel.encode(), 1]
        dead, promoted = env.kill_master(0)
        assert dead is master
        # Messages published during the gap may be lost (documented); once
        # the replica serves the slot, the subscription is there.
        wait_shard_subscribed(promoted, channel, "after the failover")
        no_reply_yet(sub, "after the failover (no error, no sunsubscribe)")
        assert pub.call("SPUBLISH", channel, "after") == 1
        expect_smessage(sub, channel, "after", "SPUBLISH through shardgate")
        with promoted.client() as direct:
            assert direct.execute_command("SPUBLISH", channel, "direct") == 1
        expect_smessage(sub, channel, "direct", "SPUBLISH on the new master")


# ---------------------------------------------------------------- transactions


def test_multi_exec_replayed_on_the_new_owner_after_a_reshard(env, sg):
    source, target = env.masters()[0], env.masters()[1]
    slot = first_slot_of(env, source)
    tag = key_in_slot(slot, "tx")[:-1]
    with raw(sg) as c:
        assert c.call("SET", f"{tag}n", "10") == "OK"
        assert c.call("MULTI") == "OK"
        assert c.call("SET", f"{tag}a", "1") == "QUEUED"
        assert c.call("INCR", f"{tag}n") == "QUEUED"
        assert c.call("RPUSH", f"{tag}l", "x", "y") == "QUEUED"
        assert c.call("PING") == "QUEUED"
        assert c.call("GET", f"{tag}a") == "QUEUED"
        env.reshard(1, source, target)
        assert env.slot_owner(slot) is target
        reply = c.call("EXEC")
        assert_no_redirect(reply, "EXEC")
        assert reply == ["OK", 11, 2, "PONG", b"1"]
        with target.client() as direct:
            assert direct.get(f"{tag}a") == b"1"
            assert direct.get(f"{tag}n") == b"11"
            assert direct.lrange(f"{tag}l", 0, -1) == [b"x", b"y"]
        with source.client() as direct:
            assert direct.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
        # The connection carries on; a second transaction goes straight there.
        assert c.call("MULTI") == "OK"
        assert c.call("INCR", f"{tag}n") == "QUEUED"
        assert c.call("EXEC") == [12]


def test_watch_across_a_reshard_aborts_exec_with_null(env, sg):
    source, target = env.masters()[0], env.masters()[1]
    slot = first_slot_of(env, source)
    tag = key_in_slot(slot, "wt")[:-1]
    with raw(sg) as c:
        assert c.call("SET", f"{tag}w", "0") == "OK"
        assert c.call("WATCH", f"{tag}w") == "OK"
        assert c.call("MULTI") == "OK"
        assert c.call("SET", f"{tag}w", "1") == "QUEUED"
        env.reshard(1, source, target)
        reply = c.call("EXEC")
        assert_no_redirect(reply, "EXEC under WATCH")
        assert reply is None, f"EXEC under WATCH across a reshard: {reply!r}"
        with target.client() as direct:
            assert direct.get(f"{tag}w") == b"0"
        # The client retries, as after any aborted WATCH: now it commits.
        assert c.call("WATCH", f"{tag}w") == "OK"
        assert c.call("MULTI") == "OK"
        assert c.call("SET", f"{tag}w", "1") == "QUEUED"
        assert c.call("EXEC") == ["OK"]
        with target.client() as direct:
            assert direct.get(f"{tag}w") == b"1"


# ---------------------------------------------------------------- RESP3


def test_resp3_client_follows_a_reshard_for_commands_and_shard_channels(env, sg):
    source, target = env.masters()[0], env.masters()[1]
    slot = first_slot_of(env, source)
    key = key_in_slot(slot, "r3")
    channel = key + "ch"
    with raw(sg) as c, raw(sg) as pub:
        hello = c.call("HELLO", "3")
        assert isinstance(hello, list) and b"proto" in hello, f"HELLO 3: {hello!r}"
        assert c.call("SET", key, "v1") == "OK"
        c.send("SSUBSCRIBE", channel)
        assert c.read_reply("SSUBSCRIBE") == [b"ssubscribe", channel.encode(), 1]
        env.reshard(1, source, target)
        wait_shard_subscribed(target, channel, "after the reshard")
        reply = c.call("GET", key)
        assert_no_redirect(reply, "GET after the reshard")
        assert reply == b"v1"
        assert c.call("SET", key, "v2") == "OK"
        with target.client() as direct:
            assert direct.get(key) == b"v2"
        assert pub.call("SPUBLISH", channel, "m") == 1
        start = c._pos
        expect_smessage(c, channel, "m", "SPUBLISH to a RESP3 subscriber")
        # A push, as the node spoke RESP3 to shardgate's new connection too.
        assert bytes(c._buf[start:start + 1]) == b">", bytes(c._buf[start:start + 40])


def test_resp3_client_split_commands_follow_ask_tryagain_and_moved(env, sg):
    """A RESP3 client's MGET/EXISTS/MSET of keys on several slots: each slot's
    part goes on the client's own connection, and a node's ASK, TRYAGAIN or
    MOVED for one part is followed there; the client gets the merged reply."""
    here = ["{r3split}a", "{r3split}b"]
    slot = keyslot(here[0])
    source = env.slot_owner(slot)
    target = next(m for m in env.masters() if m is not source)
    other_master = next(m for m in env.masters() if m is not source and m is not target)
    elsewhere = key_in_slot(env.slot_map().index(other_master.port), "r3other")
    with raw(sg) as c:
        assert isinstance(c.call("HELLO", "3"), list)
        assert c.call("MSET", here[0], "A", here[1], "B", elsewhere, "C") == "OK"
        assert target.command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id) in (b"OK", "OK", True)
        assert source.command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id) in (b"OK", "OK", True)
        source.command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", here[0])

        # here[0] is on the importing node now: the source answers its part ASK.
        reply = c.call("MGET", here[0], elsewhere)
        assert_no_redirect(reply, "MGET during the migration")
        assert reply == [b"A", b"C"]
        assert c.call("EXISTS", here[0], elsewhere) == 2

        # Both keys of the slot, one moved and one not: the source says
        # TRYAGAIN, retried until the slot's migration is over. A SET sent
        # meanwhile waits its turn: run first, on the source, it would be
        # migrated with here[1] and the MGET would read "B2".
        c.send("MGET", here[0], elsewhere, here[1])
        time.sleep(0.3)
        c.send("SET", here[1], "B2")
        time.sleep(0.2)
        no_reply_yet(c, "MGET while its slot is half migrated")
        source.command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", here[1])
        for node in env.masters():
            node.command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
        reply = c.read_reply("MGET after the migration")
        assert_no_redirect(reply, "MGET retried after TRYAGAIN")
        assert reply == [b"A", b"C", b"B"]
        assert c.read_reply("the SET pipelined behind it") == "OK"

        # The slot is the target's: MOVED, followed, for a write too.
        assert c.call("MSET", here[0], "A2", elsewhere, "C2") == "OK"
        assert c.call("MGET", elsewhere, here[0], here[1]) == [b"C2", b"A2", b"B2"]
    with target.client() as direct:
        assert direct.get(here[0]) == b"A2"


def test_resp3_client_multi_key_command_on_one_moved_slot_and_before_quit(env, sg):
    """A RESP3 client's multi-key command whose keys share one slot (sent
    whole, not split) follows a MOVED too, and so does one pipelined before
    QUIT: it is answered, then QUIT's +OK."""
    keys = ["{r3one}a", "{r3one}b"]
    slot = keyslot(keys[0])
    source = env.slot_owner(slot)
    target = next(m for m in env.masters() if m is not source)
    with raw(sg) as c, raw(sg) as quitter:
        for conn in (c, quitter):
            assert isinstance(conn.call("HELLO", "3"), list)
        assert c.call("MSET", keys[0], "A", keys[1], "B") == "OK"
        assert c.call("MGET", *keys) == [b"A", b"B"]
        # The slot moved whole, keys and all, behind shardgate's back.
        assert target.command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id) in (b"OK", "OK", True)
        assert source.command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id) in (b"OK", "OK", True)
        source.command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        for node in env.masters():
            node.command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
        quitter.send("MGET", *keys)
        quitter.send("QUIT")
        reply = quitter.read_reply("MGET pipelined before QUIT")
        assert_no_redirect(reply, "MGET before QUIT")
        assert reply == [b"A", b"B"]
        assert quitter.read_reply("QUIT") == "OK"
        reply = c.call("MGET", *keys)
        assert_no_redirect(reply, "MGET of one moved slot")
        assert reply == [b"A", b"B"]
        assert c.call("DEL", *keys) == 2
    with target.client() as direct:
        assert direct.exists(*keys) == 0
