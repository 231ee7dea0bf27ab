"""What the multi-shard tests share (test_sharding.py, test_differential.py).

- The test's own oracle for routing: `keyslot()`, Redis Cluster's key -> slot
  function (CRC16-XMODEM mod 16384 with the {hash tag} rule, as in
  https://redis.io/docs/reference/cluster-spec/#hash-tags), written here in
  Python so the tests do not trust the code they test.
- `RespClient`: a raw RESP2 client over TLS or TCP. redis-py rewrites error
  replies (it strips "ERR ", turns some into exception types) and hides the
  difference between simple and bulk strings; the contract is about the bytes,
  so the exact-message checks and the differential harness read replies raw.
- `start_redis_on_port()` (conftest's, re-exported): the `redis_server` fixture
  picks its own port, but a shard restarted after a crash must come back on the
  SAME address.
- `start_sharded()`: three redis-servers behind one TLS database, slots split as
  `redis-cli --cluster create` splits them, plus the questions the tests ask of
  that setup (which shard owns a key, which shards hold it, a key on shard i).
"""
from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import redis

from conftest import RedisServer, Shardgate, start_redis_on_port, tls_socket  # noqa: F401

SLOT_COUNT = 16384
# The split `redis-cli --cluster create` makes for three masters.
THREE_SHARD_SLOTS = ("0-5460", "5461-10922", "10923-16383")

CROSSSLOT = "CROSSSLOT Keys in request don't hash to the same slot"


# ---------------------------------------------------------------- key -> slot


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC16_TABLE = _crc16_table()


def crc16(data: bytes) -> int:
    """CRC16-XMODEM (polynomial 0x1021, init 0, no reflection), as Redis's crc16.c."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16_TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc


def _as_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return str(value).encode()


def hash_tag(key) -> bytes:
    """What Redis Cluster hashes: the bytes between the first '{' and the first
    '}' after it, if that is non-empty; otherwise the whole key."""
    key = _as_bytes(key)
    start = key.find(b"{")
    if start != -1:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1:end]
    return key


def keyslot(key) -> int:
    """The slot CLUSTER KEYSLOT answers for `key` (str or bytes)."""
    return crc16(hash_tag(key)) % SLOT_COUNT


def parse_slot_ranges(text: str) -> list[tuple[int, int]]:
    """ "0-5460,7000" -> [(0, 5460), (7000, 7000)] (inclusive), the config's syntax."""
    ranges = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        ranges.append((int(lo), int(hi or lo)))
    return ranges


# ---------------------------------------------------------------- raw RESP


@dataclass(frozen=True)
class Err:
    """An error reply, compared by its message (without the leading '-')."""
    message: str

    def __str__(self) -> str:
        return f"-{self.message}"


class RespClient:
    """One connection speaking RESP2 (RESP3 replies parse too, for HELLO 3).

    Replies: simple string -> str, bulk string -> bytes, integer -> int,
    null -> None, array -> list, error -> Err (returned, never raised: the
    tests compare errors as values). A reply that does not come within
    `timeout` seconds raises AssertionError naming the command, so no test
    hangs on a proxy that never answers."""

    def __init__(self, sock: socket.socket, timeout: float = 10.0, label: str = "") -> None:
        self.sock = sock
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.label = label
        self._buf = bytearray()
        self._pos = 0

    @classmethod
    def tls(cls, port: int, cafile, timeout: float = 10.0) -> "RespClient":
        return cls(tls_socket(port, cafile, timeout=timeout), timeout, f"TLS 127.0.0.1:{port}")

    @classmethod
    def plain(cls, port: int, timeout: float = 10.0) -> "RespClient":
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        return cls(sock, timeout, f"127.0.0.1:{port}")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "RespClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing

    @staticmethod
    def encode(*args) -> bytes:
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = _as_bytes(arg)
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(parts)

    def send(self, *args) -> None:
        self.sock.sendall(self.encode(*args))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    # -- reading

    def _fill(self, what: str) -> None:
        try:
            chunk = self.sock.recv(1 << 16)
        except (socket.timeout, TimeoutError):
            raise AssertionError(f"{self.label}: no complete reply within {self.timeout} s "
                                 f"while waiting for {what}; buffered so far: "
                                 f"{bytes(self._buf[self._pos:self._pos + 200])!r}") from None
        if not chunk:
            raise ConnectionError(f"{self.label}: connection closed by the server while "
                                  f"waiting for {what}; buffered so far: "
                                  f"{bytes(self._buf[self._pos:self._pos + 200])!r}")
        if self._pos > (1 << 20):
            del self._buf[:self._pos]
            self._pos = 0
        self._buf += chunk

    def _line(self, what: str) -> bytes:
        while True:
            end = self._buf.find(b"\r\n", self._pos)
            if end != -1:
                line = bytes(self._buf[self._pos:end])
                self._pos = end + 2
                return line
            self._fill(what)

    def _exact(self, n: int, what: str) -> bytes:
        while len(self._buf) - self._pos < n + 2:
            self._fill(what)
        data = bytes(self._buf[self._pos:self._pos + n])
        if self._buf[self._pos + n:self._pos + n + 2] != b"\r\n":
            raise AssertionError(f"{self.label}: bulk string of {n} bytes not followed by "
                                 f"CRLF: {bytes(self._buf[self._pos:self._pos + n + 20])!r}")
        self._pos += n + 2
        return data

    def read_reply(self, what: str = "a reply"):
        line = self._line(what)
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return Err(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind in (b"$", b"="):  # bulk string, RESP3 verbatim string
            n = int(rest)
            return None if n < 0 else self._exact(n, what)
        if kind in (b"*", b"~", b">"):  # array, RESP3 set and push
            n = int(rest)
            return None if n < 0 else [self.read_reply(what) for _ in range(n)]
        if kind == b"%":  # RESP3 map, as a flat list like RESP2's HGETALL
            n = int(rest)
            return [self.read_reply(what) for _ in range(2 * n)]
        if kind == b"_":
            return None
        if kind == b"#":
            return rest == b"t"
        if kind == b",":
            return float(rest)
        if kind == b"(":
            return int(rest)
        raise AssertionError(f"{self.label}: not a RESP reply: {line[:200]!r} "
                             f"(waiting for {what})")

    def call(self, *args):
        self.send(*args)
        return self.read_reply(describe_command(args))

    def pipeline(self, commands: list[tuple]) -> list:
        """Sends every command in one write, then reads one reply per command."""
        self.sock.sendall(b"".join(self.encode(*c) for c in commands))
        return [self.read_reply(f"reply {i} of {len(commands)} ({describe_command(c)})")
                for i, c in enumerate(commands)]


def describe_command(args, limit: int = 120) -> str:
    text = " ".join(_as_bytes(a).decode(errors="replace") for a in args)
    return text if len(text) <= limit else text[:limit] + "..."


# ---------------------------------------------------------------- redis-server on a chosen port


# ---------------------------------------------------------------- the sharded database


@dataclass
class ShardedDb:
    """One TLS database of shardgate in front of several redis-servers."""
    sg: Shardgate
    shards: list[RedisServer]
    slot_ranges: list[list[tuple[int, int]]]
    password: str | None = None
    _key_cache: dict = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.sg.port()

    @property
    def ca(self) -> Path:
        return self.sg.ca

    # -- where keys live

    def shard_index(self, key) -> int:
        slot = keyslot(key)
        for i, ranges in enumerate(self.slot_ranges):
            if any(lo <= slot <= hi for lo, hi in ranges):
                return i
        raise AssertionError(f"slot {slot} of {key!r} is owned by no shard in the test's config")

    def owner(self, key) -> RedisServer:
        return self.shards[self.shard_index(key)]

    def keys_on(self, index: int, stem: str, count: int = 1) -> list[str]:
        """`count` distinct keys "stem:N" whose slots shard `index` owns."""
        found, n = [], 0
        while len(found) < count:
            key = f"{stem}:{n}"
            if self.shard_index(key) == index:
                found.append(key)
            n += 1
            assert n < 100_000, "no key found for the shard (slot ranges empty?)"
        return found

    def key_on(self, index: int, stem: str) -> str:
        return self.keys_on(index, stem)[0]

    def tag_on(self, index: int, stem: str) -> str:
        """A hash tag "{stem-N}" whose slot shard `index` owns: keys that carry
        it all live in one slot of that shard."""
        return "{" + self.key_on(index, stem) + "}"

    def holders(self, key) -> list[int]:
        """Indexes of the shards on which `key` exists, asked directly."""
        return [i for i, s in enumerate(self.shards) if s.client().exists(key)]

    def shard_sizes(self) -> list[int]:
        return [s.client().dbsize() for s in self.shards]

    def describe(self) -> str:
        return ", ".join(f"shard {i} {s.address} slots {r}"
                         for i, (s, r) in enumerate(zip(self.shards, self.slot_ranges)))

    # -- clients through shardgate

    def client(self, **kw) -> redis.Redis:
        """redis-py over TLS to shardgate (with the database password, if any)."""
        if self.password is not None:
            kw.setdefault("password", self.password)
        return self.sg.client(**kw)

    def raw(self, timeout: float = 10.0, auth: bool = True) -> RespClient:
        """A raw RESP connection to shardgate, authenticated unless auth=False."""
        conn = RespClient.tls(self.port, self.ca, timeout=timeout)
        if auth and self.password is not None:
            reply = conn.call("AUTH", self.password)
            assert reply == "OK", f"AUTH through shardgate: expected +OK, got {reply!r}"
        return conn


def start_sharded(redis_server, shardgate, *, slots=THREE_SHARD_SLOTS,
                  password: str | None = None, shard_password: str | None = None,
                  shard_args: tuple[str, ...] = (), **top) -> ShardedDb:
    """Starts one redis-server per entry of `slots` and shardgate with one TLS
    database routing over them. `shard_password` starts the shards with
    --requirepass and gives shardgate the password for its links."""
    args = list(shard_args)
    if shard_password is not None:
        args += ["--requirepass", shard_password]
    shards = [redis_server(*args) for _ in slots]
    db: dict = {"name": "db1", "listen": "127.0.0.1:0", "tls": True}
    if password is not None:
        db["password"] = password
    if shard_password is not None:
        db["shard_password"] = shard_password
    db["shards"] = [{"address": s.address, "slots": r} for s, r in zip(shards, slots)]
    sg = shardgate([db], **top)
    return ShardedDb(sg=sg, shards=shards, slot_ranges=[parse_slot_ranges(r) for r in slots],
                     password=password)


# ---------------------------------------------------------------- redis-cli


def redis_cli(port: int, cacert, *command: str, password: str | None = None
              ) -> subprocess.CompletedProcess:
    auth = ["--no-auth-warning", "-a", password] if password else []
    return subprocess.run(["redis-cli", "--tls", "--cacert", str(cacert),
                           "-h", "127.0.0.1", "-p", str(port), *auth, *command],
                          capture_output=True, text=True, timeout=10)
