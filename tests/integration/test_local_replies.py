"""Differential test of the commands a multiplexed database answers itself (PING,
ECHO, QUIT, AUTH, HELLO, CLIENT ..., CLUSTER KEYSLOT, SELECT, RESET, MULTI/
EXEC/DISCARD/WATCH/UNWATCH refusals, and every command's arity and unknown
subcommands, which the proxy checks before routing): each case is a short
script of command lines sent on a fresh connection both to a plain
redis-server and through shardgate, and the replies must be the same bytes.

Three multiplexed databases are compared: three shards, one shard with
`multiplex: true`, and three shards behind a `password` (against a
redis-server started with --requirepass; its cases run before AUTH). RESP2
and RESP3 (after HELLO 3 on both sides) each run the whole table.

Where the proxy must differ by design the case names how, and why, and the
test checks that narrower promise instead of equal bytes (Differs below):
client ids are the proxy's own, CLIENT INFO/LIST describe the proxy's client
(only the fields both know are compared), CLUSTER KEYSLOT answers the slot
the proxy routes by where a plain Redis has cluster support disabled, CLIENT
subcommands acting on the shards' shared connections are refused, and what
the proxy answers outside MULTI is refused inside one."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import pytest

from conftest import database
from sharding_env import RespClient, keyslot, start_sharded

PASSWORD = "local-replies-pw"


class RawClient(RespClient):
    """A RespClient that hands back each reply's bytes exactly as received."""

    def _fill(self, what: str) -> None:
        pos = self._pos
        super()._fill(what)
        assert self._pos == pos, "the reply buffer moved under a raw read"

    def read_raw(self, what: str) -> bytes:
        start = self._pos
        self.read_reply(what)
        return bytes(self._buf[start:self._pos])

    def script(self, commands: list[tuple]) -> list[bytes]:
        """Sends the commands in one write (a Stepwise script: each after the
        previous reply), reads one raw reply each."""
        if isinstance(commands, Stepwise):
            replies = []
            for c in commands:
                self.send(*c)
                replies.append(self.read_raw(" ".join(map(str, c))))
            return replies
        self.sock.sendall(b"".join(self.encode(*c) for c in commands))
        return [self.read_raw(" ".join(map(str, c))) for c in commands]


class Stepwise(list):
    """A script whose commands are sent one reply at a time."""


# ---------------------------------------------------------------- by design


@dataclass(frozen=True)
class Differs:
    """Where the proxy's reply must differ from redis-server's, why, and the
    promise that still holds (check returns a problem, or None)."""
    reason: str
    check: Callable[[list[bytes], list[bytes]], str | None]


def same_except(index: int, check_one: Callable[[bytes, bytes], str | None]):
    def check(ours: list[bytes], theirs: list[bytes]) -> str | None:
        for i, (a, b) in enumerate(zip(ours, theirs)):
            problem = check_one(a, b) if i == index else (None if a == b else "differs")
            if problem:
                return f"reply {i}: {problem}"
        return None
    return check


def both_integers(ours: bytes, theirs: bytes) -> str | None:
    if re.fullmatch(rb":\d+\r\n", ours) and re.fullmatch(rb":\d+\r\n", theirs):
        return None
    return "expected an id (integer) from both"


HELLO_ID = re.compile(rb"(\$2\r\nid\r\n):\d+\r\n")


def hello_ids_masked(ours: list[bytes], theirs: list[bytes]) -> str | None:
    a = [HELLO_ID.sub(rb"\1:ID\r\n", r) for r in ours]
    b = [HELLO_ID.sub(rb"\1:ID\r\n", r) for r in theirs]
    return None if a == b else "differs beyond HELLO's id"


# Fields of a CLIENT LIST line whose meaning is the same for the proxy's
# client and a redis-server's: they must agree. (id, addr, fd, buffers ...
# are the connection's own.)
CLIENT_FIELDS = ("name", "db", "sub", "psub", "multi", "cmd", "user", "resp", "flags")


def client_text(reply: bytes) -> str | None:
    m = re.fullmatch(rb"(?:\$\d+\r\n|=\d+\r\ntxt:)(.*)\r\n", reply, re.S)
    return m.group(1).decode() if m else None


def client_lines_agree(ours: bytes, theirs: bytes) -> str | None:
    a, b = client_text(ours), client_text(theirs)
    if a is None or b is None or ours[:1] != theirs[:1]:
        return "expected CLIENT INFO/LIST text of the same RESP type from both"
    la, lb = a.splitlines(), b.splitlines()
    if len(la) != len(lb):
        return f"{len(la)} lines against {len(lb)}"
    for x, y in zip(la, lb):
        fx = dict(f.split("=", 1) for f in x.split(" "))
        fy = dict(f.split("=", 1) for f in y.split(" "))
        for name in CLIENT_FIELDS:
            if fx.get(name) != fy.get(name):
                return f"field {name}: {fx.get(name)!r} against redis's {fy.get(name)!r}"
    return None


def keyslot_of(key: str):
    def check_one(ours: bytes, theirs: bytes) -> str | None:
        if ours != b":%d\r\n" % keyslot(key):
            return f"expected the slot {keyslot(key)}"
        if theirs != b"-ERR This instance has cluster support disabled\r\n":
            return "expected redis-server to say cluster support is disabled"
        return None
    return check_one


def refused(ours: bytes, theirs: bytes) -> str | None:
    if not (ours.startswith(b"-ERR shardgate: ") and b"is not supported" in ours):
        return "expected the proxy's refusal naming the command"
    return None


def refused_inside_multi(ours: list[bytes], theirs: list[bytes]) -> str | None:
    # MULTI, the refused command, EXEC
    if ours[0] != b"+OK\r\n" or not ours[1].startswith(b"-ERR shardgate: "):
        return "expected MULTI's +OK, then the proxy's refusal"
    if ours[2] != b"-EXECABORT Transaction discarded because of previous errors.\r\n":
        return "expected EXEC to abort"
    return None


CLIENT_ID = Differs("client ids are the proxy's own", same_except(0, both_integers))
HELLO = Differs("HELLO's id is the proxy's own client id", hello_ids_masked)


def client_line(index: int) -> Differs:
    return Differs("CLIENT INFO/LIST describe the proxy's client, not a shard connection",
                   same_except(index, client_lines_agree))


def refused_client(index: int = 0) -> Differs:
    return Differs("CLIENT KILL/PAUSE/UNPAUSE/UNBLOCK/REPLY/NO-EVICT act on the shards' "
                   "connections, which every client of the proxy shares",
                   same_except(index, refused))


IN_MULTI = Differs("what the proxy answers itself (SELECT, HELLO, CLIENT, CLUSTER, ...) "
                   "cannot be queued on the transaction's shard", refused_inside_multi)


# ---------------------------------------------------------------- the table

# (commands, None: the same bytes | Differs)
CASES: list[tuple[list[tuple], Differs | None]] = [
    # unknown commands and arity, whoever answers the command
    ([("FOO",)], None),
    ([("foo", "a", "b\r\nc")], None),
    ([("GET",)], None),
    ([("get", "a", "b")], None),
    ([("SET", "k")], None),
    ([("MGET",)], None),
    ([("SWAPDB", "0")], None),
    ([("DEBUG",)], None),
    ([("DEBUG", "SLEEP", "0")], None),
    ([("OBJECT", "nope", "k")], None),
    ([("CONFIG", "GETT", "x")], None),
    # PING, ECHO, QUIT
    ([("PING",)], None),
    ([("ping", "hello")], None),
    ([("PiNg", "x", "y")], None),
    ([("PING", "x", "y", "z")], None),
    ([("ECHO",)], None),
    ([("echo", "")], None),
    ([("ECHO", "a", "b")], None),
    ([("QUIT", "x", "y")], None),
    # AUTH (no password on these databases: the default user is "nopass")
    ([("AUTH",)], None),
    ([("AUTH", "x")], None),
    ([("auth", "default", "anything"), ("PING",)], None),
    ([("AUTH", "someone", "x")], None),
    ([("AUTH", "a", "b", "c")], None),
    # HELLO
    ([("HELLO", "4")], None),
    ([("HELLO", "1")], None),
    ([("HELLO", "x")], None),
    ([("HELLO", "03")], None),
    ([("HELLO", "-0")], None),
    ([("HELLO", "2", "AUTH", "default")], None),
    ([("HELLO", "2", "AUTH", "default", "x", "SETNAME")], None),
    ([("HELLO", "2", "BADOPT")], None),
    ([("HELLO", "2", "AUTH", "someone", "x", "BADOPT")], None),
    ([("HELLO", "2", "AUTH", "someone", "x")], None),
    ([("HELLO", "2", "SETNAME", "a b"), ("CLIENT", "GETNAME")], None),
    ([("HELLO", "2", "SETNAME", "a b", "AUTH", "someone", "x")], None),
    ([("HELLO", "2", "SETNAME", "x", "BADOPT"), ("CLIENT", "GETNAME")], None),
    ([("HELLO", "4", "BADOPT")], None),
    ([("HELLO",), ("HELLO", "2", "AUTH", "default", "x", "SETNAME", "n"),
      ("CLIENT", "GETNAME")], HELLO),
    # CLIENT
    ([("CLIENT",)], None),
    ([("CLIENT", "foo")], None),
    ([("client", "FOO", "bar")], None),
    ([("CLIENT", "SETINFO", "lib-name", "x")], None),  # Redis 7.2's
    ([("client", "setname")], None),
    ([("client", "setname", "a", "b")], None),
    ([("client", "setname", "a b")], None),
    ([("client", "setname", "caf\xe9")], None),
    ([("client", "getname"), ("Client", "SetName", "n1"), ("CLIENT", "GETNAME"),
      ("client", "setname", ""), ("client", "getname")], None),
    ([("client", "getname", "x")], None),
    ([("client", "id", "x")], None),
    ([("client", "info", "x")], None),
    ([("client", "list", "x")], None),
    ([("client", "list", "type")], None),
    ([("client", "list", "type", "foo")], None),
    ([("client", "list", "type", "master")], None),
    ([("client", "list", "type", "normal", "x")], None),
    ([("client", "list", "id")], None),
    ([("client", "list", "id", "x")], None),
    ([("client", "list", "id", "99999999")], None),
    ([("client", "help")], None),
    ([("client", "kill")], None),
    ([("client", "no-evict")], None),
    ([("client", "reply")], None),
    ([("client", "pause")], None),
    ([("client", "unblock")], None),
    ([("client", "tracking")], None),
    ([("client", "caching")], None),
    ([("CLIENT", "ID")], CLIENT_ID),
    ([("CLIENT", "INFO")], client_line(0)),
    ([("CLIENT", "SETNAME", "me"), ("SELECT", "2"), ("client", "info")], client_line(2)),
    ([("CLIENT", "LIST")], client_line(0)),
    ([("CLIENT", "LIST", "TYPE", "Normal")], client_line(0)),
    ([("client", "kill", "127.0.0.1:1")], refused_client()),
    ([("client", "no-evict", "on")], refused_client()),
    ([("client", "reply", "on")], refused_client()),
    ([("client", "pause", "10")], refused_client()),
    ([("client", "unpause")], refused_client()),
    ([("client", "unblock", "1")], refused_client()),
    # SELECT
    ([("SELECT",)], None),
    ([("SELECT", "1", "2")], None),
    ([("SELECT", "x")], None),
    ([("SELECT", "01")], None),
    ([("SELECT", "-1")], None),
    ([("SELECT", "16")], None),
    ([("SELECT", "99999999999")], None),
    ([("SELECT", "99999999999999999999999")], None),
    ([("select", "3"), ("DBSIZE",), ("SELECT", "0")], None),
    # RESET
    ([("RESET", "x")], None),
    ([("CLIENT", "SETNAME", "n"), ("RESET",), ("CLIENT", "GETNAME")], None),
    # CLUSTER
    ([("CLUSTER",)], None),
    ([("CLUSTER", "KEYSLOT")], None),
    ([("cluster", "keyslot", "a", "b")], None),
    ([("CLUSTER", "foo")], None),
    ([("CLUSTER", "INFO")], None),
    ([("CLUSTER", "KEYSLOT", "somekey")],
     Differs("CLUSTER KEYSLOT answers the slot the proxy routes by",
             same_except(0, keyslot_of("somekey")))),
    # INFO: an unknown section is empty (the rest: test_multiplexed_info.py)
    ([("INFO", "nosuchsection")], None),
    # transactions: arity and nesting
    ([("MULTI", "x")], None),
    ([("EXEC", "x")], None),
    ([("DISCARD", "x")], None),
    ([("UNWATCH", "x")], None),
    ([("WATCH",)], None),
    ([("EXEC",)], None),
    ([("DISCARD",)], None),
    ([("UNWATCH",)], None),
    ([("MULTI",), ("MULTI", "x"), ("EXEC",)], None),
    ([("MULTI",), ("MULTI",), ("EXEC",)], None),
    ([("MULTI",), ("WATCH", "k"), ("EXEC",)], None),
    ([("MULTI",), ("PING", "a", "b", "c"), ("EXEC",)], None),
    ([("MULTI",), ("ECHO",), ("EXEC",)], None),
    ([("MULTI",), ("SELECT",), ("EXEC",)], None),
    ([("MULTI",), ("CLIENT", "FOO"), ("EXEC",)], None),
    ([("MULTI",), ("FOO",), ("EXEC",)], None),
    ([("MULTI",), ("GET",), ("SET", "lr:k", "v"), ("EXEC",), ("GET", "lr:k")], None),
    ([("MULTI",), ("SET", "lr:m", "v"), ("EXEC", "x"), ("GET", "lr:m"), ("PING",)], None),
    ([("MULTI",), ("PING",), ("EXEC", "x"), ("EXEC",)], None),
    # EXEC refused for its arity forgets the WATCH too: the later
    # transaction runs although the watched key changed.
    ([("WATCH", "lr:w"), ("SET", "lr:w", "1"), ("EXEC", "x"), ("MULTI",), ("GET", "lr:w"),
      ("EXEC",)], None),
    ([("WATCH", "lr:w2"), ("MULTI",), ("SET", "lr:w2", "1"), ("EXEC", "x"), ("EXEC",),
      ("GET", "lr:w2")], None),
    ([("MULTI",), ("DEBUG", "SLEEP", "0"), ("EXEC",)], None),
    # RESET inside MULTI forgets the commands queued before the shard was known.
    ([("MULTI",), ("PING",), ("RESET",), ("MULTI",), ("PING",), ("SET", "lr:r", "v"),
      ("EXEC",), ("GET", "lr:r"), ("PING",)], None),
    ([("MULTI",), ("WAIT", "0", "0"), ("EXEC",)], None),
    ([("MULTI",), ("SELECT", "0"), ("EXEC",)], IN_MULTI),
    ([("MULTI",), ("CLUSTER", "KEYSLOT", "a"), ("EXEC",)], IN_MULTI),
    # pub/sub: arity first, as Redis checks it
    ([("SUBSCRIBE",)], None),
    ([("PSUBSCRIBE",)], None),
    # The confirmation comes from a shard; what follows in the same write is
    # answered after it, in order.
    ([("SUBSCRIBE", "lr:ch"), ("PING", "a", "b"), ("GET",), ("FOO",),
      ("CLIENT", "nope"), ("PING",)], None),
    ([("SUBSCRIBE", "lr:ch"), ("PING",)], None),
    ([("PSUBSCRIBE", "lr:*"), ("SUBSCRIBE", "lr:a", "lr:b"), ("PING", "x"),
      ("UNSUBSCRIBE", "lr:a"), ("PING",)], None),
    ([("SUBSCRIBE", "lr:ch"), ("QUIT",)], None),
    # A bare (P)UNSUBSCRIBE leaves what the earlier commands subscribed to,
    # confirmed or not yet.
    ([("SUBSCRIBE", "lr:ch"), ("UNSUBSCRIBE",), ("UNSUBSCRIBE",), ("PING",)], None),
    ([("SUBSCRIBE", "lr:a"), ("PSUBSCRIBE", "lr:*"), ("PUNSUBSCRIBE",), ("UNSUBSCRIBE",),
      ("PING", "x")], None),
    # Nothing to leave: a null name in the client's protocol.
    ([("UNSUBSCRIBE",)], None),
    ([("PUNSUBSCRIBE",)], None),
]

CASES_RESP2_ONLY: list[tuple[list[tuple], Differs | None]] = []

# A database with a password, before AUTH: Redis checks the command and its
# arity first, then authentication.
CASES_NO_AUTH: list[tuple[list[tuple], Differs | None]] = [
    ([("PING",)], None),
    ([("FOO",)], None),
    ([("GET",)], None),
    ([("CLIENT", "foo")], None),
    ([("CLIENT", "ID")], None),
    ([("EXEC", "x")], None),
    ([("MULTI",)], None),
    ([("AUTH",)], None),
    ([("AUTH", "a", "b", "c")], None),
    ([("AUTH", "wrong"), ("PING",)], None),
    ([("AUTH", "default", "wrong"), ("PING",)], None),
    ([("AUTH", "someone", PASSWORD), ("PING",)], None),
    ([("AUTH", PASSWORD), ("PING",)], None),
    ([("auth", "default", PASSWORD), ("PING",)], None),
    ([("HELLO", "3")], None),
    ([("HELLO",)], None),
    ([("HELLO", "2", "AUTH", "default", "wrong")], None),
    ([("HELLO", "2", "AUTH", "default", "wrong", "BADOPT")], None),
    ([("HELLO", "2", "AUTH", "default", PASSWORD, "SETNAME", "a b"), ("PING",)], None),
    ([("HELLO", "2", "AUTH", "default", PASSWORD), ("PING",)], HELLO),
    ([("HELLO", "2", "AUTH", "default", PASSWORD, "BADOPT"), ("PING",)], None),
    ([("HELLO", "3", "SETNAME", "x"), ("CLIENT", "GETNAME")], None),
    ([("HELLO", "2", "SETNAME", "x", "BADOPT"), ("PING",)], None),
    ([("RESET",), ("PING",)], None),
    ([("QUIT",)], None),
]


# ---------------------------------------------------------------- running


@dataclass
class Target:
    name: str
    proxy: Callable[[], RawClient]
    reference: Callable[[], RawClient]


# DEBUG is refused by a default redis-server 7.0; these allow it, so that
# DEBUG's routing (inside MULTI too) is compared, not the shard's refusal.
DEBUG = ("--enable-debug-command", "yes")


def targets(redis_server, shardgate, which: str) -> Target:
    if which == "password":
        reference = redis_server("--requirepass", PASSWORD, *DEBUG)
        db = start_sharded(redis_server, shardgate, password=PASSWORD, shard_args=DEBUG)
        ca, port = db.ca, db.port
    elif which == "3 shards":
        reference = redis_server(*DEBUG)
        db = start_sharded(redis_server, shardgate, shard_args=DEBUG)
        ca, port = db.ca, db.port
    else:
        reference = redis_server(*DEBUG)
        shard = redis_server(*DEBUG)
        config = database("one", 0, shard.address)
        config["multiplex"] = True
        sg = shardgate([config])
        ca, port = sg.ca, sg.port()
    return Target(which,
                  proxy=lambda: RawClient.tls(port, ca, timeout=10),
                  reference=lambda: RawClient.plain(reference.port, timeout=10))


def run_table(target: Target, cases, prelude: list[tuple]) -> list[str]:
    problems = []
    for commands, differs in cases:
        with target.proxy() as ours_conn, target.reference() as theirs_conn:
            ours_pre = ours_conn.script(prelude) if prelude else []
            theirs_pre = theirs_conn.script(prelude) if prelude else []
            if hello_ids_masked(ours_pre, theirs_pre):
                problems.append(f"prelude {prelude}: {ours_pre!r} against {theirs_pre!r}")
                continue
            ours = ours_conn.script(commands)
            theirs = theirs_conn.script(commands)
        if differs is None:
            problem = None if ours == theirs else "not the same bytes"
        else:
            problem = differs.check(ours, theirs)
        if problem:
            why = f" (differs by design: {differs.reason})" if differs else ""
            problems.append(f"{commands}{why}: {problem}\n      shardgate: {ours!r}\n"
                            f"      redis:     {theirs!r}")
    return problems


@pytest.mark.parametrize("resp", [2, 3])
@pytest.mark.parametrize("which", ["3 shards", "multiplex"])
def test_local_replies_are_redis_servers(procs, redis_server, shardgate, which, resp):
    target = targets(redis_server, shardgate, which)
    prelude = [("HELLO", "3")] if resp == 3 else []
    cases = CASES + (CASES_RESP2_ONLY if resp == 2 else [])
    problems = run_table(target, cases, prelude)
    assert not problems, (f"{target.name}, RESP{resp}: {len(problems)} of {len(cases)} cases "
                          f"differ from redis-server:\n  " + "\n  ".join(problems))


def test_local_replies_before_auth_are_redis_servers(procs, redis_server, shardgate):
    target = targets(redis_server, shardgate, "password")
    problems = run_table(target, CASES_NO_AUTH, [])
    assert not problems, (f"{len(problems)} of {len(CASES_NO_AUTH)} cases differ from "
                          f"redis-server --requirepass:\n  " + "\n  ".join(problems))
