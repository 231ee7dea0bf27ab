"""Differential test: one seeded random sequence of 20,000 commands, sent to
shardgate over three shards and to one plain redis-server; every reply must be
the same (clients run commands as against one Redis). Both sides are spoken to in raw RESP (sharding_env.RespClient), so a
difference in a single byte of a reply, an error's text, or a simple string
turned bulk shows up.

The stream and the comparison (which replies are compared unordered, and why)
are differential_env.py's, shared with test_cluster_differential.py.

Reproduce a failure with SHARDGATE_DIFF_SEED=<seed from the message>."""
from __future__ import annotations

import pytest

from differential_env import SEED, compare_keyspace, run_differential
from sharding_env import RespClient, start_sharded


@pytest.fixture
def db(procs, redis_server, shardgate):
    return start_sharded(redis_server, shardgate)


def test_20000_random_commands_reply_as_one_redis_server(db, redis_server):
    reference = redis_server()
    with db.raw(timeout=30) as target, RespClient.plain(reference.port, timeout=30) as ref:
        errors = run_differential(target, ref)
        # The mix must exercise error replies too, or the comparison proves less.
        assert errors > 100, f"seed {SEED}: only {errors} error replies in the sequence"

        # The end state: the same keys, each on the shard that owns it.
        compare_keyspace(target, ref)

    misplaced = []
    for i, shard in enumerate(db.shards):
        held = [k.decode() for k in shard.client().keys("*")]
        misplaced += [(k, i, db.shard_index(k)) for k in held if db.shard_index(k) != i]
    assert not misplaced, (f"seed {SEED}: keys on a shard that does not own their slot "
                           f"(key, found on, owner): {misplaced[:10]}")
