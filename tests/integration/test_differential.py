"""Differential test: one seeded random sequence of 20,000 commands, sent to
shardgate over three shards and to one plain redis-server; every reply must be
the same (clients run commands as against one Redis). Both sides are spoken to in raw RESP (sharding_env.RespClient), so a
difference in a single byte of a reply, an error's text, or a simple string
turned bulk shows up.

2,000 keys (1,800 plain, 200 in 20 {hash tags}) so that commands collide:
type errors, missing keys and multi-key commands spanning every shard all occur.

Replies compared unordered, and why: a set stored as a hashtable (SMEMBERS,
SINTER) and a hash stored as a hashtable (HGETALL) come back in the order of
their dict's buckets, and each redis-server seeds its SipHash with random bytes
at start (dictSetHashFunctionSeed), so two servers with identical histories may
list the same members in different orders (two plain redis-servers fed this
sequence disagree on the order of about 200 SMEMBERS replies). Those replies are
sorted before comparing; every other reply is compared exactly.

Reproduce a failure with SHARDGATE_DIFF_SEED=<seed from the message>."""
from __future__ import annotations

import os
import random
from collections import defaultdict

import pytest

from sharding_env import Err, RespClient, describe_command, start_sharded

SEED = int(os.environ.get("SHARDGATE_DIFF_SEED", "20240611"))
COMMAND_COUNT = 20_000
BATCH = 500

# Each data type has its own pool of keys and a command picks from its type's
# pool most of the time, from all keys otherwise: enough WRONGTYPE errors to
# compare error replies, not so many that most commands only produce errors.
STRING_KEYS = [f"s:{i}" for i in range(450)]
HASH_KEYS = [f"h:{i}" for i in range(450)]
LIST_KEYS = [f"l:{i}" for i in range(450)]
SET_KEYS = [f"x:{i}" for i in range(450)]
TAGS = [f"{{grp{t}}}" for t in range(20)]
TAGGED_KEYS = {tag: [f"{tag}:m{n}" for n in range(10)] for tag in TAGS}  # sets, mostly
ALL_KEYS = (STRING_KEYS + HASH_KEYS + LIST_KEYS + SET_KEYS
            + [k for keys in TAGGED_KEYS.values() for k in keys])
POOLS = {"string": STRING_KEYS, "hash": HASH_KEYS, "list": LIST_KEYS,
         "set": SET_KEYS + [k for keys in TAGGED_KEYS.values() for k in keys]}
FIELDS = [f"f{i}" for i in range(10)]
MEMBERS = [str(i) for i in range(20)] + [f"m{i}" for i in range(20)]

# Replies whose order depends on the server's hash seed, not on the history.
UNORDERED = {"SMEMBERS", "SINTER"}
PAIRS_UNORDERED = {"HGETALL"}


def value(rng: random.Random):
    roll = rng.random()
    if roll < 0.45:
        return str(rng.randint(-5, 100))  # INCR-able
    if roll < 0.9:
        return f"v{rng.randrange(1000)}"
    if roll < 0.95:
        return ""
    return b"bin\r\n\x00\xff" + bytes([rng.randrange(256)])  # framing must not matter


def key(rng: random.Random, pool: str | None = None) -> str:
    if pool is None or rng.random() < 0.1:
        return rng.choice(ALL_KEYS)
    return rng.choice(POOLS[pool])


def keys(rng: random.Random, lo: int, hi: int, pool: str | None = None) -> list[str]:
    # Repeats allowed, as clients do.
    return [key(rng, pool) for _ in range(rng.randint(lo, hi))]


def generate(seed: int, count: int) -> list[tuple]:
    rng = random.Random(seed)

    def tagged(n: int) -> list[str]:
        group = TAGGED_KEYS[rng.choice(TAGS)]
        return [rng.choice(group) for _ in range(n)]

    def string() -> str:
        return key(rng, "string")

    def hash_() -> str:
        return key(rng, "hash")

    def list_() -> str:
        return key(rng, "list")

    def values(lo: int, hi: int) -> list:
        return [value(rng) for _ in range(rng.randint(lo, hi))]

    def num(lo: int, hi: int) -> str:
        return str(rng.randint(lo, hi))

    makers = [
        # (weight, maker)
        (10, lambda: ("SET", string(), value(rng))),
        (10, lambda: ("GET", string())),
        (5, lambda: ("INCR", string())),
        (4, lambda: ("APPEND", string(), value(rng))),
        (3, lambda: ("STRLEN", string())),
        (3, lambda: ("GETRANGE", string(), num(-6, 8), num(-6, 12))),
        (5, lambda: ("HSET", hash_(), *[x for _ in range(rng.randint(1, 3))
                                        for x in (rng.choice(FIELDS), value(rng))])),
        (4, lambda: ("HGET", hash_(), rng.choice(FIELDS))),
        (3, lambda: ("HGETALL", hash_())),
        (2, lambda: ("HDEL", hash_(), *rng.sample(FIELDS, rng.randint(1, 3)))),
        (3, lambda: ("HINCRBY", hash_(), rng.choice(FIELDS), num(-10, 10))),
        (4, lambda: ("LPUSH", list_(), *values(1, 3))),
        (4, lambda: ("RPUSH", list_(), *values(1, 3))),
        (3, lambda: ("LRANGE", list_(), num(-5, 3), num(-3, 10))),
        (3, lambda: ("LPOP", list_())),
        (2, lambda: ("LLEN", list_())),
        (5, lambda: ("SADD", key(rng, "set"), *rng.sample(MEMBERS, rng.randint(1, 4)))),
        (3, lambda: ("SMEMBERS", key(rng, "set"))),
        (4, lambda: ("MGET", *keys(rng, 1, 8, "string"))),
        (3, lambda: ("MSET", *[x for k in keys(rng, 1, 5, "string") for x in (k, value(rng))])),
        (3, lambda: ("DEL", *keys(rng, 1, 5))),
        (3, lambda: ("EXISTS", *keys(rng, 1, 6))),
        (2, lambda: ("SUNIONSTORE", *tagged(rng.randint(2, 4)))),
        (2, lambda: ("SINTER", *tagged(rng.randint(1, 3)))),
        (2, lambda: ("RENAME", *tagged(2))),
    ]
    weights = [w for w, _ in makers]
    return [rng.choices(makers, weights)[0][1]() for _ in range(count)]


def normalise(command: tuple, reply):
    name = command[0]
    if isinstance(reply, list):
        if name in UNORDERED:
            return sorted(reply)
        if name in PAIRS_UNORDERED:
            return sorted(zip(reply[0::2], reply[1::2]))
    return reply


def command_keys(command: tuple) -> set:
    name, args = command[0], command[1:]
    if name in ("MGET", "DEL", "EXISTS", "SUNIONSTORE", "SINTER", "RENAME"):
        return set(args)
    if name == "MSET":
        return set(args[0::2])
    return {args[0]}


def mismatch_report(seed: int, index: int, commands: list[tuple], ours, theirs,
                    by_key: dict, agreed: list) -> str:
    command = commands[index]
    lines = [f"seed {seed} (SHARDGATE_DIFF_SEED={seed}): command {index} of {len(commands)} "
             f"differs", f"  command:          {describe_command(command, 400)}",
             f"  plain redis says: {theirs!r}", f"  shardgate says:   {ours!r}",
             "  earlier commands on the same keys (index: command -> agreed reply):"]
    earlier = sorted({i for k in command_keys(command) for i in by_key.get(k, [])[-6:]})
    for i in earlier[-12:]:
        lines.append(f"    {i}: {describe_command(commands[i])} -> {agreed[i]!r}")
    return "\n".join(lines)


def run_differential(target: RespClient, reference: RespClient, seed: int = SEED,
                     count: int = COMMAND_COUNT, batch: int = BATCH) -> int:
    """Sends the seeded sequence to both, batch by batch; fails on the first
    reply that differs. Returns how many replies were errors (on both sides)."""
    commands = generate(seed, count)
    by_key: dict[str, list[int]] = defaultdict(list)  # key -> indexes of commands on it
    agreed: list = []  # the reply both sides gave, by index
    errors = 0
    for start in range(0, count, batch):
        chunk = commands[start:start + batch]
        target_replies = target.pipeline(chunk)
        reference_replies = reference.pipeline(chunk)
        for offset, (command, ours, theirs) in enumerate(
                zip(chunk, target_replies, reference_replies)):
            index = start + offset
            if normalise(command, ours) != normalise(command, theirs):
                pytest.fail(mismatch_report(seed, index, commands, ours, theirs,
                                            by_key, agreed), pytrace=False)
            errors += isinstance(theirs, Err)
            agreed.append(theirs)
            for k in command_keys(command):
                by_key[k].append(index)
    return errors


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
        ours = sorted(target.call("KEYS", "*"))
        theirs = sorted(ref.call("KEYS", "*"))
        assert ours == theirs, (f"seed {SEED}: KEYS * after the sequence differs: "
                                f"{len(ours)} keys through shardgate, {len(theirs)} on redis; "
                                f"only shardgate {sorted(set(ours) - set(theirs))[:10]}, "
                                f"only redis {sorted(set(theirs) - set(ours))[:10]}")
        assert target.call("DBSIZE") == ref.call("DBSIZE") == len(theirs)

    misplaced = []
    for i, shard in enumerate(db.shards):
        held = [k.decode() for k in shard.client().keys("*")]
        misplaced += [(k, i, db.shard_index(k)) for k in held if db.shard_index(k) != i]
    assert not misplaced, (f"seed {SEED}: keys on a shard that does not own their slot "
                           f"(key, found on, owner): {misplaced[:10]}")
