"""Differential test over a Redis Cluster: the seeded random command stream of
differential_env.py gets the same replies through shardgate with
`cluster: {seeds}` in front of a real six-node cluster (cluster_env: three
masters, one replica each) as from one plain redis-server, byte for byte (raw
RESP on both sides, sharding_env.RespClient).

- `test_..._reply_as_one_redis_server`: the stream in pipelines of 500 on a
  stable cluster; then KEYS/DBSIZE agree and every key is on the master that
  owns its slot (asked on the masters directly).
- `test_..._while_slots_move`: the same stream while `redis-cli --cluster
  reshard` moves 600 slots (with their keys) from one master to another in a
  thread. Pipelines there never name one key twice (differential_env.
  independent_batches), because shardgate documents that two pipelined
  commands on one key may be applied out of order while its slot moves
  (docs/routing.md, "Redirects: what is retried"); a client that waits for each
  reply never sees that. The stream goes on in rounds (a new seed each, same
  keys) until the reshard ended, and the test requires that pipelines were
  compared while it ran and that commands touched the moving slots.

What a cluster legitimately does differently from one redis-server, and is
therefore not in the stream (the stream is shared with the static-shard test,
which has the same limits):
- `SELECT` of a non-zero db: Redis Cluster has only db 0 (a node answers
  `-ERR SELECT is not allowed in cluster mode`); so no SELECT, MOVE, SWAPDB.
- Multi-key commands that are not split (SUNIONSTORE, SINTER, RENAME, ...)
  over keys of different slots: a cluster node answers `-CROSSSLOT`, one
  redis-server runs them. The stream draws their keys from one {tag}.
  MGET/MSET/DEL/EXISTS over any keys are in the stream: shardgate splits them
  per slot and merges the replies, so they must reply as one Redis.
- Replies whose order is a hash table's (SMEMBERS, SINTER, HGETALL, KEYS) are
  compared sorted (differential_env.py says why); KEYS and DBSIZE are summed
  over the masters by shardgate.
- Commands about the server rather than the data (INFO, CLIENT, CONFIG,
  DEBUG, SCAN cursors, RANDOMKEY) are not compared: their replies differ
  between any two servers. SCAN over a cluster is test_cluster_modes.py's.

Reproduce a failure with SHARDGATE_DIFF_SEED=<seed from the message>."""
from __future__ import annotations

import threading
import time

import pytest

from cluster_env import ClusterEnv, start_cluster
from differential_env import (SEED, command_keys, compare_keyspace, generate,
                              independent_batches, run_differential)
from sharding_env import RespClient, keyslot

COMMAND_COUNT = 20_000
# The reshard variant: rounds of this many commands until the reshard ended.
ROUND_COUNT = 4_000
MAX_ROUNDS = 40
RESHARD_SLOTS = 600
RESHARD_TIMEOUT_S = 120.0


def cluster_db(seeds: list[str]) -> dict:
    # refresh_interval_ms long: while slots move, only MOVED/ASK keep routing right.
    return {"name": "big", "listen": "127.0.0.1:0", "tls": False,
            "cluster": {"seeds": seeds, "refresh_interval_ms": 60000}}


@pytest.fixture
def env(procs, tmp_path):
    return start_cluster(procs, tmp_path)


def check_keys_on_owners(env: ClusterEnv, seed: int) -> int:
    """Every key on a master is in a slot that master owns (MOVED would hide
    a misplaced one from a client, so each master is asked for KEYS * itself)."""
    owners = env.slot_map()
    misplaced, total = [], 0
    for master in env.masters():
        held = [k.decode() for k in master.client().keys("*")]
        total += len(held)
        misplaced += [(k, master.port, owners[keyslot(k)]) for k in held
                      if owners[keyslot(k)] != master.port]
    assert not misplaced, (f"seed {seed}: keys on a master that does not own their slot "
                           f"(key, found on, owner): {misplaced[:10]}")
    return total


def test_20000_random_commands_reply_as_one_redis_server(env, shardgate, redis_server):
    sg = shardgate([cluster_db([env.masters()[0].address])])
    reference = redis_server()
    with RespClient.plain(sg.port("big"), timeout=30) as target, \
            RespClient.plain(reference.port, timeout=30) as ref:
        errors = run_differential(target, ref, count=COMMAND_COUNT)
        assert errors > 100, f"seed {SEED}: only {errors} error replies in the sequence"
        count = compare_keyspace(target, ref)
    assert check_keys_on_owners(env, SEED) == count


class Reshard:
    """redis-cli --cluster reshard on a thread; its error is kept for the test."""

    def __init__(self, env: ClusterEnv, slots: int) -> None:
        self.env = env
        self.source, self.target = env.masters()[0], env.masters()[1]
        self.slots = slots
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.env.reshard(self.slots, self.source, self.target)
        except BaseException as e:  # noqa: BLE001 -- reported by the test
            self.error = e

    def running(self) -> bool:
        return self.thread.is_alive()


def test_random_commands_reply_as_one_redis_server_while_slots_move(env, shardgate,
                                                                    redis_server):
    sg = shardgate([cluster_db([env.masters()[0].address])])
    reference = redis_server()
    before = env.slot_map()
    reshard = Reshard(env, RESHARD_SLOTS)
    during = {"pipelines": 0, "commands": 0}
    last = [0]

    def progress(done: int) -> None:
        if reshard.running():
            during["pipelines"] += 1
            during["commands"] += done - last[0]
        last[0] = done

    touched: set[str] = set()
    with RespClient.plain(sg.port("big"), timeout=30) as target, \
            RespClient.plain(reference.port, timeout=30) as ref:
        # Round 0 fills the keys before slots move, so the reshard moves keys.
        run_differential(target, ref, seed=SEED, count=ROUND_COUNT,
                         batches=independent_batches)
        reshard.thread.start()
        deadline = time.monotonic() + RESHARD_TIMEOUT_S
        rounds = 0
        while reshard.running():
            rounds += 1
            assert rounds <= MAX_ROUNDS and time.monotonic() < deadline, (
                f"reshard of {RESHARD_SLOTS} slots still running after {rounds} rounds")
            last[0] = 0
            run_differential(target, ref, seed=SEED + rounds, count=ROUND_COUNT,
                             batches=independent_batches, progress=progress)
            # The round's commands again, from its seed, for the keys it used.
            for command in generate(SEED + rounds, ROUND_COUNT):
                touched |= command_keys(command)
        reshard.thread.join(timeout=RESHARD_TIMEOUT_S)
        if reshard.error is not None:
            raise reshard.error
        # One more round on the settled cluster, then the whole keyspace.
        run_differential(target, ref, seed=SEED + rounds + 1, count=ROUND_COUNT,
                         batches=independent_batches)
        count = compare_keyspace(target, ref)

    after = env.slot_map()
    moved = {s for s in range(16384) if before[s] != after[s]}
    assert len(moved) == RESHARD_SLOTS and all(after[s] == reshard.target.port for s in moved)
    assert during["pipelines"] >= 5, (f"only {during['pipelines']} pipelines ran while the "
                                      f"reshard did: the test proved little")
    on_moved = {k for k in touched if keyslot(k) in moved}
    assert len(on_moved) > 20, f"only {len(on_moved)} keys of the moved slots were used"
    assert check_keys_on_owners(env, SEED) == count
