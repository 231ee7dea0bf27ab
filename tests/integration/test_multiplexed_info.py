"""INFO on a multiplexed database: what client libraries read in it is there.

Every shard answers the client's own INFO and the proxy combines the replies
(docs/routing.md, INFO): the shard's sections with one shard, counts
summed with several, the rest from the first shard; `redis_version` in
`server`; the proxy's own fields all named `shardgate_*`. Sections and
arguments as redis-server 7.0 takes them (none, default, all, everything,
several, unknown, any case)."""
from __future__ import annotations

import time

import pytest

from conftest import database
from sharding_env import RespClient, start_sharded


class Db:
    """A multiplexed database and its shards, however many."""

    def __init__(self, port, ca, shards, sharded=None):
        self.port, self.ca, self.shards, self.sharded = port, ca, shards, sharded

    def raw(self, timeout: float = 10.0) -> RespClient:
        return RespClient.tls(self.port, self.ca, timeout=timeout)

    def key_on(self, index: int, stem: str) -> str:
        return self.sharded.key_on(index, stem) if self.sharded else f"{stem}:{index}"


@pytest.fixture(params=["3 shards", "multiplex"])
def db(request, procs, redis_server, shardgate) -> Db:
    if request.param == "3 shards":
        sharded = start_sharded(redis_server, shardgate)
        return Db(sharded.port, sharded.ca, sharded.shards, sharded)
    shard = redis_server()
    config = database("one", 0, shard.address)
    config["multiplex"] = True
    sg = shardgate([config])
    return Db(sg.port(), sg.ca, [shard])


def info_text(conn: RespClient, *sections: str) -> str:
    reply = conn.call("INFO", *sections)
    assert isinstance(reply, bytes), f"INFO {' '.join(sections)}: expected text, got {reply!r}"
    return reply.decode()


def parse(text: str) -> dict[str, dict[str, str]]:
    """{"clients": {"blocked_clients": "0", ...}, ...} (section names lower case)."""
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in text.split("\r\n"):
        if line.startswith("# "):
            current = sections.setdefault(line[2:].lower(), {})
        elif line and current is not None:
            name, _, value = line.partition(":")
            current[name] = value
    return sections


def headers(text: str) -> list[str]:
    return [line for line in text.split("\r\n") if line.startswith("# ")]


def shard_info(shard, *sections: str) -> dict[str, dict[str, str]]:
    with RespClient.plain(shard.port) as conn:
        return parse(info_text(conn, *sections))


def test_info_server_has_the_shards_redis_version(db):
    with db.raw() as conn:
        server = parse(info_text(conn, "server"))["server"]
    theirs = shard_info(db.shards[0], "server")["server"]
    assert server.get("redis_version") == theirs["redis_version"], server
    assert server.get("redis_mode") == theirs["redis_mode"], server
    assert server.get("shardgate_shards") == str(len(db.shards)), server
    assert server.get("shardgate_version"), server


def test_info_clients_counts_a_client_blocked_in_blpop(db):
    key = db.key_on(len(db.shards) - 1, "blocked")
    with db.raw() as conn:
        clients = parse(info_text(conn, "clients"))["clients"]
        assert clients.get("blocked_clients") == "0", clients
        with db.raw() as blocked, db.raw() as pusher:
            blocked.send("BLPOP", key, "0")
            deadline = time.monotonic() + 5
            seen = "0"
            while time.monotonic() < deadline:
                seen = parse(info_text(conn, "clients"))["clients"].get("blocked_clients")
                if seen is not None and int(seen) >= 1:
                    break
                time.sleep(0.05)
            assert seen is not None and int(seen) >= 1, (
                f"INFO clients through the proxy never counted the client blocked in BLPOP "
                f"(blocked_clients:{seen} after 5 s)")
            assert pusher.call("LPUSH", key, "v") == 1
            assert blocked.read_reply("BLPOP's answer") == [key.encode(), b"v"]
        deadline = time.monotonic() + 5
        while parse(info_text(conn, "clients"))["clients"]["blocked_clients"] != "0":
            assert time.monotonic() < deadline, "blocked_clients did not return to 0"
            time.sleep(0.05)


def test_info_memory_persistence_replication_are_the_shards(db):
    with db.raw() as conn:
        sections = parse(info_text(conn, "memory", "persistence", "replication"))
    assert set(sections) == {"memory", "persistence", "replication"}, sections.keys()
    theirs = shard_info(db.shards[0], "memory", "persistence", "replication")
    for name in ("memory", "persistence", "replication"):
        assert sections[name], f"INFO {name} through the proxy is empty"
        assert set(sections[name]) == set(theirs[name]), (
            f"INFO {name}: fields differ from the shard's: only the proxy's "
            f"{sorted(set(sections[name]) - set(theirs[name]))}, only the shard's "
            f"{sorted(set(theirs[name]) - set(sections[name]))}")
    used = sum(int(shard_info(s, "memory")["memory"]["used_memory"]) for s in db.shards)
    ours = int(sections["memory"]["used_memory"])
    # Summed over the shards (each moves a little between the two reads).
    assert 0.8 * used < ours < 1.2 * used, f"used_memory {ours}, the shards' sum {used}"
    assert sections["persistence"]["loading"] == "0"
    assert sections["replication"]["role"] == "master"


def test_info_keyspace_and_stats_are_summed_over_the_shards(db):
    keys = [db.key_on(i, f"ks{n}") for i in range(len(db.shards)) for n in range(3)]
    with db.raw() as conn:
        for n, key in enumerate(keys):
            assert conn.call("SET", key, "v") == "OK"
            if n % 2:
                assert conn.call("EXPIRE", key, "1000") == 1
        for key in keys:
            assert conn.call("GET", key) == b"v"
        ours = parse(info_text(conn, "keyspace", "stats"))
    assert ours["keyspace"]["db0"].startswith(f"keys={len(keys)},expires={len(keys) // 2},"), ours
    shard_stats = [shard_info(s, "stats")["stats"] for s in db.shards]
    for field in ("keyspace_hits", "keyspace_misses", "expired_keys"):
        assert int(ours["stats"][field]) == sum(int(s[field]) for s in shard_stats), (
            f"{field}: {ours['stats'][field]} through the proxy, the shards' "
            f"{[s[field] for s in shard_stats]}")
    assert int(ours["stats"]["keyspace_hits"]) >= len(keys)


def test_info_own_fields_are_named_apart_from_redis(db):
    with db.raw() as conn:
        ours = parse(info_text(conn, "everything"))
    with RespClient.plain(db.shards[0].port) as direct:
        theirs = parse(info_text(direct, "everything"))
    own = {(s, f) for s, fields in ours.items() for f in fields if f.startswith("shardgate_")}
    assert {("server", "shardgate_version"), ("server", "shardgate_database"),
            ("clients", "shardgate_worker_connected_clients"),
            ("stats", "shardgate_worker_total_connections_received")} <= own, own
    redis_names = {f for fields in theirs.values() for f in fields}
    assert not [f for f in redis_names if f.startswith("shardgate_")]
    # Every other field is one the shard itself prints (commandstats and
    # latencystats name commands, which differ: those sections aside).
    for section in ("server", "clients", "memory", "persistence", "stats", "replication",
                    "cpu", "cluster"):
        invented = {f for f in ours[section] if not f.startswith("shardgate_")} - set(
            theirs[section])
        assert not invented, f"INFO {section}: fields Redis does not have: {sorted(invented)}"


INFO_ARGS = [
    (), ("default",), ("all",), ("everything",), ("server", "clients"), ("SERVER",),
    ("Keyspace", "server"), ("nosuchsection",), ("nosuchsection", "clients"),
    ("commandstats",), ("errorstats", "latencystats"), ("cpu", "CPU"),
]


def test_info_sections_are_those_redis_gives_for_the_same_arguments(procs, redis_server,
                                                                    shardgate):
    sharded = start_sharded(redis_server, shardgate)
    reference = redis_server()
    problems = []
    for args in INFO_ARGS:
        with sharded.raw() as ours_conn, RespClient.plain(reference.port) as ref:
            ours, theirs = info_text(ours_conn, *args), info_text(ref, *args)
            if headers(ours) != headers(theirs) or (ours == "") != (theirs == ""):
                problems.append(f"INFO {' '.join(args)}: sections {headers(ours)}, "
                                f"redis-server's {headers(theirs)}")
            # RESP3: RESP3's verbatim text, as Redis sends it.
            ours_conn.call("HELLO", "3")
            ref.call("HELLO", "3")
            ours_conn.send("INFO", *args)
            ref.send("INFO", *args)
            kinds = ours_conn._line("INFO's reply")[:1], ref._line("INFO's reply")[:1]
            if kinds != (b"=", b"="):
                problems.append(f"INFO {' '.join(args)} in RESP3: reply types {kinds}")
    assert not problems, "\n".join(problems)
