"""Commands sent on a MONITOR connection of a multiplexed database get what
redis-server 7.0 answers on one (PING: +PONG, GET and SET: "-ERR Replica can't
interact with the keyspace", a second MONITOR: nothing, SUBSCRIBE: a subscriber
that still monitors, RESET: a normal connection again, QUIT: +OK and a close),
in the same order, each followed by its own feed line where redis-server feeds
one.

Differential: the same steps run on a MONITOR connection straight to a
redis-server and through shardgate (three shards; one shard with
`multiplex: true`); the transcripts must be equal once feed lines lose their
timestamp and client address. After each command the test sends an unknown
command as a marker: redis-server answers it in every state without feeding
it, so the transcript of a command is everything up to the marker's error."""
from __future__ import annotations

import os
import re
import signal
import time

import pytest

from conftest import database
from sharding_env import Err, RespClient, start_sharded

MARKER = "NO-SUCH-COMMAND"
MARKER_ERROR = f"ERR unknown command '{MARKER}', with args beginning with: "
FEED = re.compile(r"^\d+\.\d+ \[(\d+) \S+\] (.*)$")


def normalize(reply):
    """A feed line loses its timestamp and address; everything else is kept."""
    if isinstance(reply, str):
        m = FEED.match(reply)
        if m:
            return ("feed", m.group(1), m.group(2))
    if isinstance(reply, Err):
        return ("error", reply.message)
    return reply


class Monitor:
    def __init__(self, conn: RespClient) -> None:
        self.conn = conn
        self.transcript: list = []

    def command(self, *args) -> None:
        """Sends the command and the marker; records what came before the
        marker's reply."""
        self.conn.send_raw(RespClient.encode(*args) + RespClient.encode(MARKER))
        got = []
        while True:
            reply = normalize(self.conn.read_reply(f"the replies to {args}"))
            if reply == ("error", MARKER_ERROR):
                break
            got.append(reply)
        self.transcript.append((args, got))

    def await_feed(self, worker: RespClient, *args) -> None:
        """Another client runs a command; records what the monitor receives up
        to that command's feed line (a message published comes before it)."""
        worker.call(*args)
        want = " ".join(f'"{a}"' for a in args)
        got = []
        while True:
            reply = normalize(self.conn.read_reply(f"the feed line of {args}"))
            got.append(reply)
            if isinstance(reply, tuple) and reply[0] == "feed" and reply[2] == want:
                break
        self.transcript.append((("other client",) + args, got))

    def pipeline_to_close(self, *commands) -> None:
        """Sends the commands in one write; records every reply until the
        server closes the connection."""
        self.conn.send_raw(b"".join(RespClient.encode(*c) for c in commands))
        got = []
        while True:
            try:
                got.append(normalize(self.conn.read_reply(f"the replies to {commands}")))
            except ConnectionError:
                break
        self.transcript.append((commands, got))


def run_steps(monitor: Monitor, worker: RespClient, keys: list[str], channel: str) -> None:
    m = monitor
    assert m.conn.call("MONITOR") == "OK"
    m.command("PING")
    m.command("PING", "hello")
    m.command("ECHO", "x")
    m.command("GET", keys[0])
    m.command("SET", keys[0], "1")
    m.command("DBSIZE")
    m.command("KEYS", "*")
    m.command("GET")
    m.command("AUTH")
    m.command("RESET", "x")
    m.command("MONITOR")
    for key in keys:
        m.await_feed(worker, "SET", key, "v")
    m.command("CLIENT", "SETNAME", "watcher")
    m.command("CONFIG", "GET", "maxmemory")
    m.command("MULTI")
    m.command("SET", keys[1], "2")
    m.command("EXEC")
    m.command("SUBSCRIBE", channel)
    m.command("PING")
    m.command("GET", keys[0])
    m.await_feed(worker, "PUBLISH", channel, "first")
    m.command("PSUBSCRIBE", channel[:2] + "*")
    # Quoted and escaped in feed lines as redis-server does (the proxy drops
    # the feed lines of its own copies on the other shards by that text).
    odd = b'odd "\\ \t\x01\xff*'
    m.command("PSUBSCRIBE", odd)
    m.command("PUNSUBSCRIBE", odd)
    m.await_feed(worker, "PUBLISH", channel, "second")
    m.command("UNSUBSCRIBE")
    m.command("PUNSUBSCRIBE")
    m.command("PING")
    m.command("RESET")
    m.command("PING")
    m.command("GET", keys[0])
    m.pipeline_to_close(("MONITOR",), ("PING",), ("GET", keys[2]), ("MONITOR",), ("QUIT",),
                        ("PING",))


def transcript_of(conn: RespClient, worker: RespClient, keys, channel) -> list:
    monitor = Monitor(conn)
    try:
        run_steps(monitor, worker, keys, channel)
    except AssertionError as e:
        raise AssertionError(f"{e}\ntranscript so far:\n" + "\n".join(
            f"  {args}: {got}" for args, got in monitor.transcript)) from None
    return monitor.transcript


def compare(reference: list, through: list) -> None:
    for (args, want), (_, got) in zip(reference, through):
        assert got == want, (f"{args}: redis-server answered {want}, shardgate {got}\n"
                             + "\n".join(f"  {a}: {g}" for a, g in through))
    assert len(through) == len(reference)


def test_monitor_connection_answers_as_redis_server_on_three_shards(redis_server, shardgate):
    db = start_sharded(redis_server, shardgate)
    reference = redis_server()
    keys = [db.key_on(i, "mon") for i in range(3)]
    # A channel on a shard that is not the first: its messages reach the
    # client through another shard's connection than the one answering.
    channel = next(c for c in (f"ch{n}" for n in range(1000)) if db.shard_index(c) == 2)
    with RespClient.plain(reference.port, timeout=5) as conn, \
            RespClient.plain(reference.port, timeout=5) as worker:
        want = transcript_of(conn, worker, keys, channel)
    with db.raw(timeout=3) as conn, db.raw(timeout=5) as worker:
        got = transcript_of(conn, worker, keys, channel)
    compare(want, got)


def test_monitor_connection_answers_as_redis_server_multiplexed(redis_server, shardgate):
    backend = redis_server()
    config = database("db1", 0, backend.address)
    config["multiplex"] = True
    sg = shardgate([config])
    reference = redis_server()
    keys = ["a", "b", "c"]
    with RespClient.plain(reference.port, timeout=5) as conn, \
            RespClient.plain(reference.port, timeout=5) as worker:
        want = transcript_of(conn, worker, keys, "news")
    with RespClient.tls(sg.port(), sg.ca, timeout=3) as conn, \
            RespClient.tls(sg.port(), sg.ca, timeout=5) as worker:
        got = transcript_of(conn, worker, keys, "news")
    compare(want, got)


def test_pipelined_commands_after_monitor_keep_their_order(redis_server, shardgate):
    """MONITOR, then commands in the same write: the client hears MONITOR's one
    +OK first, then each reply in order, QUIT's +OK after the shard's answers."""
    db = start_sharded(redis_server, shardgate)
    reference = redis_server()
    commands = [("MONITOR",), ("PING",), ("GET", "k"), ("ECHO", "e"), ("MONITOR",), ("QUIT",)]

    def run(conn: RespClient) -> list:
        m = Monitor(conn)
        m.pipeline_to_close(*commands)
        return m.transcript[0][1]

    with RespClient.plain(reference.port, timeout=5) as conn:
        want = run(conn)
    with db.raw(timeout=3) as conn:
        got = run(conn)
    assert got == want
    assert want[0] == "OK" and want[-1] == "OK", want


def test_monitor_connection_refuses_what_other_connections_refuse(redis_server, shardgate):
    """A MONITOR connection sends the client's commands to a shard's
    connection as they are, except what the proxy refuses on any connection:
    CLIENT REPLY (OFF or SKIP swallowed the proxy's sync marker, and the QUIT
    waiting for it was never answered), CLIENT KILL / PAUSE (the shards'
    connections are every client's), SHUTDOWN / REPLICAOF (one shard of the
    database). They get the refusal a normal connection gets, in order, and
    the shards are untouched."""
    db = start_sharded(redis_server, shardgate)
    refused = [("CLIENT", "REPLY", "OFF"), ("CLIENT", "REPLY", "SKIP"),
               ("CLIENT", "KILL", "TYPE", "normal"), ("CLIENT", "PAUSE", "100"),
               ("SHUTDOWN",), ("REPLICAOF", "127.0.0.1", "1")]
    with db.raw() as normal:
        want = [normalize(normal.call(*c)) for c in refused]
    assert all(w[0] == "error" and "shardgate" in w[1] for w in want), want
    with db.raw(timeout=3) as conn:
        m = Monitor(conn)
        m.pipeline_to_close(("MONITOR",), *refused, ("PING",), ("QUIT",))
        got = m.transcript[0][1]
    assert got == ["OK", *want, "PONG", ("feed", "0", '"PING"'), "OK"], got
    for shard in db.shards:
        assert shard.client().ping()


def test_monitor_lines_held_for_a_stopped_answering_shard_are_bounded(redis_server, shardgate):
    """MONITOR's +OK comes from one shard (the first); the other shards' feed
    lines wait for it. While that shard is stopped they are held like any
    reply, so limits.max_client_output disconnects the client instead of the
    proxy holding an unbounded feed."""
    db = start_sharded(redis_server, shardgate, limits={"max_client_output": 65536})
    answering = db.shards[0]
    os.kill(answering.proc.pid, signal.SIGSTOP)
    try:
        with db.raw(timeout=10) as monitor:
            monitor.send_raw(RespClient.encode("MONITOR"))
            feeders = [s.client() for s in db.shards[1:]]
            value = "v" * 4096
            closed = False
            deadline = time.monotonic() + 20
            sent = 0
            while time.monotonic() < deadline and sent < 2000:
                for i, f in enumerate(feeders):
                    f.set(f"feed{i}:{sent}", value)
                sent += 1
                if sent % 20 == 0 and "max_client_output" in db.sg.log():
                    closed = True
                    break
            assert closed, (f"{sent * len(feeders)} feed lines of 4 KiB held for the client "
                            "and it was not disconnected at max_client_output")
            with pytest.raises(ConnectionError):
                monitor.read_reply("after the disconnect")
            for f in feeders:
                f.close()
    finally:
        os.kill(answering.proc.pid, signal.SIGCONT)
    with db.raw() as after:
        assert after.call("PING") == "PONG", "the proxy serves on"
