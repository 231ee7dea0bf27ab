"""The shared shard link of a multiplexed database (several shards, or
`multiplex: true`) under replies that are slow or deep:

- the watchdog (`limits.shard_timeout_ms`) fails a link whose shard has been
  silent that long while a reply is owed, not one whose oldest request is
  that old: a shard that takes longer than the timeout to send a long reply,
  because it is big, or the network slow, or a client asked for many and
  does not read them, is alive, and the clients queued behind it get their
  replies; a shard that stops in the middle of a reply still times out;
- a reply nested as deep as redis-server ever nests (a Lua table that
  contains itself) is relayed byte for byte, and the link keeps serving.

A `Relay` stands for the network between shardgate and a real redis-server:
it passes the shard's bytes at a set pace (a slow network or a shard busy
producing) or holds them (a shard that stopped mid-reply).
"""
from __future__ import annotations

import socket
import threading
import time

import pytest

from conftest import database, tls_socket
from sharding_env import Err, RespClient, start_sharded

TIMEOUT_MS = 800


class Relay:
    """A TCP relay on 127.0.0.1 (port 0, the kernel's choice) in front of one
    redis-server. Requests pass at once; replies pass `chunk` bytes every
    `interval` seconds once `throttle()` is called, and not at all while
    `pause()`d. Threads are daemons; close() ends every connection."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.chunk = 1 << 16
        self.interval = 0.0
        self.flowing = threading.Event()
        self.flowing.set()
        self.reply_bytes = 0   # bytes of replies passed on, all connections
        self.last_reply_at = 0.0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def throttle(self, chunk: int, interval: float) -> None:
        self.chunk, self.interval = chunk, interval

    def pause(self) -> None:
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        self._closed = True
        self.flowing.set()
        for s in [self.listener, *self._sockets]:
            try:
                s.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._closed:
            try:
                down, _ = self.listener.accept()
                up = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                return
            self._sockets += [down, up]
            threading.Thread(target=self._pump, args=(down, up, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, replies: bool) -> None:
        try:
            while not self._closed:
                data = src.recv(self.chunk if replies else 1 << 16)
                if not data:
                    break
                if replies:
                    self.flowing.wait()
                    if self._closed:
                        break
                dst.sendall(data)
                if replies:
                    with self._lock:
                        self.reply_bytes += len(data)
                        self.last_reply_at = time.monotonic()
                    if self.interval:
                        time.sleep(self.interval)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def relays():
    made: list[Relay] = []

    def start(target_port: int) -> Relay:
        relay = Relay(target_port)
        made.append(relay)
        return relay

    yield start
    for relay in made:
        relay.close()


def start_behind_relay(redis_server, shardgate, relays, **limits):
    """One redis-server, a Relay in front of it, and shardgate multiplexing
    one shard through the relay with one worker: every client shares the one
    link."""
    backend = redis_server()
    relay = relays(backend.port)
    db = database("db1", 0, f"127.0.0.1:{relay.port}")
    db["multiplex"] = True
    sg = shardgate([db], workers=1, limits={"shard_timeout_ms": TIMEOUT_MS, **limits})
    return sg, backend, relay


def raw(sg, timeout: float = 15.0) -> RespClient:
    return RespClient.tls(sg.port(), sg.ca, timeout=timeout)


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


# ---------------------------------------------------------------- the watchdog


def test_a_reply_slower_than_shard_timeout_but_progressing_fails_no_one(
        redis_server, shardgate, relays):
    sg, backend, relay = start_behind_relay(redis_server, shardgate, relays)
    value = b"v" * 480_000
    backend.client().set("big", value)
    with raw(sg) as reader, raw(sg) as other:
        assert other.call("SET", "small", "s") == "OK"  # the shared link is up
        relay.throttle(chunk=16_384, interval=0.1)      # ~3 s for the value
        start = time.monotonic()
        reader.send("GET", "big")
        wait_until(lambda: relay.reply_bytes > 0, 5, "the value to start arriving")
        # Queued behind the value on the same link, for the whole 3 s.
        commands = [("GET", "small"), ("INCR", "n"), ("SET", "k", "v"), ("GET", "k")] * 5
        replies = other.pipeline(commands)
        assert reader.read_reply("the big value") == value
        took = time.monotonic() - start
    assert replies == [b"s", 1, "OK", b"v", b"s", 2, "OK", b"v", b"s", 3, "OK", b"v",
                       b"s", 4, "OK", b"v", b"s", 5, "OK", b"v"], replies
    assert took > 2 * TIMEOUT_MS / 1000, (
        f"the value took {took:.2f} s: not longer than shard_timeout_ms, the test shows nothing")
    assert "unavailable" not in sg.log(), sg.log()[-2000:]


def test_a_client_not_reading_many_replies_makes_no_one_time_out(
        redis_server, shardgate, relays):
    """One client pipelines GETs of big values and does not read; the shard
    needs longer than shard_timeout_ms to send them all; the client is
    dropped at max_client_output, its replies are read and dropped, and the
    client behind them gets its reply, not an error."""
    sg, backend, relay = start_behind_relay(redis_server, shardgate, relays,
                                            max_client_output=262_144)
    backend.client().set("big", b"x" * 32_768)
    backend.client().set("small", "s")
    with raw(sg) as hog, raw(sg) as polite:
        assert polite.call("GET", "small") == b"s"
        relay.throttle(chunk=32_768, interval=0.05)  # ~0.65 MB/s: 2 MB take ~3 s
        hog.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        start = time.monotonic()
        hog.send_raw(b"".join(hog.encode("GET", "big") for _ in range(64)))
        wait_until(lambda: relay.reply_bytes > 0, 5, "the hog's replies to start")
        reply = polite.call("GET", "small")
        took = time.monotonic() - start
    assert reply == b"s", reply
    assert took > 2 * TIMEOUT_MS / 1000, (
        f"the hog's replies took {took:.2f} s: not longer than shard_timeout_ms")
    assert "unavailable" not in sg.log(), sg.log()[-2000:]


def test_a_shard_that_stops_mid_reply_times_out_from_its_last_byte(
        redis_server, shardgate, relays):
    sg, backend, relay = start_behind_relay(redis_server, shardgate, relays)
    backend.client().set("big", b"v" * 480_000)
    with raw(sg) as reader, raw(sg) as queued:
        assert queued.call("SET", "small", "s") == "OK"
        relay.throttle(chunk=16_384, interval=0.1)
        start = time.monotonic()
        reader.send("GET", "big")
        wait_until(lambda: relay.reply_bytes > 0, 5, "the value to start arriving")
        queued.send("GET", "small")
        # Longer than the timeout of progress, then silence mid-value.
        time.sleep(1.5 * TIMEOUT_MS / 1000)
        relay.pause()
        paused = time.monotonic()
        # The reader got part of the value: its stream cannot carry an error
        # inside the value, so it ends. The client queued behind gets the error.
        reader.sock.settimeout(10)
        got = 0
        while chunk := reader.sock.recv(1 << 16):
            got += len(chunk)
        ended = time.monotonic()
        error = queued.read_reply("the error behind the stopped reply")
        errored = time.monotonic()
        assert isinstance(error, Err) and f"no reply within {TIMEOUT_MS} ms" in error.message, error
        assert 0 < got < 480_000, f"the reader got {got} bytes of the value"
        silent = relay.last_reply_at
        assert silent < paused + 0.05
        assert ended - silent >= TIMEOUT_MS / 1000 - 0.05, (
            f"failed {ended - silent:.2f} s after the shard's last byte, "
            f"{ended - start:.2f} s after the request: the watchdog counted from the request")
        assert errored - silent < TIMEOUT_MS / 1000 + 1.5, (
            f"the error came {errored - silent:.2f} s after the shard went silent")
        relay.resume()
        relay.throttle(chunk=1 << 16, interval=0.0)
        deadline = time.monotonic() + 5
        while (reply := queued.call("GET", "small")) != b"s":
            assert time.monotonic() < deadline, f"the shard was not served again: {reply!r}"
            time.sleep(0.05)


# ---------------------------------------------------------------- deep replies


# redis-server 7.0 answers each with ~8,000 nested arrays, then its Lua stack
# limit error: one-element arrays (a chain), and two-element ones whose first
# element nests (a level the proxy must remember each).
SELF_REFERENCE = "local a = {}; local b = {a}; a[1] = b; return a"
SELF_REFERENCE_PAIRS = "local a = {}; local b = {a, 1}; a[1] = b; a[2] = 1; return a"


def read_frame(sock: socket.socket, buf: bytearray) -> bytes:
    """One complete RESP2 reply, as bytes, however deep: it counts the values
    still owed instead of recursing."""
    pos, owed = 0, 1

    def fill() -> None:
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError(f"closed mid-reply after {len(buf)} bytes: {bytes(buf[-200:])!r}")
        buf.extend(chunk)

    while owed:
        while (end := buf.find(b"\r\n", pos)) < 0:
            fill()
        kind, number = buf[pos:pos + 1], buf[pos + 1:end]
        pos = end + 2
        owed -= 1
        if kind == b"*":
            owed += max(int(number), 0)
        elif kind == b"$" and int(number) >= 0:
            while len(buf) < pos + int(number) + 2:
                fill()
            pos += int(number) + 2
    frame = bytes(buf[:pos])
    del buf[:pos]
    return frame


def eval_bytes(sock: socket.socket, script: str) -> bytes:
    sock.sendall(RespClient.encode("EVAL", script, "0"))
    return read_frame(sock, bytearray())


@pytest.mark.parametrize("layout", ["three shards", "multiplex one shard"])
def test_a_reply_nested_as_deep_as_lua_allows_is_relayed_and_the_link_serves_on(
        redis_server, shardgate, layout):
    if layout == "three shards":
        db = start_sharded(redis_server, shardgate, workers=1)
        sg, shard, key = db.sg, db.shards[0], db.key_on(0, "after-deep")
    else:
        shard = redis_server()
        spec = database("db1", 0, shard.address)
        spec["multiplex"] = True
        sg, key = shardgate([spec], workers=1), "after-deep"
    shard.client().set(key, "still-served")
    direct_sock = socket.create_connection(("127.0.0.1", shard.port), timeout=10)
    proxied_sock = tls_socket(sg.port(), sg.ca, timeout=10)
    try:
        for script in (SELF_REFERENCE, SELF_REFERENCE_PAIRS):
            direct = eval_bytes(direct_sock, script)
            assert direct.count(b"\r\n") > 7_000, direct[-100:]
            assert b"-ERR reached lua stack limit\r\n" in direct, direct[-100:]
            proxied = eval_bytes(proxied_sock, script)
            assert proxied == direct, (
                f"{len(proxied)} bytes through shardgate, {len(direct)} direct; "
                f"shardgate's end: {proxied[-200:]!r}")
        same = RespClient(proxied_sock, 10, "the same connection")
        assert same.call("GET", key) == b"still-served"
        with RespClient.tls(sg.port(), sg.ca) as other:
            assert other.call("GET", key) == b"still-served"
    finally:
        direct_sock.close()
        proxied_sock.close()
    assert "unavailable" not in sg.log(), sg.log()[-2000:]
