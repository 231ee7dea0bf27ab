"""A cluster that changes under load: shardgate follows MOVED, ASK, TRYAGAIN
and CLUSTERDOWN itself, so its clients never see them.

Each test starts a real six-node cluster (cluster_env) and shardgate in front
of it with refresh_interval_ms 60000: within a test no periodic refresh runs,
so only what a MOVED (or a failed node connection) triggers can keep routing
right. Several plain redis-py clients write their own keys with known values
(a Writer each, on a thread, for a bounded time), read back what they wrote,
and record every acknowledged write and every error with its time and slot.

- a reshard of 1200 slots holding keys: no error, no MOVED/ASK reaches a
  client, every acknowledged write reads back (through shardgate and on the
  owning node), and the metrics show the MOVED followed and the refreshes;
- a CLUSTER FAILOVER on a replica: no error;
- a master killed (SIGKILL): errors only for keys of that master's slots, and
  only until shortly after its replica took over.
- the same reshard over TLS to the nodes (shard_tls, nodes' TLS ports).
"""
from __future__ import annotations

import re
import time

import pytest
import redis

from cluster_env import ClusterEnv, start_cluster
from cluster_load import Load, check_everything_readable, cluster_db, metrics, metrics_port
from sharding_env import keyslot

# After a failover completes, shardgate's map follows within a refresh
# (asked for by the failed connection, retried at most every second).
FOLLOW_GRACE_S = 3.0


@pytest.fixture
def env(procs, tmp_path):
    return start_cluster(procs, tmp_path)


def reshard_under_load(sg, env: ClusterEnv) -> None:
    source, target = env.masters()[0], env.masters()[1]
    mport = metrics_port(sg)
    with Load(sg.port("big")) as load:
        load.wait_ops(2000)  # every writer's keys exist before slots move
        before = env.slot_map()
        env.reshard(1200, source, target)
        load.wait_ops(2000)
    after = env.slot_map()
    moved = [s for s in range(16384) if before[s] != after[s]]
    assert len(moved) == 1200
    assert load.errors() == [], load.errors()[:20]
    acked = load.acked()
    assert sum(1 for k in acked if keyslot(k) in set(moved)) > 100, "the load did not touch the moved slots"
    check_everything_readable(sg, env, acked)
    m = metrics(mport)
    assert m['shardgate_cluster_redirects_total{db="big",kind="moved"}'] > 0, m
    assert m['shardgate_cluster_topology_refreshes_total{db="big",result="changed"}'] > 0, m
    assert m['shardgate_cluster_topology_version{db="big"}'] > 1, m
    # No periodic refresh within the test: every change came from a MOVED.
    assert "cluster topology changed" in sg.log()


def test_a_reshard_under_load_reaches_no_client(env, shardgate):
    sg = shardgate([cluster_db([env.masters()[0].address])], metrics={"listen": "127.0.0.1:0", "tls": False})
    reshard_under_load(sg, env)


def test_a_manual_failover_under_load_reaches_no_client(env, shardgate):
    sg = shardgate([cluster_db([env.masters()[0].address])], metrics={"listen": "127.0.0.1:0", "tls": False})
    replica = env.replicas(env.masters()[1])[0]
    with Load(sg.port("big")) as load:
        load.wait_ops(2000)
        old_master = env.failover(replica)
        load.wait_ops(2000)
    assert load.errors() == [], load.errors()[:20]
    assert replica in env.masters() and old_master in env.replicas(replica)
    check_everything_readable(sg, env, load.acked())
    m = metrics(metrics_port(sg))
    assert m['shardgate_cluster_redirects_total{db="big",kind="moved"}'] > 0, m


def test_a_killed_master_costs_only_its_slots_until_the_failover(env, shardgate):
    sg = shardgate([cluster_db([env.masters()[0].address, env.masters()[1].address])])
    victim = env.masters()[2]
    with Load(sg.port("big")) as load:
        load.wait_ops(2000)
        dead_slots = {s for s, port in enumerate(env.slot_map()) if port == victim.port}
        killed_at = time.monotonic()
        dead, promoted = env.kill_master(2)
        failed_over_at = time.monotonic()
        assert dead is victim
        time.sleep(FOLLOW_GRACE_S)
        load.wait_ops(2000)
        quiet_from = time.monotonic()
        load.wait_ops(2000)
    errors = load.errors()
    elsewhere = [e for e in errors if keyslot(e[1]) not in dead_slots]
    assert elsewhere == [], elsewhere[:20]
    late = [e for e in errors if e[0] > failed_over_at + FOLLOW_GRACE_S]
    assert late == [], (late[:20], f"failover took {failed_over_at - killed_at:.1f} s")
    assert not [e for e in errors if e[0] > quiet_from]
    # Writes acknowledged after shardgate followed the failover are there.
    with redis.Redis(host="127.0.0.1", port=sg.port("big"), decode_responses=True) as r:
        for k in [k for k in load.acked() if keyslot(k) in dead_slots][:200]:
            assert r.set(k, "after") is True
            assert r.get(k) == "after"
    assert env.slot_owner(next(iter(dead_slots))) is promoted


def test_a_reshard_under_load_over_tls_to_the_nodes(procs, tmp_path, shardgate):
    env = start_cluster(procs, tmp_path, tls=True)
    seed = env.masters()[0]
    sg = shardgate([cluster_db([f"127.0.0.1:{seed.tls_port}"],
                               shard_tls={"ca": str(env.ca_cert)})],
                   metrics={"listen": "127.0.0.1:0", "tls": False})
    assert re.search(r"db big: cluster discovered from 127\.0\.0\.1:%d" % seed.tls_port, sg.log()), sg.log()
    # The masters in the map are the nodes' TLS ports.
    for m in env.masters():
        assert f"127.0.0.1:{m.tls_port}" in sg.log()
    reshard_under_load(sg, env)
    m = metrics(metrics_port(sg))
    assert any(k.startswith("shardgate_shard_tls_handshakes_total") and v > 0 for k, v in m.items()), m


def test_a_migrating_slot_ask_tryagain_and_moved_step_by_step(env, shardgate):
    """One slot migrated by hand (the steps redis-cli --cluster reshard takes),
    each redirect checked where it happens."""
    sg = shardgate([cluster_db([env.masters()[0].address])], metrics={"listen": "127.0.0.1:0", "tls": False})
    mport = metrics_port(sg)
    keys = ["{mig}a", "{mig}b", "{mig}c"]
    slot = keyslot(keys[0])
    source = env.slot_owner(slot)
    target = next(m for m in env.masters() if m is not source)
    with redis.Redis(host="127.0.0.1", port=sg.port("big"), socket_timeout=15, decode_responses=True) as r:
        assert r.set(keys[0], "A") and r.set(keys[1], "B")
        assert target.command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id) in (b"OK", "OK", True)
        assert source.command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id) in (b"OK", "OK", True)
        source.command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", keys[0])

        # The source no longer has {mig}a: ASK to the target, followed.
        assert r.get(keys[0]) == "A"
        assert r.get(keys[1]) == "B"  # still on the source: answered there
        # Pipelined: the redirected GETs are answered after the ones behind
        # them arrived, and still reach the client in its order.
        pipe = r.pipeline(transaction=False)
        for k in [keys[0], keys[1], keys[0], "elsewhere", keys[1], keys[0]]:
            pipe.get(k)
        assert pipe.execute() == ["A", "B", "A", None, "B", "A"]
        # A new key in a migrating slot is created on the target (ASK).
        assert r.set(keys[2], "C")
        with target.client(single_connection_client=True, decode_responses=True) as t:
            t.execute_command("ASKING")
            assert t.get(keys[2]) == "C"
        m = metrics(mport)
        assert m['shardgate_cluster_redirects_total{db="big",kind="ask"}'] >= 5, m

        # One key moved, one not: the source says TRYAGAIN; shardgate retries
        # for about 2 s, then the client gets the node's error.
        started = time.monotonic()
        with pytest.raises(redis.ResponseError, match="^TRYAGAIN"):
            r.mget(keys[0], keys[1])
        assert 1.5 < time.monotonic() - started < 10
        assert metrics(mport)['shardgate_cluster_retries_total{db="big"}'] >= 8

        # The rest moves and the slot is the target's: MOVED, followed.
        source.command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", keys[1])
        for node in env.masters():
            node.command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
        assert r.mget(keys) == ["A", "B", "C"]
        assert r.set(keys[1], "B2") and r.get(keys[1]) == "B2"
        m = metrics(mport)
        assert m['shardgate_cluster_redirects_total{db="big",kind="moved"}'] >= 1, m
    with target.client(decode_responses=True) as t:
        assert t.get(keys[1]) == "B2"
