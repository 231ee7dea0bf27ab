"""Every topology change an operator makes, under continuous load: the clients
of shardgate never see it.

Each test starts a fresh six-node cluster (three masters, a replica each,
cluster_env) and shardgate in front of it, runs the load of cluster_load
(several clients writing their own keys with known values, reading back what
they wrote, recording every acknowledged write and every error) while the
cluster changes, and then checks:

- rebalance (redis-cli --cluster rebalance) of an uneven cluster: no error,
  so no MOVED/ASK reached a client, and every acknowledged write reads back
  with its value (through shardgate and on the slot's owner);
- a master added (add-node) and 1200 slots resharded onto it: the same, and
  shardgate routes to it (its keys and commands grow; the metrics list 4
  masters);
- a master removed: its last slots resharded away under load, then del-node
  (which shuts it down): the same, and shardgate dropped it (the 2 masters
  left are its only shards, the node gone from the node metric, no error);
- a master killed (SIGKILL) and started again after the failover: it rejoins
  as a replica; errors only for its slots and only until shortly after the
  failover; the per-node metric shows it failed, then back as a replica.

shardgate logs each change once: the slots moved and the masters, and the
nodes that joined, left, failed or came back.
"""
from __future__ import annotations

import re
import socket
import time

import pytest
import redis

from cluster_env import ClusterEnv, start_cluster
from cluster_load import Load, check_everything_readable, cluster_db, metrics, metrics_port
from sharding_env import keyslot

# After an automatic failover completes, shardgate follows within a refresh
# (asked for by the failed connection, retried at most every second).
FOLLOW_GRACE_S = 3.0
METRICS = {"listen": "127.0.0.1:0", "tls": False}
WAIT_S = 20.0


@pytest.fixture
def env(procs, tmp_path):
    return start_cluster(procs, tmp_path)


def start(shardgate, env: ClusterEnv, refresh_ms: int = 60000):
    db = cluster_db([env.masters()[0].address])
    db["cluster"]["refresh_interval_ms"] = refresh_ms
    sg = shardgate([db], metrics=METRICS)
    return sg, metrics_port(sg)


def shard_series(m: dict[str, float]) -> set[str]:
    """The masters shardgate routes to: its per-shard series' addresses."""
    return {re.search(r'shard="([^"]+)"', k).group(1) for k in m
            if k.startswith('shardgate_shard_up{db="big",')}


def node_up(m: dict[str, float]) -> dict[tuple[str, str], float]:
    """shardgate_cluster_node_up as {(node, role): value}."""
    out = {}
    for k, v in m.items():
        hit = re.match(r'shardgate_cluster_node_up\{db="big",node="([^"]+)",role="([^"]+)"\}$', k)
        if hit:
            out[(hit.group(1), hit.group(2))] = v
    return out


def wait_metrics(mport: int, condition, what: str, timeout: float = WAIT_S) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        m = metrics(mport)
        if condition(m):
            return m
        if time.monotonic() > deadline:
            raise AssertionError(f"metrics never showed {what}: "
                                 f"{ {k: v for k, v in m.items() if 'cluster' in k or 'shard_up' in k} }")
        time.sleep(0.1)


def log_lines(sg, pattern: str, after: int = 0) -> list[str]:
    return [line for line in sg.log()[after:].splitlines() if re.search(pattern, line)]


def wait_not_dialled(port: int, quiet_s: float = 2.5, timeout: float = 15.0) -> int:
    """Listens on the port of a node that is gone until nothing connected to
    it for quiet_s (a shard link that is still kept retries at most a second
    apart); returns how many connections came. Fails if they never stop."""
    deadline = time.monotonic() + timeout
    came = 0
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(16)
        last = time.monotonic()
        while time.monotonic() - last < quiet_s:
            assert time.monotonic() < deadline, f"still dialled after {timeout} s ({came} connections)"
            listener.settimeout(0.2)
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            conn.close()
            came += 1
            last = time.monotonic()
    return came


def moved_slots(before: list[int], after: list[int]) -> set[int]:
    return {s for s in range(len(before)) if before[s] != after[s]}


def check_clean(load: Load, sg, env: ClusterEnv, moved: set[int]) -> None:
    """No error reached a client, the load touched the moved slots, and every
    acknowledged write reads back."""
    assert load.errors() == [], load.errors()[:20]
    acked = load.acked()
    assert sum(1 for k in acked if keyslot(k) in moved) > 50, "the load did not touch the moved slots"
    check_everything_readable(sg, env, acked)


def test_a_rebalance_under_load_reaches_no_client(env, shardgate):
    sg, mport = start(shardgate, env)
    # Uneven first (no keys yet, so quick): 6961 / 3961 / 5462.
    env.reshard(1500, env.masters()[1], env.masters()[0])
    log_at = len(sg.log())
    with Load(sg.port("big")) as load:
        load.wait_ops(2000)
        before = env.slot_map()
        started = time.monotonic()
        env.rebalance()
        took = time.monotonic() - started
        load.wait_ops(2000)
    moved = moved_slots(before, env.slot_map())
    assert len(moved) > 800, len(moved)
    assert max(env.slots_of(m) for m in env.masters()) - min(env.slots_of(m) for m in env.masters()) < 400
    check_clean(load, sg, env, moved)
    m = metrics(mport)
    assert m['shardgate_cluster_redirects_total{db="big",kind="moved"}'] > 0, m
    assert len(shard_series(m)) == 3
    # Logged as the slots moved: a line at once, then one every 5 s at most
    # summing up the changes since (not a line per refresh or redirect).
    changes = log_lines(sg, r"cluster topology changed", after=log_at)
    assert changes, sg.log()[-3000:]
    assert len(changes) <= took / 5 + 3, (took, changes)
    assert m['shardgate_cluster_topology_refreshes_total{db="big",result="changed"}'] >= len(changes)
    assert not log_lines(sg, r"cluster nodes changed", after=log_at)


def test_a_master_added_and_given_slots_under_load_is_used(env, shardgate):
    sg, mport = start(shardgate, env)
    with Load(sg.port("big")) as load:
        load.wait_ops(2000)
        fresh = env.add_master()
        load.wait_ops(1000)
        before = env.slot_map()
        env.reshard(1200, env.masters()[0], fresh)
        with fresh.client() as r:
            calls_before = r.info("commandstats").get("cmdstat_set", {}).get("calls", 0)
        load.wait_ops(2000)
    moved = moved_slots(before, env.slot_map())
    assert len(moved) == 1200 and env.slots_of(fresh) == 1200
    check_clean(load, sg, env, moved)
    with fresh.client() as r:
        assert r.dbsize() > 50
        # The writes after the reshard reached the new master through shardgate.
        assert r.info("commandstats")["cmdstat_set"]["calls"] > calls_before + 50
    m = wait_metrics(mport, lambda m: fresh.address in shard_series(m), "the new master as a shard")
    assert len(shard_series(m)) == 4, shard_series(m)
    assert node_up(m).get((fresh.address, "master")) == 1, node_up(m)
    assert len(log_lines(sg, r"cluster nodes changed \([^)]*\): .*%s joined as master" % re.escape(fresh.address))) == 1, \
        sg.log()[-3000:]
    assert log_lines(sg, r"cluster topology changed .* -> %s\b.*4 masters" % re.escape(fresh.address))


def test_a_master_resharded_away_and_removed_under_load_is_dropped(env, shardgate):
    sg, mport = start(shardgate, env, refresh_ms=1000)
    victim, heir = env.masters()[2], env.masters()[0]
    # Most of its slots leave before the load (no keys yet, so quick); the
    # last 1000 leave under load, with their keys.
    env.reshard(env.slots_of(victim) - 1000, victim, heir)
    with Load(sg.port("big")) as load:
        load.wait_ops(2000)
        before = env.slot_map()
        env.reshard(env.slots_of(victim), victim, heir)
        assert env.slots_of(victim) == 0
        load.wait_ops(1000)
        env.remove_node(victim)
        assert not victim.alive()
        # Shardgate forgets it without a client noticing.
        m = wait_metrics(mport, lambda m: all(n != victim.address for n, _ in node_up(m)),
                         "the removed node gone")
        assert wait_not_dialled(victim.port) == 0
        load.wait_ops(2000)
    moved = moved_slots(before, env.slot_map())
    assert len(moved) == 1000
    check_clean(load, sg, env, moved)
    # Two masters left; del-node gave the victim's replica to one of them.
    assert shard_series(m) == {n.address for n in env.masters()}, shard_series(m)
    assert len(shard_series(m)) == 2 and victim.address not in shard_series(m), shard_series(m)
    assert sorted(r for n, r in node_up(m)) == ["master"] * 2 + ["replica"] * 3, node_up(m)
    assert set(node_up(m).values()) == {1.0}, node_up(m)
    assert m[f'shardgate_shard_up{{db="big",shard="{heir.address}"}}'] == 1
    assert len(log_lines(sg, r"cluster nodes changed \([^)]*\): .*%s left" % re.escape(victim.address))) == 1, \
        sg.log()[-3000:]


def test_a_killed_master_rejoins_as_a_replica_and_the_node_metric_follows(env, shardgate):
    sg, mport = start(shardgate, env, refresh_ms=1000)
    m = wait_metrics(mport, lambda m: len(node_up(m)) == 6, "six nodes")
    assert sorted(r for n, r in node_up(m)) == ["master"] * 3 + ["replica"] * 3, node_up(m)
    assert set(node_up(m).values()) == {1.0}
    victim = env.masters()[2]
    dead_slots = {s for s, port in enumerate(env.slot_map()) if port == victim.port}
    with Load(sg.port("big")) as load:
        load.wait_ops(2000)
        dead, promoted = env.kill_master(2)
        failed_over_at = time.monotonic()
        assert dead is victim
        m = wait_metrics(mport, lambda m: [v for (n, _), v in node_up(m).items() if n == victim.address] == [0]
                         and node_up(m).get((promoted.address, "master")) == 1,
                         "the dead master down and its replica promoted")
        load.wait_ops(2000)
        # shardgate no longer tries the dead master once its slots are the
        # promoted node's (its old links are retired within seconds).
        wait_not_dialled(victim.port)
        env.restart(victim)
        m = wait_metrics(mport, lambda m: node_up(m).get((victim.address, "replica")) == 1,
                         "the restarted node up as a replica")
        load.wait_ops(2000)
    assert victim in env.replicas(promoted)
    errors = load.errors()
    assert [e for e in errors if keyslot(e[1]) not in dead_slots] == [], errors[:20]
    assert [e for e in errors if e[0] > failed_over_at + FOLLOW_GRACE_S] == [], errors[:20]
    assert len(node_up(m)) == 6 and set(node_up(m).values()) == {1.0}, node_up(m)
    assert len(shard_series(m)) == 3 and victim.address not in shard_series(m)
    # Still serving every slot, the old master's ones through the promoted node.
    with redis.Redis(host="127.0.0.1", port=sg.port("big"), socket_timeout=15, decode_responses=True) as r:
        keys = [k for k in load.acked() if keyslot(k) in dead_slots][:100] + list(load.acked())[:100]
        for k in keys:
            assert r.set(k, "after") is True and r.get(k) == "after"
    # Each step logged once.
    victim_re = re.escape(victim.address)
    assert len(log_lines(sg, r"cluster nodes changed \([^)]*\): .*%s failed" % victim_re)) == 1, sg.log()[-3000:]
    assert len(log_lines(sg, r"cluster nodes changed \([^)]*\): .*%s is back as replica" % victim_re)) == 1, \
        sg.log()[-3000:]
    assert len(log_lines(sg, r"cluster topology changed .*%s -> %s" % (victim_re, re.escape(promoted.address)))) == 1
