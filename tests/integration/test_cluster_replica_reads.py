"""Reads from replicas (`cluster.read_from: replica_preferred`): a readonly
command of a client in no stateful mode goes to a replica of the master that
owns its slot; writes, MULTI/EXEC and everything else go to the master.

Where a command ran is read from the nodes themselves: each node's
`INFO commandstats` counts the commands it executed (cmdstat_get calls). A
replica does not count the writes it applies from its master as GETs, so its
cmdstat_get is exactly the reads it served.

Each test starts a real six-node cluster (cluster_env: three masters, one
replica each) and shardgate in front of it on a plaintext endpoint."""
from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field

import pytest
import redis

from cluster_env import ClusterEnv, ClusterNode, start_cluster
from conftest import run_shardgate, write_config
from sharding_env import keyslot
from test_cluster_redirects import metrics, metrics_port

REFRESH_MS = 200
WAIT_S = 30.0


def cluster_db(seeds: list[str], read_from: str | None = "replica_preferred") -> dict:
    cluster = {"seeds": seeds, "refresh_interval_ms": REFRESH_MS}
    if read_from is not None:
        cluster["read_from"] = read_from
    return {"name": "big", "listen": "127.0.0.1:0", "tls": False, "cluster": cluster}


def start(shardgate, env: ClusterEnv, read_from: str | None = "replica_preferred"):
    return shardgate([cluster_db([env.masters()[0].address], read_from)],
                     metrics={"listen": "127.0.0.1:0", "tls": False})


def client(sg, **kw) -> redis.Redis:
    kw.setdefault("socket_timeout", 15)
    return redis.Redis(host="127.0.0.1", port=sg.port("big"), decode_responses=True, **kw)


def calls(node: ClusterNode, command: str) -> int:
    """How often `node` executed `command` since it started."""
    with node.client(decode_responses=True) as r:
        stats = r.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def total(nodes: list[ClusterNode], command: str) -> int:
    return sum(calls(n, command) for n in nodes)


def poll(condition, what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout} s for {what}")
        time.sleep(0.05)


def write(r: redis.Redis, items: dict[str, str]) -> None:
    for k, v in items.items():
        assert r.set(k, v) is True


def wait_replicas_serving(env: ClusterEnv, r: redis.Redis, items: dict[str, str]) -> None:
    """Until every value reads back through shardgate (replicated) and
    every replica has served reads (shardgate checked it is in sync)."""
    keys = list(items)

    def ready() -> bool:
        if [r.get(k) for k in keys] != [items[k] for k in keys]:
            return False
        return all(calls(n, "get") > 0 for n in env.replicas())

    poll(ready, "every replica to serve reads through shardgate")


@pytest.fixture
def env(procs, tmp_path):
    return start_cluster(procs, tmp_path)


def test_reads_go_to_replicas_and_writes_to_masters(env, shardgate):
    sg = start(shardgate, env)
    assert "reads from replicas (read_from replica_preferred)" in sg.log(), sg.log()
    # Replicas still in their first sync (CLUSTER SHARDS health "loading")
    # join the map at a refresh once they are online.
    poll(lambda: "replicas read from" in sg.log(), "the replicas in shardgate's map")
    r = client(sg)
    items = {f"k{i}": f"v{i}" for i in range(300)}
    write(r, items)
    wait_replicas_serving(env, r, items)
    masters, replicas = env.masters(), env.replicas()
    assert len(masters) == 3 and len(replicas) == 3
    m_get, r_get = total(masters, "get"), total(replicas, "get")
    n = 600
    for i in range(n):
        key = f"k{i % 300}"
        assert r.get(key) == items[key]
    assert total(replicas, "get") - r_get == n
    assert total(masters, "get") - m_get == 0
    # Every replica takes its master's share.
    assert all(calls(node, "get") > 0 for node in replicas)

    # Writes land on the masters.
    m_set = total(masters, "set")
    write(r, {f"w{i}": "x" for i in range(100)})
    assert total(masters, "set") - m_set == 100

    # MGET across slots and masters: split per slot, each part read on a replica.
    keys = [f"k{i}" for i in range(40)]
    assert len({keyslot(k) for k in keys}) > 3
    m_mget, r_mget = total(masters, "mget"), total(replicas, "mget")
    assert r.mget(keys) == [items[k] for k in keys]
    assert total(replicas, "mget") - r_mget >= 3
    assert total(masters, "mget") - m_mget == 0

    m = metrics(metrics_port(sg))
    assert m['shardgate_cluster_replica_reads_total{db="big"}'] >= n, m
    assert 'shardgate_cluster_replica_fallbacks_total{db="big"}' in m, m


def test_default_primary_sends_no_read_to_replicas(env, shardgate):
    sg = start(shardgate, env, read_from=None)
    assert "replicas read from" not in sg.log()
    r = client(sg)
    items = {f"k{i}": f"v{i}" for i in range(100)}
    write(r, items)
    replicas = env.replicas()
    before = total(replicas, "get") + total(replicas, "mget")
    m_get = total(env.masters(), "get")
    for _ in range(3):
        for k, v in items.items():
            assert r.get(k) == v
        assert r.mget(list(items)) == list(items.values())
    assert total(replicas, "get") + total(replicas, "mget") - before == 0
    assert total(env.masters(), "get") - m_get == 300
    m = metrics(metrics_port(sg))
    assert not any(k.startswith("shardgate_cluster_replica_") for k in m), m


def test_a_write_is_read_back_once_replicated(env, shardgate):
    sg = start(shardgate, env)
    r = client(sg)
    items = {f"k{i}": f"v{i}" for i in range(30)}
    write(r, items)
    wait_replicas_serving(env, r, items)
    # A write, then a read of it: the replica may lag (asynchronous
    # replication), so the read is polled until it sees the write.
    for i in range(30):
        key = f"k{i}"
        assert r.set(key, f"new{i}") is True
        poll(lambda: r.get(key) == f"new{i}", f"{key} to read back its new value", timeout=10)


def test_multi_exec_and_watch_read_on_the_master(env, shardgate):
    sg = start(shardgate, env)
    r = client(sg)
    items = {f"{{t}}k{i}": f"v{i}" for i in range(10)}
    spread = {f"k{i}": f"v{i}" for i in range(100)}
    write(r, items | spread)
    wait_replicas_serving(env, r, items | spread)
    owner = env.slot_owner(keyslot("{t}k0"))
    replicas = env.replicas()
    r_get, o_get = total(replicas, "get"), calls(owner, "get")
    for _ in range(20):
        with r.pipeline(transaction=True) as p:
            p.get("{t}k1")
            p.get("{t}k2")
            assert p.execute() == ["v1", "v2"]
    with r.pipeline(transaction=True) as p:
        p.watch("{t}k3")
        assert p.get("{t}k3") == "v3"  # read while watching: the master's
        p.multi()
        p.set("{t}k3", "v3b")
        assert p.execute() == [True]
    assert total(replicas, "get") - r_get == 0
    assert calls(owner, "get") - o_get == 41


@dataclass
class Reader:
    """Reads keys that do not change during the test, in a loop, counting
    errors and wrong values (a replica serving before its sync would read
    nothing)."""
    port: int
    items: dict[str, str]
    errors: list[str] = field(default_factory=list)
    reads: int = 0

    def run(self, stop: threading.Event) -> None:
        keys = list(self.items)
        with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=15, decode_responses=True) as r:
            i = 0
            while not stop.is_set():
                key = keys[i % len(keys)]
                i += 1
                try:
                    got = r.get(key)
                    if got != self.items[key]:
                        self.errors.append(f"{key}: read {got!r}, expected {self.items[key]!r}")
                except redis.RedisError as e:
                    self.errors.append(f"{key}: {type(e).__name__}: {e}")
                    time.sleep(0.005)
                self.reads += 1


class Readers:
    def __init__(self, port: int, items: dict[str, str], clients: int = 4) -> None:
        self.readers = [Reader(port, items) for _ in range(clients)]
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=x.run, args=(self.stop,), daemon=True) for x in self.readers]

    def __enter__(self) -> "Readers":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in self.threads), "a reader did not stop"

    def errors(self) -> list[str]:
        return [e for x in self.readers for e in x.errors]

    def reads(self) -> int:
        return sum(x.reads for x in self.readers)


def test_a_killed_replica_sends_its_reads_to_its_master_then_back(env, shardgate):
    sg = start(shardgate, env)
    r = client(sg)
    items = {f"k{i}": f"v{i}" for i in range(200)}
    write(r, items)
    wait_replicas_serving(env, r, items)
    master = env.masters()[0]
    replica = env.replicas(master)[0]
    with Readers(sg.port("big"), items) as readers:
        poll(lambda: readers.reads() > 500, "the readers to run")
        m_get = calls(master, "get")
        os.kill(replica.proc.pid, signal.SIGKILL)
        replica.proc.wait(timeout=5)
        poll(lambda: calls(master, "get") - m_get > 200, f"reads of {master}'s slots to go to it")
        env.restart(replica)
        # A fresh process: its counters start at 0. Reads come back once it
        # has synced with its master (shardgate asks it for ROLE).
        poll(lambda: calls(replica, "get") > 200, f"reads to return to the restarted {replica}")
        assert readers.reads() > 1000
    assert readers.errors() == [], readers.errors()[:20]
    m = metrics(metrics_port(sg))
    assert m['shardgate_cluster_replica_fallbacks_total{db="big"}'] > 0, m


def test_a_manual_failover_under_reads_and_writes(env, shardgate):
    sg = start(shardgate, env)
    r = client(sg)
    items = {f"k{i}": f"v{i}" for i in range(200)}
    write(r, items)
    wait_replicas_serving(env, r, items)
    acked: dict[str, str] = {}
    write_errors: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        with redis.Redis(host="127.0.0.1", port=sg.port("big"), socket_timeout=15, decode_responses=True) as w:
            i = 0
            while not stop.is_set():
                key, value = f"w{i % 300}", f"x{i}"
                try:
                    assert w.set(key, value) is True
                    acked[key] = value
                except (redis.RedisError, AssertionError) as e:
                    write_errors.append(f"{key}: {e}")
                    acked.pop(key, None)
                i += 1

    t = threading.Thread(target=writer, daemon=True)
    replica = env.replicas(env.masters()[1])[0]
    with Readers(sg.port("big"), items) as readers:
        t.start()
        try:
            poll(lambda: readers.reads() > 500 and len(acked) > 100, "the load to run")
            old_master = env.failover(replica)
            n = readers.reads()
            poll(lambda: readers.reads() > n + 1000, "reads after the failover")
        finally:
            stop.set()
            t.join(timeout=30)
    assert not t.is_alive()
    assert readers.errors() == [], readers.errors()[:20]
    assert write_errors == [], write_errors[:20]
    assert replica in env.masters() and old_master in env.replicas(replica)
    # Every acknowledged write reads back (polled: replication is asynchronous).
    keys = sorted(acked)
    poll(lambda: r.mget(keys) == [acked[k] for k in keys], "the writes to read back")
    # The old master, a replica now, serves reads of its new master's slots.
    poll(lambda: calls(old_master, "get") > 0 and [r.get(k) for k in items] == list(items.values()),
         f"{old_master} to serve reads as a replica")


def test_admin_api_and_check_config_show_read_from(env, admin_shardgate, tmp_path):
    sg = admin_shardgate([cluster_db([env.masters()[0].address])])
    res = sg.curl("GET", "/v1/bdbs")
    assert res.status == 200, str(res)
    body = res.json()
    assert body[0]["mode"] == "cluster" and body[0]["read_from"] == "replica_preferred", body
    # A value that is not one: --check-config names the key.
    bad = tmp_path / "bad"
    bad.mkdir()
    path = write_config(bad, [cluster_db([env.masters()[0].address], read_from="replicas")])
    done = run_shardgate(["--config", str(path), "--check-config"])
    assert done.returncode == 1
    assert 'databases[0].cluster.read_from: "replicas" is not one of primary, replica_preferred' in done.stderr, \
        done.stderr
