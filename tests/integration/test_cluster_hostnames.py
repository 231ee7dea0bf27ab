"""A Redis Cluster whose nodes are known by name: `cluster-announce-hostname`
with `cluster-preferred-endpoint-type hostname`, so CLUSTER SHARDS gives each
node's name as its endpoint and MOVED / ASK name nodes "name:port". The names
here resolve nowhere (`*.cluster.invalid`): shardgate must connect to the ip
each node reports beside its name, and follow redirects that name a node by
name -- one it knows, and one the last topology read did not have yet.

Each test starts a real six-node cluster (cluster_env) and renames its nodes
at run time (both settings are live in Redis 7.0), waiting until every node
reports every other by name.
"""
from __future__ import annotations

import time

import pytest
import redis

from cluster_env import ClusterEnv, ClusterNode, start_cluster
from sharding_env import keyslot

GOSSIP_TIMEOUT_S = 20.0


def name_of(node: ClusterNode) -> str:
    return f"node-{node.port}.cluster.invalid"


def rename(env: ClusterEnv, nodes: list[ClusterNode]) -> None:
    for node in nodes:
        node.command("CONFIG", "SET", "cluster-announce-hostname", name_of(node))
        node.command("CONFIG", "SET", "cluster-preferred-endpoint-type", "hostname")


def wait_named(env: ClusterEnv, nodes: list[ClusterNode]) -> None:
    """Until every live node's CLUSTER SHARDS names each of `nodes` by name."""
    wanted = {name_of(n) for n in nodes}
    deadline = time.monotonic() + GOSSIP_TIMEOUT_S
    seen: set[str] = set()
    while True:
        ok = True
        for viewer in env.live_nodes():
            with viewer.client(decode_responses=True) as r:
                shards = r.execute_command("CLUSTER", "SHARDS")
            seen = set()
            for shard in shards:
                fields = dict(zip(shard[::2], shard[1::2]))
                for node in fields["nodes"]:
                    nf = dict(zip(node[::2], node[1::2]))
                    seen.add(nf["endpoint"])
            if not wanted <= seen:
                ok = False
                break
        if ok:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"nodes not named after {GOSSIP_TIMEOUT_S} s: want {sorted(wanted)}, "
                        f"a node sees {sorted(seen)}")
        time.sleep(0.1)


def cluster_db(seeds: list[str], refresh_ms: int) -> dict:
    return {"name": "big", "listen": "127.0.0.1:0", "tls": False,
            "cluster": {"seeds": seeds, "refresh_interval_ms": refresh_ms}}


@pytest.fixture
def env(procs, tmp_path):
    e = start_cluster(procs, tmp_path)
    rename(e, e.live_nodes())
    wait_named(e, e.live_nodes())
    return e


def test_nodes_known_by_name_are_reached_at_their_ip_and_their_redirects_followed(env, shardgate):
    sg = shardgate([cluster_db([env.masters()[0].address], refresh_ms=60000)], workers=1)
    log = sg.log()
    assert "cluster discovered" in log, log
    items = {f"name:{i}": str(i) for i in range(300)}
    with redis.Redis(host="127.0.0.1", port=sg.port("big"), socket_timeout=15,
                     decode_responses=True) as r:
        assert r.mset(items)
        assert r.mget(list(items)) == list(items.values())

        # One slot migrated by hand: the source answers ASK, then MOVED,
        # naming the target "node-<port>.cluster.invalid:<port>".
        keys = ["{named}a", "{named}b"]
        slot = keyslot(keys[0])
        source = env.slot_owner(slot)
        target = next(m for m in env.masters() if m is not source)
        assert r.set(keys[0], "A") and r.set(keys[1], "B")
        target.command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        source.command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
        source.command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", keys[0])
        with source.client(decode_responses=True) as direct:
            with pytest.raises(redis.ResponseError, match=f"^ASK {slot} {name_of(target)}:{target.port}$"):
                direct.get(keys[0])
        assert r.get(keys[0]) == "A"
        source.command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", keys[1])
        for node in env.masters():
            node.command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
        with source.client(decode_responses=True) as direct:
            with pytest.raises(redis.ResponseError, match=f"^MOVED {slot} {name_of(target)}:{target.port}$"):
                direct.get(keys[0])
        assert r.mget(keys) == ["A", "B"]
        assert r.set(keys[1], "B2")
    with target.client(decode_responses=True) as t:
        assert t.get(keys[1]) == "B2"


def test_an_ask_to_a_named_node_the_topology_did_not_have_waits_for_the_refresh(env, shardgate):
    """A master added after shardgate's last topology read (the periodic
    refresh is a minute away): the ASK names it by a name shardgate has no
    ip for yet. shardgate asks for a refresh, sends the command back to the
    source after a back-off, and follows the next ASK to the ip it learnt."""
    sg = shardgate([cluster_db([env.masters()[0].address], refresh_ms=60000)], workers=1)
    fresh = env.add_master()
    rename(env, [fresh])
    wait_named(env, [fresh])
    key = "{newnamed}k"
    slot = keyslot(key)
    source = env.slot_owner(slot)
    with redis.Redis(host="127.0.0.1", port=sg.port("big"), socket_timeout=15,
                     decode_responses=True) as r:
        assert r.set(key, "V")
        fresh.command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        source.command("CLUSTER", "SETSLOT", slot, "MIGRATING", fresh.node_id)
        source.command("MIGRATE", "127.0.0.1", fresh.port, "", 0, 5000, "KEYS", key)
        assert r.get(key) == "V"
        assert r.append(key, "2") == 2
    with fresh.client(decode_responses=True, single_connection_client=True) as f:
        f.execute_command("ASKING")
        assert f.get(key) == "V2"
