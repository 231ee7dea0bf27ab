"""The seeded random command stream the differential tests send to shardgate
and to one plain redis-server (test_differential.py: three static shards;
test_cluster_differential.py: a Redis Cluster behind `cluster: {seeds}`), and
the comparison of the two sides' replies.

The stream: 2,000 keys (1,800 plain, 200 in 20 {hash tags}) so that commands
collide: type errors, missing keys and multi-key commands spanning every shard
all occur. Commands that take several keys and cannot be split (SUNIONSTORE,
SINTER, RENAME) draw their keys from one {tag}, so they are legal on any
sharded Redis; MGET/MSET/DEL/EXISTS draw from everywhere (shardgate splits them).

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
from typing import Callable, Iterator

import pytest

from sharding_env import Err, RespClient, describe_command

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


def fixed_batches(commands: list[tuple], size: int = BATCH) -> Iterator[tuple[int, list[tuple]]]:
    """(index of the first command, commands) in pipelines of `size`."""
    for start in range(0, len(commands), size):
        yield start, commands[start:start + size]


def independent_batches(commands: list[tuple], size: int = BATCH
                        ) -> Iterator[tuple[int, list[tuple]]]:
    """Pipelines of at most `size` in which no key is named by two commands.

    Why: while a slot moves, shardgate may apply two pipelined commands on one
    key in another order than sent (one redirected, the next already routed to
    the new owner; docs/routing.md, "Redirects: what is retried"); a client
    that waits for each reply never sees it. Commands on distinct keys commute,
    so such a pipeline is as good as one command at a time."""
    start, seen = 0, set()
    for i, command in enumerate(commands):
        touched = command_keys(command)
        if i > start and (i - start >= size or not seen.isdisjoint(touched)):
            yield start, commands[start:i]
            start, seen = i, set()
        seen |= touched
    if start < len(commands):
        yield start, commands[start:]


def run_differential(target: RespClient, reference: RespClient, seed: int = SEED,
                     count: int = COMMAND_COUNT,
                     batches: Callable[[list[tuple]], Iterator[tuple[int, list[tuple]]]]
                     = fixed_batches,
                     progress: Callable[[int], None] | None = None) -> int:
    """Sends the seeded sequence to both, pipeline by pipeline (`batches`
    cuts it); fails on the first reply that differs. Returns how many replies
    were errors (on both sides). `progress(n)` is called after each pipeline
    with the number of commands compared so far."""
    commands = generate(seed, count)
    by_key: dict[str, list[int]] = defaultdict(list)  # key -> indexes of commands on it
    agreed: list = []  # the reply both sides gave, by index
    errors = 0
    for start, chunk in batches(commands):
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
        if progress is not None:
            progress(start + len(chunk))
    return errors


def compare_keyspace(target: RespClient, reference: RespClient, seed: int = SEED) -> int:
    """KEYS * and DBSIZE through the target equal the reference's (KEYS
    sorted: its order is the hash table's). Returns the number of keys."""
    ours = sorted(target.call("KEYS", "*"))
    theirs = sorted(reference.call("KEYS", "*"))
    assert ours == theirs, (f"seed {seed}: KEYS * after the sequence differs: "
                            f"{len(ours)} keys through shardgate, {len(theirs)} on redis; "
                            f"only shardgate {sorted(set(ours) - set(theirs))[:10]}, "
                            f"only redis {sorted(set(theirs) - set(ours))[:10]}")
    assert target.call("DBSIZE") == reference.call("DBSIZE") == len(theirs)
    return len(theirs)
