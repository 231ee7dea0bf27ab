"""The Redis Cluster test rig itself (cluster_env.py) is sound: the cluster it
builds serves a cluster-aware client, its reshard moves slots with their keys,
and its failovers, additions and removals leave a cluster where every key is
still readable. The tests of a cluster backend build on these helpers; if the
rig were wrong, they would test nothing."""
from __future__ import annotations

import time

import pytest
from redis.cluster import RedisCluster

from cluster_env import SLOT_COUNT, start_cluster
from sharding_env import keyslot

KEYS = 3000


def write_keys(rc: RedisCluster, prefix: str, n: int = KEYS) -> dict[str, str]:
    values = {f"{prefix}:{i}": f"value-{i}-{prefix}" for i in range(n)}
    for key, value in values.items():
        assert rc.set(key, value)
    return values


def assert_readable(rc: RedisCluster, values: dict[str, str]) -> None:
    wrong = {k: rc.get(k) for k, v in values.items() if rc.get(k) != v}
    assert not wrong, f"{len(wrong)} keys read back wrong, e.g. {list(wrong.items())[:3]}"


def test_reshard_moves_slots_with_their_keys(procs, tmp_path):
    started = time.monotonic()
    env = start_cluster(procs, tmp_path)
    masters = env.masters()
    assert len(masters) == 3
    assert len(env.replicas()) == 3
    assert sorted(env.slots_of(m) for m in masters) == [5461, 5461, 5462]
    for m in masters:
        assert len(env.replicas(m)) == 1

    with env.cluster_client(decode_responses=True) as rc:
        values = write_keys(rc, "rig")
        before = env.slot_map()
        source, target = masters[0], masters[1]
        env.reshard(1000, source, target)
        after = env.slot_map()

        moved = [s for s in range(SLOT_COUNT) if before[s] != after[s]]
        assert len(moved) == 1000
        assert all(before[s] == source.port and after[s] == target.port for s in moved)
        assert env.slots_of(source) == 5461 - 1000 or env.slots_of(source) == 5462 - 1000
        moved_set = set(moved)
        moved_keys = [k for k in values if keyslot(k) in moved_set]
        assert len(moved_keys) > 100, "the reshard moved too few keys to prove anything"

        # The keys are on the new owner itself, not merely reachable by
        # following redirects: a plain client to that node reads them.
        with target.client(decode_responses=True) as direct:
            for key in moved_keys:
                assert direct.get(key) == values[key]
        assert env.slot_owner(keyslot(moved_keys[0])) is target
        # And every key reads back through the cluster client, which learns
        # the new owners from MOVED.
        assert_readable(rc, values)
    assert time.monotonic() - started < 60


def test_failover_kill_add_remove_keep_every_key(procs, tmp_path):
    env = start_cluster(procs, tmp_path)
    with env.cluster_client(decode_responses=True) as rc:
        values = write_keys(rc, "churn", 1000)
    # An automatic failover loses the writes a replica had not received yet:
    # every replica catches up first, so every key must survive.
    for m in env.masters():
        with m.client() as r:
            assert r.execute_command("WAIT", 1, 5000) >= 1

    # Manual failover: the replica becomes master of the same slots.
    master = env.masters()[0]
    slot = env.slot_map().index(master.port)
    replica = env.replicas(master)[0]
    old = env.failover(replica)
    assert old is master
    assert env.slot_owner(slot) is replica
    assert master in env.replicas(replica)

    # kill -9 of a master: its replica takes over its slots.
    victim_slot = env.slot_map().index(env.masters()[1].port)
    dead, promoted = env.kill_master(1)
    assert not dead.alive()
    assert env.slot_owner(victim_slot) is promoted
    assert promoted is not dead

    # The killed node comes back on its port, as a replica of the new master.
    env.restart(dead)
    assert dead in env.replicas(promoted)

    # A new master, given slots by reshard, then emptied and removed.
    added = env.add_master()
    assert added not in env.masters()
    env.reshard(200, env.masters()[0], added)
    assert env.slots_of(added) == 200
    env.reshard(200, added, env.masters()[0] if env.masters()[0] is not added else env.masters()[1])
    env.remove_node(added)
    assert not added.alive()
    assert all(n.alive() for n in env.live_nodes())

    with env.cluster_client(decode_responses=True) as rc:
        assert_readable(rc, values)


def test_remove_node_refuses_a_master_with_slots(procs, tmp_path):
    env = start_cluster(procs, tmp_path, masters=3, replicas_per_master=0)
    with pytest.raises(AssertionError, match="still owns 546[12] slots"):
        env.remove_node(env.masters()[0])


def test_tls_cluster_serves_tls_clients_and_reports_tls_ports(procs, tmp_path):
    env = start_cluster(procs, tmp_path, tls=True)
    master = env.masters()[0]
    assert master.tls_port
    # CLUSTER SHARDS lists both ports of every node.
    with master.client() as r:
        shards = r.execute_command("CLUSTER", "SHARDS")
    nodes = [dict(zip(n[::2], n[1::2])) for s in shards for n in dict(zip(s[::2], s[1::2]))[b"nodes"]]
    by_port = {n.port: n.tls_port for n in env.nodes}
    assert len(nodes) == 6
    for n in nodes:
        assert n[b"tls-port"] == by_port[n[b"port"]]
    # Over TLS, the nodes name their TLS ports, and a cluster client works.
    with RedisCluster(host="127.0.0.1", port=master.tls_port, ssl=True,
                      ssl_ca_certs=str(env.ca_cert), ssl_check_hostname=False,
                      socket_timeout=5, decode_responses=True) as rc:
        seen = {n.port for n in rc.get_nodes()}
        assert {m.tls_port for m in env.masters()} <= seen <= {n.tls_port for n in env.nodes}
        values = write_keys(rc, "tls", 300)
        assert_readable(rc, values)
