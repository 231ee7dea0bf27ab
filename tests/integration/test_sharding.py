"""Several shards behind one endpoint: keys go
to the shard that owns their hash slot, multi-key commands are split and merged
or refused with CROSSSLOT, transactions, blocking commands and pub/sub work,
keyless commands are answered for the whole database, AUTH is the proxy's, and
a shard that dies gets a fast error and is picked up again when it returns.

Each test gets three fresh redis-servers (plain, not cluster mode) with the
slots split as `redis-cli --cluster create` splits them, and shardgate routing
over them. Where a key lives is checked against the test's own CRC16
(sharding_env.keyslot), by asking the shards directly."""
from __future__ import annotations

import random
import re
import string
import threading
import time

import pytest
import redis

from conftest import FREE_PORT, wait_for_blocked_clients
from sharding_env import (CROSSSLOT, Err, RespClient, crc16, describe_command, keyslot,
                          redis_cli, start_redis_on_port, start_sharded)

SHARDS = 3


@pytest.fixture
def db(procs, redis_server, shardgate):
    return start_sharded(redis_server, shardgate)


def spread_keys(db, stem: str, per_shard: int) -> list[str]:
    """per_shard keys on every shard, interleaved shard 0, 1, 2, 0, 1, 2, ..."""
    columns = [db.keys_on(i, f"{stem}{i}", per_shard) for i in range(SHARDS)]
    return [key for row in zip(*columns) for key in row]


def assert_on_owner(db, key) -> None:
    owner = db.shard_index(key)
    holders = db.holders(key)
    assert holders == [owner], (
        f"key {key!r} (slot {keyslot(key)}) should exist on shard {owner} only; "
        f"found on shards {holders} ({db.describe()})")


def collect_messages(pubsub, count: int, timeout: float = 5.0) -> list[dict]:
    """Up to `count` pub/sub messages, waiting at most `timeout` seconds."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message is not None:
            got.append(message)
    return got


# ---------------------------------------------------------------- the test's own oracle


def test_keyslot_helper_known_values():
    assert crc16(b"123456789") == 0x31C3, "CRC16-XMODEM check value"
    assert keyslot("foo") == 12182
    assert keyslot(b"foo") == 12182
    # Hash tags, the examples of the cluster spec.
    assert keyslot("{user1000}.following") == keyslot("{user1000}.followers") == keyslot("user1000")
    assert keyslot("foo{}{bar}") == crc16(b"foo{}{bar}") % 16384  # empty tag: whole key
    assert keyslot("foo{{bar}}zap") == keyslot("{bar")  # tag is "{bar"
    assert keyslot("foo{bar}{zap}") == keyslot("bar")  # first tag only
    assert keyslot("{}") == crc16(b"{}") % 16384
    assert keyslot("foo{bar") == crc16(b"foo{bar") % 16384  # no closing brace


def test_keyslot_helper_matches_redis_cluster_keyslot(redis_server):
    """The oracle every other test trusts, checked once against Redis itself."""
    # An explicit bus port: the default (port + 10000) does not exist for
    # ports above 55535, which free_port() may hand out; FREE_PORT is picked
    # again with the main port when redis-server finds either one taken.
    cluster_node = redis_server("--cluster-enabled", "yes", "--cluster-port", FREE_PORT)
    rng = random.Random(16384)
    alphabet = string.ascii_letters + string.digits + "{}{}{}:._-"
    keys: list[bytes] = [b"foo", b"{user1000}.following", b"foo{}{bar}", b"foo{{bar}}zap",
                         b"foo{bar}{zap}", b"{}", b"}{", b"a{b}c"]
    while len(keys) < 1000:
        if rng.random() < 0.2:
            keys.append(bytes(rng.randrange(256) for _ in range(rng.randint(1, 20))))
        else:
            keys.append("".join(rng.choice(alphabet)
                                for _ in range(rng.randint(1, 24))).encode())
    pipe = cluster_node.client().pipeline(transaction=False)
    for key in keys:
        pipe.execute_command("CLUSTER", "KEYSLOT", key)
    theirs = pipe.execute()
    wrong = [(k, keyslot(k), t) for k, t in zip(keys, theirs) if keyslot(k) != t]
    assert not wrong, ("keyslot() disagrees with CLUSTER KEYSLOT on "
                       f"{len(wrong)} of {len(keys)} keys, (key, ours, redis): {wrong[:10]}")


# ---------------------------------------------------------------- routing


def test_every_keyed_command_goes_to_the_owning_shard(db):
    client = db.client()
    rng = random.Random(7)
    keys = [f"user:{i}" for i in range(60)] + [f"{{tag{i}}}:x" for i in range(30)]
    keys += ["", "{}", "foo{}{bar}", "a{b}c", "é-ü-ñ", "with space", "x" * 300]
    writers = [
        lambda k: client.set(k, "v"),
        lambda k: client.hset(k, "field", "v"),
        lambda k: client.rpush(k, "v"),
        lambda k: client.sadd(k, "v"),
        lambda k: client.zadd(k, {"v": 1}),
        lambda k: client.incr(k),
        lambda k: client.setex(k, 300, "v"),
        lambda k: client.pfadd(k, "v"),
    ]
    for key in keys:
        rng.choice(writers)(key)
    per_shard = [0] * SHARDS
    for key in keys:
        assert_on_owner(db, key)
        per_shard[db.shard_index(key)] += 1
    assert all(per_shard), f"the test keys must cover every shard, got {per_shard} per shard"

    # Reads too: a value written straight to the owner comes back through shardgate.
    for i, key in enumerate(spread_keys(db, "direct", 5)):
        db.owner(key).client().set(key, f"direct-{i}")
        got = client.get(key)
        assert got == f"direct-{i}".encode(), (
            f"GET {key!r} (shard {db.shard_index(key)}): expected the owner's value "
            f"b'direct-{i}', got {got!r}")


def test_mset_mget_split_across_shards_and_merged_in_key_order(db):
    client = db.client()
    keys = spread_keys(db, "mkey", 3)
    mapping = {k: f"value-{i}" for i, k in enumerate(keys)}
    assert client.mset(mapping) is True, "MSET across shards must answer +OK"
    for key in keys:
        assert_on_owner(db, key)
        assert db.owner(key).client().get(key) == mapping[key].encode()

    missing = [db.key_on(i, f"missing{i}") for i in range(SHARDS)]
    asked = [keys[4], missing[0], keys[0], keys[8], missing[2], keys[4], keys[1], missing[1]]
    expected = [mapping[k].encode() if k in mapping else None for k in asked]
    got = client.mget(asked)
    assert got == expected, f"MGET {asked}: expected {expected}, got {got}"

    with db.raw() as conn:
        reply = conn.call("MSET", keys[0], "raw-0", keys[1], "raw-1", keys[2], "raw-2")
        assert reply == "OK", f"raw MSET across shards: expected +OK, got {reply!r}"
        reply = conn.call("MGET", keys[2], keys[1], keys[0])
        assert reply == [b"raw-2", b"raw-1", b"raw-0"], f"raw MGET: got {reply!r}"


def test_del_unlink_exists_touch_sum_over_shards(db):
    client = db.client()
    keys = spread_keys(db, "count", 4)  # 12 keys, 4 per shard
    client.mset({k: "1" for k in keys})
    missing = [db.key_on(i, f"absent{i}") for i in range(SHARDS)]

    asked = keys[:6] + missing
    assert client.exists(*asked) == 6, f"EXISTS {asked}: expected 6"
    # A key named twice counts twice, as in Redis.
    assert client.exists(keys[0], keys[0], keys[1]) == 3, "EXISTS k k other: expected 3"
    assert client.touch(*asked) == 6, f"TOUCH {asked}: expected 6"

    deleted = client.delete(*(keys[:4] + [missing[1]]))
    assert deleted == 4, f"DEL of 4 existing keys on 3 shards and 1 missing: got {deleted}"
    unlinked = client.unlink(*(keys[4:9] + [missing[0], missing[2]]))
    assert unlinked == 5, f"UNLINK of 5 existing keys and 2 missing: got {unlinked}"
    left = keys[9:]
    assert client.exists(*keys) == len(left), f"after DEL/UNLINK only {left} remain"
    assert sorted(k.decode() for k in client.keys("*")) == sorted(left)
    for key in keys[:9]:
        assert db.holders(key) == [], f"{key!r} still on shards {db.holders(key)}"


CROSSSLOT_CASES = {
    # command: (setup on the owning shards, the command, reply when the keys share a tag)
    "SUNIONSTORE": ([("SADD", "{A}", "x", "y"), ("SADD", "{B}", "y", "z")],
                    ("SUNIONSTORE", "{C}", "{A}", "{B}"), 3),
    "SINTER": ([("SADD", "{A}", "x", "y"), ("SADD", "{B}", "y", "z")],
               ("SINTER", "{A}", "{B}"), [b"y"]),
    "RENAME": ([("SET", "{A}", "v")], ("RENAME", "{A}", "{B}"), "OK"),
    "MSETNX": ([], ("MSETNX", "{A}", "1", "{B}", "2"), 1),
    "SMOVE": ([("SADD", "{A}", "m")], ("SMOVE", "{A}", "{B}", "m"), 1),
    "LMOVE": ([("RPUSH", "{A}", "e")], ("LMOVE", "{A}", "{B}", "LEFT", "RIGHT"), b"e"),
    "ZUNIONSTORE": ([("ZADD", "{A}", "1", "x"), ("ZADD", "{B}", "2", "y")],
                    ("ZUNIONSTORE", "{C}", "2", "{A}", "{B}"), 2),
}


def _fill(template: tuple, names: dict) -> tuple:
    return tuple(names.get(arg, arg) for arg in template)


@pytest.mark.parametrize("command", sorted(CROSSSLOT_CASES))
def test_multi_key_command_across_shards_is_crossslot_within_a_tag_works(db, command):
    setup, template, tagged_reply = CROSSSLOT_CASES[command]
    stem = command.lower()

    # Keys on three different shards: refused, and nothing changed anywhere.
    across = {"{A}": db.key_on(0, f"{stem}-a"), "{B}": db.key_on(1, f"{stem}-b"),
              "{C}": db.key_on(2, f"{stem}-c")}
    for step in setup:
        step = _fill(step, across)
        db.owner(step[1]).client().execute_command(*step)
    before = {k: db.owner(k).client().dump(k) for k in across.values()}
    args = _fill(template, across)
    with db.raw() as conn:
        reply = conn.call(*args)
        where = ", ".join(f"{k} on shard {db.shard_index(k)}" for k in across.values()
                          if k in args)
        assert reply == Err(CROSSSLOT), (
            f"{describe_command(args)} ({where}): expected -{CROSSSLOT}, got {reply!r}")
        after = {k: db.owner(k).client().dump(k) for k in across.values()}
        assert after == before, f"a refused {command} must change nothing: {before} -> {after}"

        # The same command with keys sharing a {tag}: one slot, one shard, it runs.
        tag = db.tag_on(2, stem)
        tagged = {"{A}": f"{tag}:a", "{B}": f"{tag}:b", "{C}": f"{tag}:c"}
        for step in setup:
            step = _fill(step, tagged)
            db.owner(step[1]).client().execute_command(*step)
        args = _fill(template, tagged)
        reply = conn.call(*args)
        assert reply == tagged_reply, (
            f"{describe_command(args)} (one slot): expected {tagged_reply!r}, got {reply!r}")
        assert conn.call("PING") == "PONG", "the connection must carry on after CROSSSLOT"


# ---------------------------------------------------------------- transactions, blocking, pub/sub


def test_multi_exec_with_keys_of_one_slot(db):
    tag = db.tag_on(1, "account")
    a, b = f"{tag}:balance", f"{tag}:history"
    pipe = db.client().pipeline(transaction=True)
    pipe.set(a, "10")
    pipe.incrby(a, 5)
    pipe.rpush(b, "deposit")
    pipe.get(a)
    got = pipe.execute()
    assert got == [True, 15, 1, b"15"], f"redis-py MULTI/EXEC: got {got}"
    assert_on_owner(db, a)
    assert_on_owner(db, b)

    with db.raw() as conn:  # one write: shardgate sees MULTI before it knows the slot
        replies = conn.pipeline([("MULTI",), ("INCR", a), ("RPUSH", b, "again"), ("EXEC",)])
    expected = ["OK", "QUEUED", "QUEUED", [16, 2]]
    assert replies == expected, f"raw MULTI, INCR, RPUSH, EXEC: expected {expected}, got {replies}"
    assert db.owner(a).client().get(a) == b"16"


def test_watch_aborts_exec_when_the_key_changes(db):
    key = db.key_on(2, "watched")
    db.client().set(key, "1")
    with db.raw() as watcher, db.raw() as other:
        assert watcher.call("WATCH", key) == "OK"
        assert other.call("SET", key, "changed") == "OK"
        replies = [watcher.call("MULTI"), watcher.call("SET", key, "mine"),
                   watcher.call("EXEC")]
        assert replies == ["OK", "QUEUED", None], (
            f"WATCH, another client's SET, MULTI, SET, EXEC: expected EXEC to abort "
            f"(nil), got {replies}")
        assert db.owner(key).client().get(key) == b"changed"

        # Unchanged watched key: EXEC runs.
        replies = [watcher.call("WATCH", key), watcher.call("MULTI"),
                   watcher.call("SET", key, "mine"), watcher.call("EXEC")]
        assert replies == ["OK", "OK", "QUEUED", ["OK"]], f"untouched WATCH: got {replies}"
    assert db.owner(key).client().get(key) == b"mine"

    # redis-py's optimistic-locking helper sees the same.
    client = db.client()
    with client.pipeline() as pipe:
        pipe.watch(key)
        db.client().set(key, "interfering")
        pipe.multi()
        pipe.set(key, "lost")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert client.get(key) == b"interfering"


def test_blpop_woken_by_lpush_from_another_client(db):
    queue = db.key_on(2, "queue")
    waiter = db.client(socket_timeout=15)
    result: dict = {}

    def wait() -> None:
        start = time.monotonic()
        try:
            result["value"] = waiter.blpop(queue, timeout=10)
        except Exception as e:  # reported below, not lost in the thread
            result["value"] = e
        result["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=wait)
    thread.start()
    wait_for_blocked_clients(db.owner(queue).client())  # BLPOP blocks on the shard first
    pushed = db.client().lpush(queue, "job-1")
    thread.join(timeout=15)
    assert not thread.is_alive(), "BLPOP still blocked 15 s after the LPUSH"
    assert pushed == 1, f"LPUSH: expected 1, got {pushed}"
    assert result["value"] == (queue.encode(), b"job-1"), f"BLPOP returned {result['value']!r}"
    assert result["elapsed"] < 5, f"BLPOP woke after {result['elapsed']:.2f} s"


def test_subscribe_and_publish_through_shardgate(db):
    channels = [db.key_on(i, "news") for i in range(SHARDS)]  # names hashing to every shard
    pubsub = db.client().pubsub()
    pubsub.subscribe(*channels)
    confirmations = collect_messages(pubsub, len(channels))
    assert [(m["type"], m["channel"].decode(), m["data"]) for m in confirmations] == [
        ("subscribe", c, n + 1) for n, c in enumerate(channels)], confirmations

    publisher = db.client()
    for channel in channels:
        receivers = publisher.publish(channel, f"hello {channel}")
        assert receivers == 1, f"PUBLISH {channel}: expected 1 receiver, got {receivers}"
    messages = collect_messages(pubsub, len(channels))
    got = sorted((m["type"], m["channel"].decode(), m["data"].decode()) for m in messages)
    expected = sorted(("message", c, f"hello {c}") for c in channels)
    assert got == expected, f"expected {expected}, got {got}"
    extra = collect_messages(pubsub, 1, timeout=0.3)
    assert not extra, f"each message must arrive once; also got {extra}"
    pubsub.close()


def test_psubscribe_receives_from_channels_on_every_shard(db):
    channels = [db.key_on(i, "events") for i in range(SHARDS)]
    pubsub = db.client().pubsub()
    pubsub.psubscribe("events:*")
    confirmation = collect_messages(pubsub, 1)
    assert len(confirmation) == 1 and confirmation[0]["type"] == "psubscribe" \
        and confirmation[0]["data"] == 1, f"PSUBSCRIBE confirmation: got {confirmation}"

    publisher = db.client()
    for channel in channels:
        receivers = publisher.publish(channel, f"about {channel}")
        assert receivers == 1, f"PUBLISH {channel} (shard {db.shard_index(channel)}): " \
                               f"expected 1 receiver (the pattern subscriber), got {receivers}"
    messages = collect_messages(pubsub, len(channels))
    got = sorted((m["type"], m["pattern"], m["channel"].decode(), m["data"].decode())
                 for m in messages)
    expected = sorted(("pmessage", b"events:*", c, f"about {c}") for c in channels)
    assert got == expected, f"expected {expected}, got {got}"
    extra = collect_messages(pubsub, 1, timeout=0.3)
    assert not extra, f"each message must arrive once; also got {extra}"
    pubsub.close()


# ---------------------------------------------------------------- keyless commands


def test_ping_and_echo(db):
    client = db.client()
    assert client.ping() is True
    assert client.echo("hello shards") == b"hello shards"
    with db.raw() as conn:
        replies = conn.pipeline([("PING",), ("PING", "payload"), ("ECHO", "x\r\ny")])
    assert replies == ["PONG", b"payload", b"x\r\ny"], f"got {replies}"


def test_dbsize_is_the_sum_over_shards(db):
    client = db.client()
    assert client.dbsize() == 0
    keys = spread_keys(db, "size", 10)
    client.mset({k: "1" for k in keys})
    sizes = db.shard_sizes()
    assert sizes == [10, 10, 10], f"keys per shard, asked directly: {sizes}"
    assert client.dbsize() == 30, f"DBSIZE through shardgate: expected 30, got {client.dbsize()}"


def test_flushall_empties_every_shard(db):
    client = db.client()
    client.mset({k: "1" for k in spread_keys(db, "flush", 5)})
    assert db.shard_sizes() == [5, 5, 5]
    assert client.flushall() is True
    sizes = db.shard_sizes()
    assert sizes == [0, 0, 0], f"after FLUSHALL the shards still hold {sizes} keys"
    assert client.dbsize() == 0


def test_keys_star_returns_the_keys_of_every_shard(db):
    client = db.client()
    users = spread_keys(db, "user", 5)
    others = spread_keys(db, "other", 2)
    client.mset({k: "1" for k in users + others})
    got = sorted(k.decode() for k in client.keys("*"))
    assert got == sorted(users + others), f"KEYS *: expected {sorted(users + others)}, got {got}"
    got = sorted(k.decode() for k in client.keys("user*"))
    assert got == sorted(users), f"KEYS user*: expected {sorted(users)}, got {got}"


def test_scan_returns_every_key_exactly_once(db):
    keys = [f"scan:{i}" for i in range(1000)]
    for i, shard in enumerate(db.shards):
        mine = [k for k in keys if db.shard_index(k) == i]
        assert len(mine) > 250, f"1,000 keys should spread over the shards; shard {i} " \
                                f"has {len(mine)}"
        shard.client().mset({k: "1" for k in mine})
    # A dict that is still rehashing after the inserts may legitimately return
    # a key twice (redis.io SCAN guarantees); serverCron finishes the rehash
    # within its next ticks (hz 10), so give it two before scanning.
    time.sleep(0.25)

    # scan_iter(count=10), unrolled so that a cursor that never returns to 0
    # fails the test instead of looping forever.
    client = db.client()
    seen: list[bytes] = []
    cursor, calls = 0, 0
    deadline = time.monotonic() + 20
    while True:
        cursor, batch = client.scan(cursor=cursor, count=10)
        seen.extend(batch)
        calls += 1
        if cursor == 0:
            break
        assert calls < 3000 and time.monotonic() < deadline, (
            f"SCAN has not returned cursor 0 after {calls} calls "
            f"({len(seen)} keys so far, last cursor {cursor})")
    counts: dict[bytes, int] = {}
    for key in seen:
        counts[key] = counts.get(key, 0) + 1
    twice = sorted(k for k, n in counts.items() if n > 1)
    missing = sorted(set(keys) - {k.decode() for k in counts})
    unknown = sorted(k for k in counts if k.decode() not in set(keys))
    assert not twice and not missing and not unknown, (
        f"SCAN over 1,000 keys in {calls} calls: {len(twice)} returned more than once "
        f"{twice[:10]}, {len(missing)} never returned {missing[:10]}, "
        f"{len(unknown)} not in the database {unknown[:10]}")


def test_randomkey_returns_an_existing_key(db):
    client = db.client()
    assert client.randomkey() is None, "RANDOMKEY on an empty database: expected nil"
    lonely = db.key_on(2, "lonely")  # one key, on the last shard: others are empty
    client.set(lonely, "1")
    got = [client.randomkey() for _ in range(10)]
    assert got == [lonely.encode()] * 10, (
        f"RANDOMKEY with one key in the database, on shard 2: expected {lonely!r} "
        f"every time, got {got}")
    keys = spread_keys(db, "rand", 5)
    client.mset({k: "1" for k in keys})
    existing = {k.encode() for k in keys + [lonely]}
    got = [client.randomkey() for _ in range(30)]
    strays = [k for k in got if k not in existing]
    assert not strays, f"RANDOMKEY returned keys that do not exist: {strays}"


def test_info_keyspace_shows_the_summed_key_count(db):
    client = db.client()
    keys = spread_keys(db, "info", 7)
    client.mset({k: "1" for k in keys})
    with db.raw() as conn:
        info = conn.call("INFO", "keyspace")
    assert isinstance(info, bytes), f"INFO keyspace: expected a bulk string, got {info!r}"
    text = info.decode()
    lines = re.findall(r"^db0:.*$", text, re.MULTILINE)
    assert len(lines) == 1 and lines[0].startswith(f"db0:keys={len(keys)},"), (
        f"INFO keyspace: expected one line 'db0:keys={len(keys)},...', got:\n{text}")
    assert client.info("keyspace")["db0"]["keys"] == len(keys)


def test_client_setname_getname_id(db):
    client = db.client(single_connection_client=True)
    assert client.client_setname("sharded-app") is True
    assert client.client_getname() == "sharded-app"
    first = client.client_id()
    assert isinstance(first, int), f"CLIENT ID: expected an integer, got {first!r}"
    assert client.client_id() == first, "CLIENT ID must not change on one connection"
    other = db.client(single_connection_client=True)
    assert other.client_getname() is None, "a new connection has no name"
    assert other.client_id() != first, "two connections must have different CLIENT IDs"
    client.close()
    other.close()


def test_command_count_and_command(db):
    count = db.client().command_count()
    assert count > 100, f"COMMAND COUNT: expected > 100, got {count}"
    with db.raw() as conn:
        table = conn.call("COMMAND")
        info = conn.call("COMMAND", "INFO", "get")
    assert isinstance(table, list) and len(table) == count, (
        f"COMMAND: expected {count} entries (COMMAND COUNT), got "
        f"{len(table) if isinstance(table, list) else table!r}")
    assert isinstance(info, list) and info and info[0] and info[0][0] == b"get", \
        f"COMMAND INFO get: got {info!r}"


def test_unknown_command_error_is_redis_7_0s(db):
    commands = [("FOO",), ("foo", "a", "b"), ("NOSUCHCMD", "x" * 200, "more"),
                ("bar", "", "x y")]
    with db.raw() as proxied, RespClient.plain(db.shards[0].port) as direct:
        for command in commands:
            theirs = direct.call(*command)
            ours = proxied.call(*command)
            assert isinstance(theirs, Err) and theirs.message.startswith("ERR unknown command")
            assert ours == theirs, (
                f"{describe_command(command)}: redis-server says {theirs}, "
                f"shardgate says {ours}")
        assert proxied.call("PING") == "PONG"


# ---------------------------------------------------------------- pipelining


def _normalise(reply):
    if isinstance(reply, Exception):
        return ("error", type(reply).__name__, str(reply))
    return reply


def test_pipeline_of_10000_mixed_commands_replies_in_order(db, redis_server):
    seed = 10_000
    keys = [f"p:{i}" for i in range(300)]
    per_shard = [sum(db.shard_index(k) == i for k in keys) for i in range(SHARDS)]
    assert all(per_shard), per_shard

    def fill(pipe) -> list[tuple]:
        commands = []
        local = random.Random(seed)
        for _ in range(10_000):
            roll = local.random()
            if roll < 0.3:
                c = ("SET", local.choice(keys), f"v{local.randrange(1000)}")
            elif roll < 0.55:
                c = ("GET", local.choice(keys))
            elif roll < 0.75:
                c = ("INCR", local.choice(keys))
            elif roll < 0.9:
                c = ("MGET", *local.sample(keys, local.randint(2, 6)))
            else:
                c = ("DEL", *local.sample(keys, local.randint(1, 3)))
            commands.append(c)
            pipe.execute_command(*c)
        return commands

    reference = redis_server()
    proxied_pipe = db.client(socket_timeout=30).pipeline(transaction=False)
    commands = fill(proxied_pipe)
    ours = [_normalise(r) for r in proxied_pipe.execute(raise_on_error=False)]
    reference_pipe = reference.client(socket_timeout=30).pipeline(transaction=False)
    fill(reference_pipe)
    theirs = [_normalise(r) for r in reference_pipe.execute(raise_on_error=False)]

    assert len(ours) == len(theirs) == 10_000, f"got {len(ours)} replies for 10,000 commands"
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a == b, (f"seed {seed}: reply {i} to {describe_command(commands[i])}: "
                        f"plain redis-server says {b!r}, shardgate says {a!r} "
                        f"(previous command: {describe_command(commands[i - 1]) if i else '-'})")


# ---------------------------------------------------------------- AUTH


def test_client_auth_noauth_wrongpass_then_ok(procs, redis_server, shardgate):
    db = start_sharded(redis_server, shardgate, password="secret", shard_password="spw")
    keys = [db.key_on(i, "auth") for i in range(SHARDS)]
    with db.raw(auth=False) as conn:
        reply = conn.call("GET", keys[0])
        assert reply == Err("NOAUTH Authentication required."), \
            f"GET before AUTH: expected -NOAUTH Authentication required., got {reply!r}"
        reply = conn.call("AUTH", "wrong")
        assert reply == Err("WRONGPASS invalid username-password pair or user is disabled."), \
            f"AUTH wrong: expected -WRONGPASS invalid username-password pair or user " \
            f"is disabled., got {reply!r}"
        reply = conn.call("AUTH", "secret")
        assert reply == "OK", f"AUTH secret: expected +OK, got {reply!r}"
        for key in keys:
            assert conn.call("SET", key, "authed") == "OK"
        replies = conn.call("MGET", *keys)
        assert replies == [b"authed"] * SHARDS, f"MGET after AUTH: got {replies!r}"

    with db.raw(auth=False) as conn:
        hello = conn.call("HELLO", "2", "AUTH", "default", "secret")
        assert isinstance(hello, list) and b"server" in hello, \
            f"HELLO 2 AUTH default secret: expected the server's map, got {hello!r}"
        assert conn.call("GET", keys[1]) == b"authed"

    with db.raw(auth=False) as conn:
        reply = conn.call("AUTH", "default", "secret")
        assert reply == "OK", f"AUTH default secret: expected +OK, got {reply!r}"
        assert conn.call("GET", keys[2]) == b"authed"

    for key in keys:  # shardgate's links authenticated with shard_password
        assert_on_owner(db, key)


def test_redis_py_with_password_and_shards_with_requirepass(procs, redis_server, shardgate):
    db = start_sharded(redis_server, shardgate, password="secret", shard_password="spw")
    client = db.client()  # password="secret"
    keys = spread_keys(db, "py", 4)
    assert client.mset({k: k for k in keys}) is True
    assert client.mget(keys) == [k.encode() for k in keys]
    assert client.dbsize() == len(keys)
    for key in keys:
        assert db.owner(key).client().get(key) == key.encode()  # asked with spw

    anonymous = db.client(password=None)
    with pytest.raises(redis.AuthenticationError):
        anonymous.get(keys[0])
    wrong = db.client(password="not-it")
    # redis-py 4.3 raises the WRONGPASS reply to its AUTH as a plain ResponseError.
    with pytest.raises((redis.AuthenticationError, redis.ResponseError),
                       match="(?i)wrongpass|invalid"):
        wrong.get(keys[0])


# ---------------------------------------------------------------- a shard that dies


def test_dead_shard_gets_a_fast_error_others_carry_on_then_it_comes_back(
        procs, redis_server, shardgate, tmp_path):
    db = start_sharded(redis_server, shardgate)
    victim = db.shards[1]
    dead_key = db.key_on(1, "victim")
    alive = [db.key_on(0, "alive"), db.key_on(2, "alive")]
    conn = db.raw(timeout=5)
    for key in [dead_key, *alive]:
        assert conn.call("SET", key, f"value-of-{key}") == "OK"

    victim.proc.kill()
    victim.proc.wait(timeout=5)
    expected = f"ERR shard {victim.address} unavailable"

    # The request in flight when the link drops may get another error; within
    # 2 s the proxy must be answering with the "unavailable" error, and the
    # client's connection must stay open throughout.
    seen: list = []
    deadline = time.monotonic() + 2
    while True:
        reply = conn.call("GET", dead_key)
        seen.append(reply)
        assert isinstance(reply, Err), (
            f"GET {dead_key!r} after its shard {victim.address} was killed: expected an "
            f"error, got {reply!r} (replies so far {seen})")
        if reply.message.startswith(expected):
            break
        assert time.monotonic() < deadline and len(seen) < 100, (
            f"GET of a key on the killed shard: expected an error starting with "
            f"{expected!r} within 2 s, got {seen}")
        time.sleep(0.02)

    for attempt in range(5):
        start = time.monotonic()
        reply = conn.call("GET", dead_key)
        elapsed = time.monotonic() - start
        assert isinstance(reply, Err) and reply.message.startswith(expected), (
            f"GET on the dead shard, attempt {attempt}: expected {expected!r}..., got {reply!r}")
        assert elapsed < 0.1, (f"GET on the dead shard took {elapsed * 1000:.0f} ms; "
                               f"expected its error in < 100 ms")
        for key in alive:
            got = conn.call("GET", key)
            assert got == f"value-of-{key}".encode(), (
                f"GET {key!r} (shard {db.shard_index(key)}, alive) on the same connection "
                f"while shard 1 is down: got {got!r}")
    replies = conn.pipeline([("GET", alive[0]), ("GET", dead_key), ("GET", alive[1])])
    assert replies[0] == f"value-of-{alive[0]}".encode() \
        and isinstance(replies[1], Err) and replies[1].message.startswith(expected) \
        and replies[2] == f"value-of-{alive[1]}".encode(), \
        f"pipelined GET alive, dead, alive: expected value, {expected}..., value; got {replies}"
    with db.raw(timeout=5) as fresh:  # a new connection is not kept waiting either
        start = time.monotonic()
        reply = fresh.call("GET", dead_key)
        elapsed = time.monotonic() - start
        assert isinstance(reply, Err) and reply.message.startswith(expected) and elapsed < 0.1, \
            f"new connection, GET on the dead shard: got {reply!r} after {elapsed * 1000:.0f} ms"

    # The shard comes back on the same address (empty: no persistence).
    restarted = start_redis_on_port(procs, tmp_path, victim.port, name="victim-restarted")
    back_at = time.monotonic()
    attempts: list = []
    while True:
        reply = conn.call("SET", dead_key, "back")
        attempts.append(reply)
        if reply == "OK":
            break
        assert time.monotonic() - back_at < 2 and len(attempts) < 100, (
            f"shard {victim.address} restarted {time.monotonic() - back_at:.2f} s ago; "
            f"expected keys on it to be served within 2 s, last replies {attempts[-3:]}")
        time.sleep(0.05)
    assert conn.call("GET", dead_key) == b"back"
    assert restarted.client().get(dead_key) == b"back", "the write must land on the restarted shard"
    for key in alive:
        assert conn.call("GET", key) == f"value-of-{key}".encode()
    conn.close()


# ---------------------------------------------------------------- real clients


def test_redis_cli_tls_against_three_shards(db):
    for i in range(SHARDS):
        key = db.key_on(i, "cli")
        set_ = redis_cli(db.port, db.ca, "SET", key, f"cli-{i}")
        assert set_.returncode == 0 and set_.stdout.strip() == "OK", (
            f"redis-cli SET {key} (shard {i}): exit {set_.returncode}, "
            f"output {set_.stdout!r} {set_.stderr!r}")
        get = redis_cli(db.port, db.ca, "GET", key)
        assert get.stdout.strip() == f"cli-{i}", (
            f"redis-cli GET {key}: expected cli-{i}, got {get.stdout!r} {get.stderr!r}")
        assert_on_owner(db, key)


def test_monitor_shows_the_commands_of_every_shard_and_reset_ends_it(db):
    keys = [db.key_on(i, "watched") for i in range(SHARDS)]
    with db.raw() as monitor, db.raw() as worker:
        assert monitor.call("MONITOR") == "OK", "MONITOR: one +OK, however many shards"
        for key in keys:
            assert worker.call("SET", key, "v") == "OK"
        seen = []
        deadline = time.monotonic() + 5
        while len(seen) < len(keys) and time.monotonic() < deadline:
            line = monitor.read_reply("a MONITOR line")
            assert isinstance(line, str), f"MONITOR lines are status replies, got {line!r}"
            seen.extend(k for k in keys if f'"{k}"' in line and '"SET"' in line.upper())
        assert sorted(seen) == sorted(keys), f"SETs seen by MONITOR: {seen}, expected {keys}"
        # RESET ends MONITOR: the connection serves commands again.
        monitor.send("RESET")
        for _ in range(50):
            reply = monitor.read_reply("RESET's reply")
            if reply == "RESET":
                break
        else:
            pytest.fail("no +RESET after MONITOR")
        assert monitor.call("GET", keys[0]) == b"v"


def test_select_another_database_is_served_by_every_shard(db):
    keys = [db.key_on(i, "selected") for i in range(SHARDS)]
    with db.raw() as c, db.raw() as other:
        assert c.call("SELECT", "2") == "OK"
        for key in keys:
            assert c.call("SET", key, "in-db2") == "OK"
        assert c.call("MGET", *keys) == [b"in-db2"] * SHARDS, "MGET across shards in db 2"
        assert c.call("DBSIZE") == SHARDS
        for key in keys:
            owner = db.owner(key)
            assert owner.client(db=2).get(key) == b"in-db2", f"{key} in db 2 of its shard"
            assert owner.client(db=0).get(key) is None, f"{key} must not be in db 0"
        assert other.call("GET", keys[0]) is None, "another client stays in db 0"
        assert c.call("SELECT", "16") == Err("ERR DB index is out of range")
        assert c.call("SELECT", "x") == Err("ERR value is not an integer or out of range")
        assert c.call("SELECT", "0") == "OK"
        assert c.call("GET", keys[0]) is None, "back in db 0"


def test_hello_3_speaks_resp3_through_the_shards(db):
    keys = [db.key_on(i, "resp3") for i in range(SHARDS)]
    with db.raw() as c:
        c.send("HELLO", "3")
        assert c._line("HELLO 3") == b"%7", "HELLO 3 answers with a RESP3 map"
        fields = [c.read_reply("HELLO field") for _ in range(14)]
        assert fields[fields.index(b"proto") + 1] == 3, f"HELLO 3 fields: {fields}"
        c.call("HSET", keys[0], "f", "v")
        c.send("HGETALL", keys[0])
        assert c._line("HGETALL") == b"%1", "a shard's RESP3 map comes through"
        assert [c.read_reply(), c.read_reply()] == [b"f", b"v"]
        c.call("SET", keys[1], "x")
        c.send("MGET", keys[1], keys[2])  # split over two shards, merged in RESP3
        assert c._line("MGET") == b"*2"
        assert c.read_reply() == b"x"
        assert c._line("MGET's missing key") == b"_", "a RESP3 null from the shard"
        assert c.call("HELLO", "2")[fields.index(b"proto")] == b"proto"
        c.send("GET", keys[2])
        assert c._line("GET in RESP2 again") == b"$-1"


def test_one_shard_with_a_password_is_routed_and_checked(procs, redis_server, shardgate):
    one = start_sharded(redis_server, shardgate, slots=("0-16383",), password="pw1")
    with one.raw(auth=False) as c:
        assert c.call("GET", "k") == Err("NOAUTH Authentication required.")
        assert c.call("AUTH", "pw1") == "OK"
        assert c.call("SET", "k", "v") == "OK"
    assert one.shards[0].client().get("k") == b"v"


def test_requests_beyond_the_limits_get_redis_protocol_errors_and_a_close(
        procs, redis_server, shardgate):
    limited = start_sharded(redis_server, shardgate, limits={"max_bulk_len": 1024,
                                                             "max_args": 16})
    with limited.raw() as c:
        assert c.call("SET", "small", "x" * 1000) == "OK", "under the limit works"
        c.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000\r\n")
        assert c.read_reply() == Err("ERR Protocol error: invalid bulk length")
        c.sock.settimeout(5)
        assert c.sock.recv(1) == b"", "the connection is closed after the error"
    with limited.raw() as c:
        c.send_raw(b"*100\r\n")
        assert c.read_reply() == Err("ERR Protocol error: invalid multibulk length")
        c.sock.settimeout(5)
        assert c.sock.recv(1) == b""
    with limited.raw() as c:  # a pipeline before the bad request is answered first
        c.send_raw(b"*1\r\n$4\r\nPING\r\n*17\r\n")
        assert c.read_reply() == "PONG"
        assert c.read_reply() == Err("ERR Protocol error: invalid multibulk length")


def test_client_tracking_in_resp3_pushes_invalidations_from_every_shard(db):
    keys = [db.key_on(i, "tracked") for i in range(SHARDS)]
    with db.raw() as tracker, db.raw() as writer:
        assert writer.call("CLIENT", "TRACKING", "on") == Err(
            "ERR shardgate: CLIENT TRACKING needs RESP3 (HELLO 3) on a database with several shards")
        for key in keys:
            assert writer.call("SET", key, "v1") == "OK"
        tracker.send("HELLO", "3")
        assert tracker._line("HELLO 3") == b"%7"
        for _ in range(14):
            tracker.read_reply()
        assert tracker.call("CLIENT", "TRACKING", "on") == "OK"
        for key in keys:
            assert tracker.call("GET", key) == b"v1"  # now tracked by the key's shard
        for key in keys:
            assert writer.call("SET", key, "v2") == "OK"
        invalidated = set()
        deadline = time.monotonic() + 5
        tracker.send("PING")
        while time.monotonic() < deadline:
            reply = tracker.read_reply("an invalidation push or PONG")
            if reply == "PONG":
                if invalidated == set(keys):
                    break
                tracker.send("PING")
                continue
            assert isinstance(reply, list) and reply[0] == b"invalidate", reply
            invalidated.update(k.decode() for k in reply[1])
        assert invalidated == set(keys), f"invalidations received: {invalidated}"


def test_resp3_subscriber_may_send_any_command_and_gets_messages_as_pushes(db):
    channels = [db.key_on(i, "r3news") for i in range(SHARDS)]
    key = db.key_on(2, "r3key")
    with db.raw() as sub, db.raw() as pub:
        assert pub.call("SET", key, "v") == "OK"
        sub.send("HELLO", "3")
        assert sub._line("HELLO 3") == b"%7"
        for _ in range(14):
            sub.read_reply()
        sub.send("SUBSCRIBE", *channels)
        for n, channel in enumerate(channels, 1):
            assert sub._line("a push") == b">3"
            assert [sub.read_reply() for _ in range(3)] == [b"subscribe", channel.encode(), n]
        assert sub.call("GET", key) == b"v", "RESP3 allows commands while subscribed"
        for channel in channels:
            assert pub.call("PUBLISH", channel, "hi") == 1
        got = []
        for _ in channels:
            assert sub._line("a message push") == b">3"
            got.append([sub.read_reply() for _ in range(3)])
        assert sorted(got) == sorted([[b"message", c.encode(), b"hi"] for c in channels]), got
        sub.send("UNSUBSCRIBE")
        left = []
        for _ in channels:
            assert sub._line("an unsubscribe push") == b">3"
            left.append([sub.read_reply() for _ in range(3)])
        assert [n for _, _, n in left] == [2, 1, 0], left
        assert sub.call("PING") == "PONG"


def test_pubsub_introspection_and_config_set_cover_every_shard(db):
    channels = [db.key_on(i, "intro") for i in range(SHARDS)]
    with db.raw() as sub, db.raw() as c:
        sub.send("SUBSCRIBE", *channels)
        for _ in channels:
            sub.read_reply()
        assert sorted(c.call("PUBSUB", "CHANNELS", "intro*")) == sorted(ch.encode() for ch in channels)
        asked = [channels[2], "nobody", channels[0], channels[1]]
        assert c.call("PUBSUB", "NUMSUB", *asked) == [
            channels[2].encode(), 1, b"nobody", 0, channels[0].encode(), 1, channels[1].encode(), 1]
        assert c.call("CONFIG", "SET", "maxmemory-policy", "allkeys-lru") == "OK"
        for shard in db.shards:
            assert shard.client().config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"


def test_save_reaches_every_shard(db):
    before = [s.client().lastsave() for s in db.shards]
    time.sleep(1.1)  # LASTSAVE has a resolution of one second
    with db.raw() as c:
        assert c.call("SAVE") == "OK"
    after = [s.client().lastsave() for s in db.shards]
    assert all(a > b for a, b in zip(after, before)), f"LASTSAVE before {before}, after {after}"
