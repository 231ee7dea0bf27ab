"""Continuous load through shardgate for the cluster tests: several plain
redis-py clients (a Writer each, on a thread) write their own keys with known
values, read back what they wrote, and record every acknowledged write and
every error with its time and key. After a cluster change the tests check
that no error was seen and that every acknowledged write reads back with its
value, through shardgate and on the node that owns its slot now.

Also what those tests share besides: a cluster database's config, the
metrics endpoint's port and a scrape parsed into {series: value}.
"""
from __future__ import annotations

import re
import threading
import time
import urllib.request
from dataclasses import dataclass, field

import redis

from cluster_env import ClusterEnv
from sharding_env import keyslot

LOAD_CLIENTS = 4
KEYS_PER_CLIENT = 1500


def cluster_db(seeds: list[str], **extra) -> dict:
    return {"name": "big", "listen": "127.0.0.1:0", "tls": False,
            "cluster": {"seeds": seeds, "refresh_interval_ms": 60000}, **extra}


@dataclass
class Writer:
    """One client writing its own keys in a loop until stopped: SET, then a
    GET of a key it wrote before, checked against what it acknowledged."""
    port: int
    name: str
    acked: dict[str, str] = field(default_factory=dict)
    errors: list[tuple[float, str, str]] = field(default_factory=list)  # (time, key, error)
    ops: int = 0

    def run(self, stop: threading.Event) -> None:
        r = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=15, decode_responses=True)
        i = 0
        try:
            while not stop.is_set():
                key = f"{self.name}:{i % KEYS_PER_CLIENT}"
                value = f"{self.name}-{i}"
                current = key  # the key of the operation under way, for the error
                try:
                    assert r.set(key, value) is True
                    self.acked[key] = value
                    back = f"{self.name}:{(i * 7) % KEYS_PER_CLIENT}"
                    if back in self.acked:
                        current = back
                        got = r.get(back)
                        if got != self.acked[back]:
                            self.errors.append((time.monotonic(), back, f"read {got!r}, wrote {self.acked[back]!r}"))
                except (redis.RedisError, AssertionError) as e:
                    self.errors.append((time.monotonic(), current, f"{type(e).__name__}: {e}"))
                    if current == key:
                        self.acked.pop(key, None)  # unknown now: it may or may not have been applied
                    time.sleep(0.005)
                self.ops += 1
                i += 1
        finally:
            r.close()


class Load:
    def __init__(self, port: int, clients: int = LOAD_CLIENTS) -> None:
        self.writers = [Writer(port, f"w{n}") for n in range(clients)]
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=w.run, args=(self.stop,), daemon=True) for w in self.writers]

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in self.threads), "a writer did not stop"

    def errors(self) -> list[tuple[float, str, str]]:
        return sorted(e for w in self.writers for e in w.errors)

    def acked(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for w in self.writers:
            out.update(w.acked)
        return out

    def ops(self) -> int:
        return sum(w.ops for w in self.writers)

    def wait_ops(self, n: int, timeout: float = 30.0) -> None:
        """Until the writers did n more operations (the load is really running)."""
        target = self.ops() + n
        deadline = time.monotonic() + timeout
        while self.ops() < target:
            assert time.monotonic() < deadline, f"load stalled at {self.ops()} ops"
            time.sleep(0.05)


def metrics(port: int) -> dict[str, float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in body.splitlines():
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$', line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def metrics_port(sg) -> int:
    deadline = time.monotonic() + 10
    while True:
        m = re.search(r"\bmetrics listening on (\S+):(\d+) ", sg.log())
        if m:
            return int(m.group(2))
        assert time.monotonic() < deadline, sg.log()
        time.sleep(0.02)


def check_everything_readable(sg, env: ClusterEnv, acked: dict[str, str]) -> None:
    keys = list(acked)
    with redis.Redis(host="127.0.0.1", port=sg.port("big"), socket_timeout=15, decode_responses=True) as r:
        for i in range(0, len(keys), 200):
            chunk = keys[i:i + 200]
            assert r.mget(chunk) == [acked[k] for k in chunk]
    owners = env.slot_map()
    clients: dict[int, redis.Redis] = {}
    try:
        for key, value in acked.items():
            port = owners[keyslot(key)]
            if port not in clients:
                clients[port] = env.by_port(port).client(decode_responses=True)
            assert clients[port].get(key) == value, f"{key!r} on its owner {port}"
    finally:
        for c in clients.values():
            c.close()
