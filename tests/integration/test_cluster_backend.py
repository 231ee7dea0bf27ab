"""A Redis Cluster behind one endpoint: shardgate discovers the cluster from
its seeds (CLUSTER SHARDS), routes every key to the master that owns its slot,
and follows the cluster in steady state -- a reshard, a master added and
given slots -- by reading the topology again every refresh_interval_ms.

Each test starts a real six-node cluster (cluster_env: three masters, one
replica each) and shardgate with `cluster: {seeds: [...]}` on a plaintext
endpoint. Where a key lives is checked on the cluster itself: a GET on a node
that does not own the key's slot answers MOVED, so a value read from
`env.slot_owner(slot)` directly proves the key is there.

Following MOVED/ASK/TRYAGAIN/CLUSTERDOWN under load, failovers as they
happen and TLS to the nodes are test_cluster_redirects.py's; here a reshard
is also followed by MOVED, and the last test shows a failover followed."""
from __future__ import annotations

import re
import socket
import time

import pytest
import redis
from redis.cluster import RedisCluster

from cluster_env import ClusterEnv, start_cluster
from conftest import run_shardgate, write_config
from sharding_env import keyslot

REFRESH_MS = 200
CHANGE_TIMEOUT_S = 15.0


def cluster_db(seeds: list[str], refresh_ms: int = REFRESH_MS) -> dict:
    return {"name": "big", "listen": "127.0.0.1:0", "tls": False,
            "cluster": {"seeds": seeds, "refresh_interval_ms": refresh_ms}}


def client(sg, **kw) -> redis.Redis:
    kw.setdefault("socket_timeout", 10)
    return redis.Redis(host="127.0.0.1", port=sg.port("big"), decode_responses=True, **kw)


def check_on_owner(env: ClusterEnv, items: dict[str, str]) -> None:
    """Every key holds its value on the master that owns its slot."""
    owners = env.slot_map()
    by_port: dict[int, redis.Redis] = {}
    try:
        for key, value in items.items():
            port = owners[keyslot(key)]
            assert port, f"slot {keyslot(key)} of {key!r} is not covered"
            if port not in by_port:
                by_port[port] = env.by_port(port).client(decode_responses=True)
            assert by_port[port].get(key) == value, f"{key!r} (slot {keyslot(key)}) on node {port}"
    finally:
        for r in by_port.values():
            r.close()


def wait_for_log(sg, pattern: str, after: int = 0, timeout: float = CHANGE_TIMEOUT_S) -> re.Match:
    """The first line matching `pattern` past the first `after` characters."""
    deadline = time.monotonic() + timeout
    while True:
        found = re.search(pattern, sg.log()[after:])
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"no log line /{pattern}/ after {timeout} s:\n{sg.log()[after:]}")
        time.sleep(0.05)


def wait_routed(r: redis.Redis, items: dict[str, str], timeout: float = CHANGE_TIMEOUT_S) -> None:
    """Until every key reads back its value through shardgate. A reshard
    moves slots one at a time; shardgate follows each MOVED, so this
    normally reads at once (a MOVED reaching the client is still polled
    past, as the test is about the refresh)."""
    keys = list(items)
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = r.mget(keys)
            assert got == [items[k] for k in keys]
            return
        except redis.ResponseError as e:
            if not str(e).startswith("MOVED") or time.monotonic() > deadline:
                raise


def changes_logged(sg, after: int) -> int:
    return sg.log()[after:].count("cluster topology changed")


def wait_changes_quiet(sg, after: int, quiet_s: float = 6.0, timeout: float = 30.0) -> None:
    """Until no "topology changed" line was logged for quiet_s (shardgate sums
    up the changes of a migration in a line every 5 s)."""
    deadline = time.monotonic() + timeout
    count, since = changes_logged(sg, after), time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, sg.log()[after:]
        time.sleep(0.2)
        if changes_logged(sg, after) != count:
            count, since = changes_logged(sg, after), time.monotonic()


def stop_cleanly(sg) -> None:
    """SIGTERM ends shardgate at once and cleanly, refreshes running or not."""
    sg.proc.terminate()
    assert sg.proc.wait(timeout=10) == 0
    assert sg.log().rstrip().endswith("stopped"), sg.log()[-2000:]


def shardgate_link_ids(node) -> set[str]:
    """Client ids of the connections to `node` other than this check's own,
    the replicas' (flag S) and a migrating node's (MIGRATE keeps its
    connection, last command RESTORE-ASKING): shardgate's shared links."""
    with redis.Redis(host="127.0.0.1", port=node.port, single_connection_client=True,
                     decode_responses=True) as r:
        own = str(r.client_id())
        return {str(c["id"]) for c in r.client_list()
                if str(c["id"]) != own and "S" not in c["flags"] and c["cmd"] != "restore-asking"}


@pytest.fixture
def env(procs, tmp_path):
    return start_cluster(procs, tmp_path)


def test_keys_go_to_the_master_owning_their_slot(env, shardgate):
    seed = env.masters()[1]
    sg = shardgate([cluster_db([seed.address])])
    assert re.search(r"db big: cluster discovered from 127\.0\.0\.1:\d+ \(CLUSTER SHARDS\): "
                     r"3 masters, 3 replicas, 16384 slots covered", sg.log()), sg.log()
    assert "Redis Cluster of 3 master(s)" in sg.log()
    items = {f"user:{i}": f"v{i}" for i in range(600)}
    with client(sg) as r:
        pipe = r.pipeline(transaction=False)
        for k, v in items.items():
            pipe.set(k, v)
        assert all(pipe.execute())
        check_on_owner(env, items)
        # Across slots and masters: split, sent to each owner, merged in order.
        keys = list(items)[:50]
        assert r.mget(keys) == [items[k] for k in keys]
        assert r.delete(*keys[:10]) == 10
        assert r.exists(*keys[:20]) == 10
        assert r.dbsize() == 590  # every master's count, summed
        assert r.incr("counter") == 1 and r.get("counter") == "1"


def test_cluster_aware_clients_see_one_node_at_the_endpoint(env, shardgate):
    sg = shardgate([cluster_db([env.masters()[0].address])])
    port = sg.port("big")
    with client(sg) as r:
        slots = r.execute_command("CLUSTER", "SLOTS")
        assert len(slots) == 1
        assert slots[0][:2] == [0, 16383]
        assert slots[0][2][:2] == ["127.0.0.1", port]
        assert "cluster_state:ok" in r.execute_command("CLUSTER", "INFO")
        assert r.info("cluster")["cluster_enabled"] == 1
        assert r.execute_command("CLUSTER", "KEYSLOT", "foo") == 12182
        r.set("{tag}a", "1")
        assert r.execute_command("CLUSTER", "COUNTKEYSINSLOT", keyslot("{tag}a")) == 1
    # redis-py's cluster client through the one endpoint: every command here.
    with RedisCluster(host="127.0.0.1", port=port, socket_timeout=10, decode_responses=True) as rc:
        assert [n.name for n in rc.get_nodes()] == [f"127.0.0.1:{port}"]
        for i in range(100):
            assert rc.set(f"rc:{i}", i)
        assert [rc.get(f"rc:{i}") for i in range(100)] == [str(i) for i in range(100)]
    check_on_owner(env, {f"rc:{i}": str(i) for i in range(100)})


def test_a_reshard_is_followed_without_dropping_links(env, shardgate):
    masters = env.masters()
    source, target, bystander = masters[0], masters[1], masters[2]
    sg = shardgate([cluster_db([source.address])])
    items = {f"key:{i}": f"value{i}" for i in range(3000)}
    with client(sg) as r:
        pipe = r.pipeline(transaction=False)
        for k, v in items.items():
            pipe.set(k, v)
        assert all(pipe.execute())
        on_bystander = [k for k in items if env.slot_owner(keyslot(k)) is bystander][:20]
        assert [r.get(k) for k in on_bystander] == [items[k] for k in on_bystander]
        links_before = shardgate_link_ids(bystander)
        assert links_before, "shardgate has no connection to the third master"
        before = env.slot_map()
        log_at = len(sg.log())

        env.reshard(1200, source, target)
        after = env.slot_map()
        moved = [s for s in range(16384) if before[s] != after[s]]
        assert len(moved) == 1200 and all(after[s] == target.port for s in moved)
        # Every key reads again once a refresh saw the end of the reshard,
        # the moved ones from their new owner.
        wait_routed(r, items)
        line = wait_for_log(sg, r"db big: cluster topology changed \(CLUSTER SHARDS from [^)]*\): "
                                r"slots? [^;]*127\.0\.0\.1:%d -> 127\.0\.0\.1:%d" % (source.port, target.port),
                            after=log_at)
        assert "3 masters, 3 replicas, 16384 slots covered" in sg.log()[log_at:], line.group(0)
        keys = list(items)
        moved_keys = [k for k in keys if keyslot(k) in set(moved)]
        assert len(moved_keys) > 100
        fresh = {f"{k}:new": "n" for k in moved_keys[:200]}
        # Keys written now go straight to the new owner (no MOVED to follow).
        for k in moved_keys[:200]:
            assert r.set(f"{k}:new", "n")
        check_on_owner(env, fresh)
        check_on_owner(env, {k: items[k] for k in moved_keys})
        # The third master's connections carried on: no new link was opened.
        assert [r.get(k) for k in on_bystander] == [items[k] for k in on_bystander]
        assert shardgate_link_ids(bystander) == links_before
    # A change is logged once: the reshard's changes in a line at once and a
    # summary of the rest at most 5 s later; refreshes after it find nothing new.
    wait_changes_quiet(sg, log_at)
    logged = changes_logged(sg, log_at)
    time.sleep(5 * REFRESH_MS / 1000)
    assert changes_logged(sg, log_at) == logged, sg.log()[log_at:]
    stop_cleanly(sg)


def test_a_new_master_given_slots_gets_their_keys(env, shardgate):
    sg = shardgate([cluster_db([env.masters()[0].address])])
    items = {f"n:{i}": str(i) for i in range(2000)}
    with client(sg) as r:
        pipe = r.pipeline(transaction=False)
        for k, v in items.items():
            pipe.set(k, v)
        assert all(pipe.execute())
        log_at = len(sg.log())
        fresh = env.add_master()
        # A master without slots routes nothing: the map stays as it was.
        time.sleep(3 * REFRESH_MS / 1000)
        assert "cluster topology changed" not in sg.log()[log_at:]
        env.reshard(1000, env.masters()[0], fresh)
        wait_routed(r, items)
        wait_for_log(sg, r"cluster topology changed .* -> 127\.0\.0\.1:%d.*4 masters" % fresh.port,
                     after=log_at)
        keys = list(items)
        on_fresh = [k for k in keys if env.slot_owner(keyslot(k)) is fresh]
        assert len(on_fresh) > 50
        for k in on_fresh:
            assert r.set(k, "again")
        check_on_owner(env, {k: "again" for k in on_fresh})
        assert r.dbsize() == len(items)


def test_a_seed_that_is_down_is_skipped(env, shardgate, refused_address):
    sg = shardgate([cluster_db([refused_address, env.masters()[2].address])])
    assert f"cluster discovered from {env.masters()[2].address}" in sg.log()
    with client(sg) as r:
        assert r.set("hello", "world")
        assert r.get("hello") == "world"
    check_on_owner(env, {"hello": "world"})


def test_no_seed_answering_fails_the_start(tmp_path, refused_address, redis_server):
    plain = redis_server()  # a Redis that is not in cluster mode answers, but with no cluster
    path = write_config(tmp_path, [cluster_db([refused_address, plain.address])])
    done = run_shardgate(["--config", path], timeout=20)
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "databases[0].cluster.seeds: no seed answered with the cluster's slots: " in out, out
    assert f"{refused_address}: connect: Connection refused" in out, out
    assert f"{plain.address}: " in out and "cluster support disabled" in out, out


def test_a_failover_is_followed_at_the_next_refresh(env, shardgate):
    """A dead master is replaced by its promoted replica in the routing
    (the failed connection asks for a refresh; the periodic one backs it)."""
    sg = shardgate([cluster_db([env.masters()[0].address, env.masters()[1].address])])
    items = {f"f:{i}": str(i) for i in range(1000)}
    with client(sg) as r:
        pipe = r.pipeline(transaction=False)
        for k, v in items.items():
            pipe.set(k, v)
        assert all(pipe.execute())
        for n in env.masters():  # every write replicated before the kill
            n.command("WAIT", "1", "5000")
        log_at = len(sg.log())
        dead, promoted = env.kill_master(0)
        deadline = time.monotonic() + CHANGE_TIMEOUT_S
        while True:  # until the dead master's slots answer from the promoted replica
            try:
                assert r.mget(list(items)) == list(items.values())
                break
            except (redis.ResponseError, redis.ConnectionError) as e:
                if time.monotonic() > deadline:
                    raise AssertionError(f"still failing after {CHANGE_TIMEOUT_S} s: {e}")
                time.sleep(0.05)
        wait_for_log(sg, r"cluster topology changed .*127\.0\.0\.1:%d -> 127\.0\.0\.1:%d"
                     % (dead.port, promoted.port), after=log_at)
        on_promoted = [k for k in items if env.slot_owner(keyslot(k)) is promoted]
        assert on_promoted
        for k in on_promoted:
            assert r.set(k, "after")
        check_on_owner(env, {k: "after" for k in on_promoted})
    stop_cleanly(sg)


def test_admin_api_shows_the_cluster_masters_and_their_slots(env, admin_shardgate):
    sg = admin_shardgate([cluster_db([env.masters()[0].address])])
    status = sg.curl("GET", "/v1/bdbs")
    assert status.status == 200, str(status)
    [bdb] = status.json()
    assert bdb["mode"] == "cluster", bdb
    owners = env.slot_map()
    want = {}
    for master in env.masters():
        ranges, slot = [], 0
        while slot < 16384:
            if owners[slot] != master.port:
                slot += 1
                continue
            first = slot
            while slot + 1 < 16384 and owners[slot + 1] == master.port:
                slot += 1
            ranges.append(f"{first}-{slot}" if slot > first else str(first))
            slot += 1
        want[master.address] = ",".join(ranges)
    assert {s["address"]: s["slots"] for s in bdb["shards"]} == want, bdb
    assert all(s["state"] == "up" for s in bdb["shards"]), bdb


def test_a_link_opened_for_an_ask_to_a_node_outside_the_map_closes_once_idle(env, shardgate):
    """An ASK may name a master shardgate does not route to yet (a new one,
    being given its first slot): a link of its own is opened for it. Once the
    migration is over the node is in the map and reached by its shared link;
    the ASK link, idle, is closed (ClusterRedirects::kExtraLinkIdleMs, 10 s,
    checked at the worker's upkeep, every 5 s), not kept for the worker's life."""
    sg = shardgate([cluster_db([env.masters()[0].address], refresh_ms=60000)], workers=1)
    fresh = env.add_master()
    keys = ["{ask}a", "{ask}b"]
    slot = keyslot(keys[0])
    source = env.slot_owner(slot)
    with client(sg) as r:
        assert r.set(keys[0], "A") and r.set(keys[1], "B")
        assert shardgate_link_ids(fresh) == set()
        fresh.command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        source.command("CLUSTER", "SETSLOT", slot, "MIGRATING", fresh.node_id)
        source.command("MIGRATE", "127.0.0.1", fresh.port, "", 0, 5000, "KEYS", keys[0])
        assert r.get(keys[0]) == "A"  # ASK, followed on a link of its own
        ask_links = shardgate_link_ids(fresh)
        assert len(ask_links) == 1, ask_links

        source.command("MIGRATE", "127.0.0.1", fresh.port, "", 0, 5000, "KEYS", keys[1])
        for node in env.masters() + [fresh]:
            node.command("CLUSTER", "SETSLOT", slot, "NODE", fresh.node_id)
        # MOVED: the node joins this worker's map, with a shared link of its own.
        assert r.mget(keys) == ["A", "B"]
        links = shardgate_link_ids(fresh)
        assert len(links) == 2 and ask_links < links, links

        started = time.monotonic()
        deadline = started + 30
        while shardgate_link_ids(fresh) != links - ask_links:
            assert time.monotonic() < deadline, (
                f"the ASK link {ask_links} still open after 30 s: {shardgate_link_ids(fresh)}")
            assert r.get(keys[1]) == "B"  # the map's link stays busy, and open
            time.sleep(0.5)
        # Closed after it idled, not at once.
        assert time.monotonic() - started > 5
        assert r.mget(keys) == ["A", "B"]


def _resp(*args) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def _read_replies(sock, n: int, timeout: float) -> list[bytes]:
    """n one-line replies (integers, errors) from a raw socket."""
    sock.settimeout(timeout)
    buf = b""
    while buf.count(b"\r\n") < n:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {buf!r}"
        buf += chunk
    return buf.split(b"\r\n")[:n]


def test_a_pipelined_write_held_by_the_old_owner_is_not_overtaken_after_the_map_changes(
        env, shardgate):
    """A client pipelines RPUSH k 1, RPUSH k 2. The first reaches the slot's
    old owner, which holds it (CLIENT PAUSE WRITE) while the slot is given to
    another master and shardgate's refresh publishes that. The second must
    not go straight to the new owner ahead of the first -- the first is
    answered MOVED once the pause ends and resent there -- or the list would
    read [2, 1]. shardgate routes the second by the new map only once the
    first is answered."""
    sg = shardgate([cluster_db([env.masters()[0].address], refresh_ms=100)], workers=1)
    key = "{order}list"
    slot = keyslot(key)
    source = env.slot_owner(slot)
    target = next(m for m in env.masters() if m is not source)
    pause_ms = 3000
    with client(sg) as r, socket.create_connection(("127.0.0.1", sg.port("big"))) as raw:
        assert r.exists(key) == 0
        log_at = len(sg.log())
        assert source.command("CLIENT", "PAUSE", pause_ms, "WRITE") in (b"OK", "OK", True)
        paused_at = time.monotonic()
        raw.sendall(_resp("RPUSH", key, "1"))
        # The slot (empty on the source: the list is not there yet) is the
        # target's; the refresh publishes it while RPUSH 1 is held.
        for node in env.masters():
            node.command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
        wait_for_log(sg, r"cluster topology changed .*slots? %d\b" % slot, after=log_at, timeout=2.5)
        assert time.monotonic() - paused_at < pause_ms / 1000, "the pause ended before the map changed"
        raw.sendall(_resp("RPUSH", key, "2"))
        assert _read_replies(raw, 2, timeout=15) == [b":1", b":2"]
        assert time.monotonic() - paused_at >= pause_ms / 1000 - 0.2
        assert r.lrange(key, 0, -1) == ["1", "2"]
    with target.client(decode_responses=True) as t:
        assert t.lrange(key, 0, -1) == ["1", "2"]
