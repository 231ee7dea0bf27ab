"""Stateful modes and whole-database commands over a Redis Cluster database.

shardgate with `cluster: {seeds}` in front of a real six-node cluster
(cluster_env: three masters, one replica each), spoken to in raw RESP
(sharding_env.RespClient) so every reply is checked as bytes. Where a thing
happens is checked on the cluster itself: the master that owns a slot is
asked directly (its keys, its blocked clients, its shard channels).

- MULTI/EXEC on keys of one slot ({tag}), on each master: the replies and the
  values on the owning master; over two slots refused as a node refuses it;
- WATCH: EXEC aborts (null) after another client wrote the watched key, runs
  when nobody did;
- BLPOP blocks on the owning master (INFO's blocked_clients there, and on no
  other master) and is woken by an LPUSH sent through shardgate;
- SELECT 1: refused as a cluster node refuses it (never accepted, then
  written into database 0);
- SUBSCRIBE/PSUBSCRIBE/PUBLISH through shardgate, and a PUBLISH on any node
  reaches a subscriber of the endpoint (the cluster bus spreads it);
- SSUBSCRIBE/SPUBLISH: the subscription lives on the master owning the shard
  channel's slot (PUBSUB SHARDNUMSUB there), SPUBLISH reaches it, and
  SUNSUBSCRIBE leaves every master (also two slots of one master); SSUBSCRIBE
  over two slots answered; shard channels counted and left apart
  from ordinary channels, as one redis-server does;
- SCAN over every master returns every key exactly once (stable cluster);
- DBSIZE, KEYS, FLUSHALL over every master;
- cluster-aware clients through the endpoint: `redis-cli -c` and redis-py's
  RedisCluster (pipeline, mset/mget_nonatomic, scan_iter), values checked on
  the owning masters.
"""
from __future__ import annotations

import subprocess

import pytest
from redis.cluster import RedisCluster

from cluster_env import ClusterEnv, ClusterNode, start_cluster
from conftest import wait_for_blocked_clients
from sharding_env import Err, RespClient, keyslot

REPLY_TIMEOUT_S = 10.0


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


def tag_on(env: ClusterEnv, master: ClusterNode, stem: str) -> str:
    """A {tag} whose slot `master` owns."""
    owners = env.slot_map()
    for n in range(100_000):
        tag = "{%s%d}" % (stem, n)
        if owners[keyslot(tag)] == master.port:
            return tag
    raise AssertionError(f"no tag found on {master}")


def owner_of(env: ClusterEnv, key: str) -> ClusterNode:
    return env.slot_owner(keyslot(key))


def no_reply_yet(conn: RespClient, what: str) -> None:
    """Nothing has arrived for `conn` (a blocked command has not answered)."""
    conn.sock.settimeout(0.05)
    try:
        data = conn.sock.recv(1 << 16, 2)  # MSG_PEEK: leave it for read_reply
        assert not data, f"{what}: a reply arrived while it should still be blocked: {data!r}"
    except (TimeoutError, BlockingIOError):
        pass
    finally:
        conn.sock.settimeout(conn.timeout)


# ---------------------------------------------------------------- MULTI / WATCH


def test_multi_exec_on_one_slot_of_each_master(env, sg):
    with raw(sg) as c:
        for i, master in enumerate(env.masters()):
            tag = tag_on(env, master, f"tx{i}-")
            assert c.call("MULTI") == "OK"
            assert c.call("SET", f"{tag}a", "1") == "QUEUED"
            assert c.call("INCRBY", f"{tag}b", "5") == "QUEUED"
            assert c.call("RPUSH", f"{tag}l", "x", "y") == "QUEUED"
            assert c.call("GET", f"{tag}a") == "QUEUED"
            assert c.call("EXEC") == ["OK", 5, 2, b"1"], f"EXEC on {master}"
            with master.client() as direct:
                assert direct.get(f"{tag}a") == b"1"
                assert direct.get(f"{tag}b") == b"5"
                assert direct.lrange(f"{tag}l", 0, -1) == [b"x", b"y"]
        # After EXEC the client routes freely again.
        assert c.call("SET", "after:multi", "v") == "OK"
        assert c.call("GET", "after:multi") == b"v"


def test_multi_over_two_slots_is_refused_as_a_cluster_node_refuses_it(env, sg):
    """A node refuses a transaction whose commands name keys of two slots
    (cluster.c getNodeByQuery): at EXEC, with -CROSSSLOT, when both slots are
    its own. Through shardgate the same, and for slots of two masters the
    second command is refused at once, making EXEC abort. Either way the
    transaction ends: the next command runs, it is not queued."""
    m0, m1 = env.masters()[0], env.masters()[1]
    t0, t1 = tag_on(env, m0, "x"), tag_on(env, m1, "y")
    owners = env.slot_map()
    same_master = next(f"k{n}" for n in range(100_000)
                       if owners[keyslot(f"k{n}")] == m0.port and keyslot(f"k{n}") != keyslot(t0))
    crossslot = Err("CROSSSLOT Keys in request don't hash to the same slot")
    with raw(sg) as c:
        assert c.pipeline([("MULTI",), ("SET", f"{t0}a", "1"), ("SET", f"{t1}a", "1"),
                           ("EXEC",)]) == [
            "OK", "QUEUED", crossslot,
            Err("EXECABORT Transaction discarded because of previous errors.")]
        assert c.pipeline([("MULTI",), ("SET", f"{t0}a", "1"), ("SET", same_master, "1"),
                           ("EXEC",)]) == ["OK", "QUEUED", "QUEUED", crossslot]
        assert c.call("SET", "after:crossslot", "v") == "OK"
        assert c.call("EXISTS", f"{t0}a", f"{t1}a", same_master) == 0, "a refused transaction ran"
        # WATCH of keys of two slots: refused as a node refuses it.
        assert c.call("WATCH", f"{t0}a", f"{t1}a") == crossslot


def test_watch_aborts_exec_after_another_client_wrote_the_key(env, sg):
    master = env.masters()[1]
    tag = tag_on(env, master, "w")
    with raw(sg) as a, raw(sg) as b:
        assert a.call("SET", f"{tag}k", "0") == "OK"
        # Untouched: EXEC runs.
        assert a.call("WATCH", f"{tag}k") == "OK"
        assert a.call("MULTI") == "OK"
        assert a.call("SET", f"{tag}k", "mine") == "QUEUED"
        assert a.call("EXEC") == ["OK"]
        # Written by another client in between: EXEC aborts, the other's value stays.
        assert a.call("WATCH", f"{tag}k") == "OK"
        assert a.call("GET", f"{tag}k") == b"mine"
        assert b.call("SET", f"{tag}k", "theirs") == "OK"
        assert a.call("MULTI") == "OK"
        assert a.call("SET", f"{tag}k", "mine-again") == "QUEUED"
        assert a.call("EXEC") is None, "EXEC ran although the watched key changed"
        assert a.call("GET", f"{tag}k") == b"theirs"
    with master.client() as direct:
        assert direct.get(f"{tag}k") == b"theirs"


def test_select_of_another_db_is_refused_as_a_cluster_node_refuses_it(env, sg):
    """A Redis Cluster node has only database 0 and refuses `SELECT 1` with
    `-ERR SELECT is not allowed in cluster mode` (db.c selectCommand). Were
    it accepted, the client's writes would land in database 0, where every
    other client reads, while it believes itself in database 1."""
    key = "selected:key"
    with raw(sg) as c, raw(sg) as other:
        assert c.call("SELECT", "1") == Err("ERR SELECT is not allowed in cluster mode")
        assert c.call("SELECT", "0") == "OK"
        assert c.call("SET", key, "in-db-0") == "OK"
        assert other.call("GET", key) == b"in-db-0"
        assert owner_of(env, key).client().get(key) == b"in-db-0"


# ---------------------------------------------------------------- blocking


def test_blpop_blocks_on_the_owning_master_and_a_push_through_shardgate_wakes_it(env, sg):
    key = "queue:blpop"
    owner = owner_of(env, key)
    others = [m for m in env.masters() if m is not owner]
    with raw(sg) as waiter, raw(sg) as pusher:
        waiter.send("BLPOP", key, "20")
        with owner.client() as direct:
            wait_for_blocked_clients(direct, 1)
        for m in others:
            with m.client() as direct:
                assert direct.info("clients")["blocked_clients"] == 0, f"blocked on {m}"
        no_reply_yet(waiter, "BLPOP")
        # Other clients are served meanwhile.
        assert pusher.call("SET", "while:blocked", "1") == "OK"
        assert pusher.call("LPUSH", key, "job1") == 1
        assert waiter.read_reply("BLPOP") == [key.encode(), b"job1"]
        with owner.client() as direct:
            assert direct.info("clients")["blocked_clients"] == 0
            assert direct.llen(key) == 0
        # The waiter's connection carries on.
        assert waiter.call("GET", "while:blocked") == b"1"


# ---------------------------------------------------------------- pub/sub


def test_subscribe_and_publish_through_the_endpoint(env, sg):
    with raw(sg) as sub, raw(sg) as pub:
        assert sub.call("SUBSCRIBE", "news") == [b"subscribe", b"news", 1]
        # One subscriber (the endpoint's): PUBLISH through shardgate counts it
        # as one redis-server would.
        assert pub.call("PUBLISH", "news", "hello") == 1
        assert sub.read_reply("message") == [b"message", b"news", b"hello"]
        # A PUBLISH on any node reaches it too: the cluster bus spreads it.
        for master in env.masters():
            master.command("PUBLISH", "news", f"from {master.port}")
            assert sub.read_reply("message") == [b"message", b"news",
                                                 f"from {master.port}".encode()]
        # Patterns too (the bus carries every message to every node).
        assert sub.call("PSUBSCRIBE", "new*") == [b"psubscribe", b"new*", 2]
        assert pub.call("PUBLISH", "newer", "p") == 1
        assert sub.read_reply("pmessage") == [b"pmessage", b"new*", b"newer", b"p"]
        env.masters()[2].command("PUBLISH", "newest", "q")
        assert sub.read_reply("pmessage") == [b"pmessage", b"new*", b"newest", b"q"]
        assert sub.call("PUNSUBSCRIBE", "new*") == [b"punsubscribe", b"new*", 1]
        assert sub.call("UNSUBSCRIBE", "news") == [b"unsubscribe", b"news", 0]
        # Out of pub/sub mode: an ordinary command is answered as such.
        assert sub.call("PING") == "PONG"
        assert sub.call("SET", "after:pubsub", "1") == "OK"


def test_ssubscribe_lives_on_the_master_owning_the_shard_channel(env, sg):
    channels = {}
    for i, master in enumerate(env.masters()):
        channels[master.port] = tag_on(env, master, f"chan{i}-") + "orders"
    with raw(sg) as sub, raw(sg) as pub:
        for n, channel in enumerate(channels.values(), start=1):
            # Redis counts shard channels per connection: 1, 2, 3.
            assert sub.call("SSUBSCRIBE", channel) == [b"ssubscribe", channel.encode(), n]
        for port, channel in channels.items():
            node = env.by_port(port)
            assert node.command("PUBSUB", "SHARDNUMSUB", channel) == [channel.encode(), 1], \
                f"{channel} not subscribed on its owner {node}"
            assert pub.call("SPUBLISH", channel, f"to {port}") == 1
            assert sub.read_reply("smessage") == [b"smessage", channel.encode(),
                                                  f"to {port}".encode()]
        # SPUBLISH on the owning node itself reaches the endpoint's subscriber.
        port, channel = next(iter(channels.items()))
        assert env.by_port(port).command("SPUBLISH", channel, "direct") == 1
        assert sub.read_reply("smessage") == [b"smessage", channel.encode(), b"direct"]
        # SUNSUBSCRIBE with no channel leaves all three, on their three masters.
        sub.send("SUNSUBSCRIBE")
        replies = [sub.read_reply(f"sunsubscribe {n}") for n in range(len(channels))]
        assert sorted(r[1] for r in replies) == sorted(c.encode() for c in channels.values()), replies
        assert all(r[0] == b"sunsubscribe" for r in replies), replies
        assert sorted(r[2] for r in replies) == list(range(len(channels))), replies
        for port, channel in channels.items():
            assert env.by_port(port).command("PUBSUB", "SHARDNUMSUB", channel) == [
                channel.encode(), 0], f"{channel} still subscribed on {port}"
        assert sub.call("SET", "after:ssubscribe", "1") == "OK"


def two_slot_channels(env: ClusterEnv, master: ClusterNode) -> tuple[str, str]:
    """Two shard channels in different slots, both owned by `master`."""
    a = tag_on(env, master, "sa") + "c"
    b = next(tag_on(env, master, f"sb{n}-") + "c" for n in range(100)
             if keyslot(tag_on(env, master, f"sb{n}-")) != keyslot(a))
    return a, b


def test_bare_sunsubscribe_leaves_shard_channels_of_two_slots_on_one_master(env, sg):
    """A node takes SSUBSCRIBE/SUNSUBSCRIBE naming shard channels of one slot
    only (-CROSSSLOT otherwise), but a bare SUNSUBSCRIBE leaves them all. A
    client subscribed, one command each, to two channels of two slots that
    one master owns, then sends a bare SUNSUBSCRIBE: both are confirmed (as
    one redis-server confirms them: counts 1 and 0) and the client is out of
    pub/sub. shardgate must not name both channels in one command to the node
    (it refuses that with -CROSSSLOT and the client would wait for ever)."""
    a, b = two_slot_channels(env, env.masters()[0])
    with raw(sg) as sub, raw(sg) as pub:
        assert sub.call("SSUBSCRIBE", a) == [b"ssubscribe", a.encode(), 1]
        assert sub.call("SSUBSCRIBE", b) == [b"ssubscribe", b.encode(), 2]
        for channel in (a, b):
            assert pub.call("SPUBLISH", channel, "m") == 1
            assert sub.read_reply("smessage") == [b"smessage", channel.encode(), b"m"]
        sub.send("SUNSUBSCRIBE")
        replies = [sub.read_reply("bare SUNSUBSCRIBE's first confirmation"),
                   sub.read_reply("bare SUNSUBSCRIBE's second confirmation")]
        assert all(isinstance(r, list) and r[0] == b"sunsubscribe" for r in replies), replies
        assert sorted(r[2] for r in replies) == [0, 1], replies
        assert sorted(r[1] for r in replies) == sorted([a.encode(), b.encode()]), replies
        assert sub.call("PING") == "PONG"


def test_ssubscribe_of_two_slots_in_one_command_is_answered(env, sg):
    """Redis Cluster refuses `SSUBSCRIBE a b` over two slots with -CROSSSLOT;
    one redis-server subscribes both. Through shardgate either is acceptable,
    but an answer must come, and the connection must go on."""
    a, b = two_slot_channels(env, env.masters()[0])
    with raw(sg) as sub:
        sub.send("SSUBSCRIBE", a, b)
        first = sub.read_reply("SSUBSCRIBE of two slots")
        if isinstance(first, Err):
            assert first.message.startswith("CROSSSLOT"), first
            assert sub.call("PING") == "PONG"
        else:
            second = sub.read_reply("SSUBSCRIBE's second confirmation")
            assert [first, second] == [[b"ssubscribe", a.encode(), 1],
                                       [b"ssubscribe", b.encode(), 2]]


def pubsub_script(port: int, channel: str, bare: str) -> list:
    """On a subscriber and a publisher connection to `port`: a shard channel
    and an ordinary channel subscribed together, then a bare `bare`
    (UNSUBSCRIBE or SUNSUBSCRIBE) and one message on each channel. Returns
    what the two connections heard, a missing reply as a marker."""
    heard: list = []
    with RespClient.plain(port, timeout=2) as sub, RespClient.plain(port, timeout=2) as pub:
        def read(what: str):
            try:
                return sub.read_reply(what)
            except AssertionError:
                return f"<no {what} within 2 s>"

        sub.send("SSUBSCRIBE", channel)
        heard.append(read("ssubscribe confirmation"))
        sub.send("SUBSCRIBE", "plain-news")
        heard.append(read("subscribe confirmation"))
        sub.send(bare)
        heard.append(read(f"{bare} confirmation"))
        # Redis left only the kind `bare` names: the other still delivers.
        if bare == "UNSUBSCRIBE":
            heard.append(pub.call("SPUBLISH", channel, "still-here"))
            heard.append(read("smessage"))
        else:
            heard.append(pub.call("PUBLISH", "plain-news", "still-here"))
            heard.append(read("message"))
        sub.send("SUNSUBSCRIBE" if bare == "UNSUBSCRIBE" else "UNSUBSCRIBE")
        heard.append(read("last confirmation"))
        heard.append(sub.call("PING"))
    return heard


@pytest.mark.parametrize("bare", ["UNSUBSCRIBE", "SUNSUBSCRIBE"])
def test_shard_channels_and_channels_are_counted_and_left_apart_as_redis_does(
        env, sg, redis_server, bare):
    """Redis keeps a client's shard channels apart from its channels and
    patterns (pubsub.c: clientShardSubscriptionsCount vs
    clientSubscriptionsCount): SUBSCRIBE after an SSUBSCRIBE counts 1, a bare
    UNSUBSCRIBE leaves only the ordinary channels and a bare SUNSUBSCRIBE only
    the shard channels, and the other subscription keeps delivering. The same
    script through shardgate and on one redis-server must hear the same."""
    channel = tag_on(env, env.masters()[1], "mix") + "orders"
    reference = redis_server()
    want = pubsub_script(reference.port, channel, bare)
    assert want[:3] == [[b"ssubscribe", channel.encode(), 1], [b"subscribe", b"plain-news", 1],
                        [b"unsubscribe" if bare == "UNSUBSCRIBE" else b"sunsubscribe",
                         b"plain-news" if bare == "UNSUBSCRIBE" else channel.encode(), 0]], want
    got = pubsub_script(sg.port("big"), channel, bare)
    assert got == want, f"through shardgate: {got}\none redis-server: {want}"


# ---------------------------------------------------------------- whole database


def write_keys(conn: RespClient, keys: list[str]) -> None:
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        assert conn.pipeline([("SET", k, k) for k in chunk]) == ["OK"] * len(chunk)


def test_scan_returns_every_key_of_every_master_once(env, sg):
    keys = [f"scan:{i}" for i in range(3000)]
    with raw(sg) as c:
        write_keys(c, keys)
        per_master = [m.client().dbsize() for m in env.masters()]
        assert all(n > 500 for n in per_master), per_master  # the keys span every master
        seen: list[bytes] = []
        cursor, calls = b"0", 0
        while True:
            reply = c.call("SCAN", cursor, "COUNT", "100")
            assert isinstance(reply, list) and len(reply) == 2, f"SCAN {cursor!r}: {reply!r}"
            cursor, batch = reply
            seen += batch
            calls += 1
            if cursor == b"0":
                break
            assert calls < 1000, "SCAN did not end after 1000 calls"
        dupes = sorted({k for k in seen if seen.count(k) > 1}) if len(seen) != len(set(seen)) else []
        assert not dupes, f"SCAN returned {len(dupes)} keys more than once: {dupes[:10]}"
        assert sorted(seen) == sorted(k.encode() for k in keys)
        # MATCH applies on every master.
        matched, cursor, calls = [], b"0", 0
        while True:
            cursor, batch = c.call("SCAN", cursor, "MATCH", "scan:1*", "COUNT", "200")
            matched += batch
            calls += 1
            if cursor == b"0" or calls > 1000:
                break
        assert sorted(matched) == sorted(k.encode() for k in keys if k.startswith("scan:1"))


def test_dbsize_keys_and_flushall_cover_every_master(env, sg):
    keys = [f"whole:{i}" for i in range(1500)]
    with raw(sg) as c:
        write_keys(c, keys)
        sizes = [m.client().dbsize() for m in env.masters()]
        assert all(sizes) and sum(sizes) == len(keys), sizes
        assert c.call("DBSIZE") == len(keys)
        assert sorted(c.call("KEYS", "*")) == sorted(k.encode() for k in keys)
        assert sorted(c.call("KEYS", "whole:12*")) == sorted(
            k.encode() for k in keys if k.startswith("whole:12"))
        assert c.call("FLUSHALL") == "OK"
        assert [m.client().dbsize() for m in env.masters()] == [0] * len(sizes)
        assert c.call("DBSIZE") == 0
        assert c.call("KEYS", "*") == []
        # The replicas follow their masters.
        for master in env.masters():
            master.command("WAIT", "1", "5000")
        assert [r.client().dbsize() for r in env.replicas()] == [0] * len(env.replicas())


# ---------------------------------------------------------------- cluster-aware clients


def test_redis_cli_cluster_mode_through_the_endpoint(env, sg):
    port = sg.port("big")
    keys = [f"cli:{i}" for i in range(60)]
    script = "".join(f"SET {k} v-{k}\n" for k in keys) + "".join(f"GET {k}\n" for k in keys)
    done = subprocess.run(["redis-cli", "-c", "-h", "127.0.0.1", "-p", str(port)],
                          input=script, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == ["OK"] * len(keys) + [f"v-{k}" for k in keys], done.stdout[-2000:]
    # The keys landed on their owners, across every master.
    owners = {owner_of(env, k).port for k in keys}
    assert len(owners) == 3
    for k in keys:
        with owner_of(env, k).client() as direct:
            assert direct.get(k) == f"v-{k}".encode()
    # One command with arguments, and the redirect-following mode asks nothing else.
    one = subprocess.run(["redis-cli", "-c", "-h", "127.0.0.1", "-p", str(port),
                          "MGET", *keys[:5]], capture_output=True, text=True, timeout=10)
    assert one.stdout.splitlines() == [f"v-{k}" for k in keys[:5]], one.stdout + one.stderr


def test_redis_py_cluster_client_pipelines_and_scans_through_the_endpoint(env, sg):
    port = sg.port("big")
    items = {f"rpc:{i}": str(i) for i in range(500)}
    with RedisCluster(host="127.0.0.1", port=port, socket_timeout=10,
                      decode_responses=True) as rc:
        pipe = rc.pipeline()
        for k, v in items.items():
            pipe.set(k, v)
        assert pipe.execute() == [True] * len(items)
        keys = list(items)
        assert rc.mget_nonatomic(keys) == [items[k] for k in keys]
        # One MSET per slot (the client groups keys by its own CLUSTER KEYSLOT).
        assert all(rc.mset_nonatomic({f"{k}:b": v for k, v in items.items()}))
        assert sorted(rc.scan_iter(match="rpc:*:b", count=100)) == sorted(f"{k}:b" for k in keys)
        assert rc.dbsize() == 2 * len(items)
    for k in keys[:100]:
        with owner_of(env, k).client() as direct:
            assert direct.get(k) == items[k].encode()


def test_redis_benchmark_cluster_through_the_endpoint_with_two_shown_masters(env, shardgate):
    """redis-benchmark --cluster refuses a cluster of one master, which is
    what the endpoint shows by default; with cluster.shown_masters: 2 it sees
    two masters, both this endpoint, and shardgate routes its keys by the
    real cluster's slots."""
    def bench(port: int) -> subprocess.CompletedProcess:
        return subprocess.run(["redis-benchmark", "--cluster", "-h", "127.0.0.1", "-p", str(port),
                               "-t", "set,get", "-n", "3000", "-c", "4", "-r", "100000", "-q"],
                              capture_output=True, text=True, timeout=120)

    one = shardgate([cluster_db([env.masters()[0].address])])
    refused = bench(one.port("big"))
    assert refused.returncode != 0
    assert "Invalid cluster: 1 node(s)" in refused.stdout + refused.stderr
    one.proc.terminate()
    one.proc.wait(timeout=10)

    db = cluster_db([env.masters()[0].address])
    db["cluster"]["shown_masters"] = 2
    two = shardgate([db])
    counts = []
    for m in env.masters():
        with m.client() as direct:
            counts.append(direct.info("commandstats").get("cmdstat_set", {}).get("calls", 0))
    done = bench(two.port("big"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SET:" in done.stdout and "GET:" in done.stdout, done.stdout
    with RespClient.plain(two.port("big"), timeout=REPLY_TIMEOUT_S) as c:
        nodes = c.call("CLUSTER", "NODES")
    endpoint = f"127.0.0.1:{two.port('big')}"
    lines = nodes.decode().strip().splitlines() if isinstance(nodes, bytes) else nodes.strip().splitlines()
    assert len(lines) == 2 and all(endpoint in line for line in lines), nodes
    # The SETs reached the real masters owning their keys' slots: redis-benchmark
    # puts one hash tag per node it sees in its keys, a slot of each half, so
    # two real masters (or one, if both tags fall on it) got them all.
    got = []
    for m, before in zip(env.masters(), counts):
        with m.client() as direct:
            got.append(direct.info("commandstats").get("cmdstat_set", {}).get("calls", 0) - before)
    assert sum(got) >= 3000, got
