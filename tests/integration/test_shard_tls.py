"""TLS from shardgate to the shards (`shard_tls` of a database, per-shard
overrides), with real TLS-only redis-servers (`--port 0 --tls-port N`: a
plaintext hop could not work), redis-py and redis-cli --tls on both sides.

What is checked: every connection shardgate makes to a shard is TLS (shared
and private links of multiplexed databases, a transparent database's
per-client connection, the COMMAND fetch at start); the shard's certificate
is verified (CA, IP SAN by default, DNS SAN with server_name, sent as SNI);
min_version, ciphers and ciphersuites are what is offered; a client
certificate is presented when configured; a TLS failure (refused, plaintext
or silent shard) reaches the client as the shard-unavailable line with the
TLS reason, promptly, and is logged and counted; reconnects resume the TLS
session (metric), but not across a new client context; the CA file reloads
live (file change, SIGHUP); config errors name the key; GET /v1/bdbs shows
each shard's "tls".

The certificates (module-scoped: no process, only files) are made once with
certs.CA (the openssl CLI)."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from certs import CA, Pair, place
from conftest import (TlsRedisServer, database, recv_until, recv_until_eof, run_shardgate,
                      start_tls_redis_on_port, stop_process, wait_for_blocked_clients,
                      write_config)
from sharding_env import (THREE_SHARD_SLOTS, Err, RespClient, ShardedDb, parse_slot_ranges,
                          redis_cli)

SHARD_CA = "shard_ca.pem"  # shard_tls.ca, a name in cert_dir
PROMPT_S = 5.0             # a TLS failure must be answered well before this
DEADLINE_S = 10.0          # bounded waits for what happens in the background
SERVER_NAME = "redis.internal"
BAD_TRIES = 4              # shard connections refused for want of a client certificate

_METRICS_LISTENING = re.compile(r"\bmetrics listening on (\S+):(\d+) ")
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

# What a TLS reason looks like in the unavailable line: OpenSSL's words
# ("certificate verify failed", "tlsv13 alert certificate required",
# "unsupported protocol", ...) or ours ("TLS handshake failed: ...").
TLS_REASON = r"(?i).*(tls|ssl|certificate|handshake|alert|protocol)"


@dataclass(frozen=True)
class Pki:
    """Everything the tests need, under two CAs."""
    ca: CA           # the shards' CA: what shard_tls.ca trusts
    other: CA        # an unrelated CA
    ip_only: Pair    # shard certificate with only IP:127.0.0.1 (what no server_name checks)
    dns_only: Pair   # shard certificate with only DNS:redis.internal
    foreign: Pair    # IP:127.0.0.1, but signed by `other`
    rotated: Pair    # IP:127.0.0.1, signed by `other`: the shard's next certificate in a CA rotation
    gate: Pair       # shardgate's client certificate (clientAuth) under `ca`
    gate_other: Pair  # the same, under `other`: its next client certificate in a rotation


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    d = tmp_path_factory.mktemp("shard-pki")
    ca = CA(d / "ca", name="shard CA")
    other = CA(d / "other", name="another CA")
    return Pki(
        ca=ca, other=other,
        ip_only=ca.issue_server(0x31, "ip-only", "shard", ["IP:127.0.0.1"]),
        dns_only=ca.issue_server(0x32, "dns-only", SERVER_NAME, [f"DNS:{SERVER_NAME}"]),
        foreign=other.issue_server(0x41, "foreign", "shard", ["IP:127.0.0.1"]),
        rotated=other.issue_server(0x42, "rotated", "shard", ["IP:127.0.0.1"]),
        gate=ca.issue_client(0x33, "gate", "shardgate", ["DNS:shardgate"]),
        gate_other=other.issue_client(0x43, "gate-other", "shardgate", ["DNS:shardgate"]),
    )


class Env:
    """One test's shards and cert_dir (tmp_path/certs, where the shardgate
    fixtures point cert_dir), with the shards' CA in it as shard_ca.pem."""

    def __init__(self, pki: Pki, tmp_path: Path, tls_redis_server, shardgate) -> None:
        self.pki = pki
        self.tmp = tmp_path
        self.cert_dir = tmp_path / "certs"
        self.cert_dir.mkdir()
        shutil.copy(pki.ca.cert, self.cert_dir / SHARD_CA)
        self._tls_redis_server = tls_redis_server
        self._shardgate = shardgate
        self.sg = None

    def shard(self, pair: Pair | None = None, **kw) -> TlsRedisServer:
        """A TLS-only redis-server serving `pair` (default: the IP-SAN one);
        its tls-ca-cert-file is the shards' CA (client certificates under
        tls-auth-clients chain to it)."""
        pair = pair or self.pki.ip_only
        issuer = self.pki.other.cert if pair in (self.pki.foreign, self.pki.rotated) else self.pki.ca.cert
        kw.setdefault("client_cert", self.pki.gate.cert)
        kw.setdefault("client_key", self.pki.gate.key)
        return self._tls_redis_server(cert=pair.cert, key=pair.key, ca=self.pki.ca.cert,
                                      server_ca=issuer, **kw)

    def start(self, databases: list[dict], **top):
        self.sg = self._shardgate(databases, **top)
        return self.sg

    # -- clients through shardgate

    def raw(self, db: str, timeout: float = DEADLINE_S) -> RespClient:
        return RespClient.tls(self.sg.port(db), self.sg.ca, timeout=timeout)

    def expect_unavailable(self, db: str, shard: TlsRedisServer | str, reason: str = TLS_REASON) -> str:
        """A fresh client of `db` sends GET and must get, promptly, the shard's
        unavailable line (naming the shard: a server or its address) with a
        reason matching `reason`."""
        address = shard if isinstance(shard, str) else shard.address
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.sg.port(db)), timeout=PROMPT_S) as raw:
            ctx = ssl.create_default_context(cafile=str(self.sg.ca))
            ctx.check_hostname = False
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            try:
                s.sendall(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass  # the error line may already be waiting: read it
            reply = recv_until(s, b"\r\n", timeout=PROMPT_S).decode(errors="replace")
        elapsed = time.monotonic() - started
        prefix = f"-ERR shard {address} unavailable: "
        assert reply.startswith(prefix), (
            f"db {db}: expected {prefix!r}... within {PROMPT_S} s, got {reply!r} after "
            f"{elapsed:.2f} s\nshardgate log:\n{self.sg.log()}")
        assert re.match(reason, reply[len(prefix):]), (
            f"db {db}: reason {reply[len(prefix):]!r} does not match {reason!r}\n{self.sg.log()}")
        assert elapsed < PROMPT_S, f"db {db}: the error took {elapsed:.2f} s"
        assert self.sg.proc.poll() is None, f"shardgate exited\n{self.sg.log()}"
        return reply

    def works(self, db: str, key: str = "probe") -> None:
        """SET and GET through `db` with redis-py (the shard is not asked directly)."""
        c = self.sg.client(db)
        try:
            assert c.set(key, "v") is True
            assert c.get(key) == b"v"
        finally:
            c.close()

    def wait_until_served(self, db: str, key: str, value: bytes, what: str) -> None:
        """Fresh clients of `db` GET `key` until one gets `value` (a change in
        the background is applied); the ones before may only get the
        unavailable line. `what` says what did not happen, on failure."""
        deadline = time.monotonic() + DEADLINE_S
        while True:
            with self.raw(db) as conn:
                reply = conn.call("GET", key)
            if reply == value:
                return
            assert isinstance(reply, Err) and "unavailable" in reply.message, reply
            assert time.monotonic() < deadline, f"{what}: {reply}\n{self.sg.log()}"
            time.sleep(0.1)

    def wait_log(self, pattern: str, since: int = 0) -> str:
        """The first line matching `pattern` in the log after offset `since`."""
        deadline = time.monotonic() + DEADLINE_S
        while True:
            m = re.search(pattern, self.sg.log()[since:], re.MULTILINE)
            if m:
                return m.group(0)
            if time.monotonic() > deadline:
                pytest.fail(f"no {pattern!r} in the log after offset {since}:\n{self.sg.log()}")
            time.sleep(0.05)

    def wait_bad_file_line(self, *names: str, since: int) -> str:
        """A log line after `since` naming one of the files and saying that
        something is wrong with it."""
        files = "|".join(re.escape(n) for n in names)
        trouble = r"(error|invalid|cannot|can't|failed|unable|kept|keep|not reloaded|no cert|mismatch|does not match)"
        return self.wait_log(rf"(?i)^.*(({files}).*{trouble}|{trouble}.*({files})).*$", since=since)

    # -- metrics

    def metrics(self) -> str:
        m = _METRICS_LISTENING.search(self.sg.log())
        assert m, f"no metrics listener\n{self.sg.log()}"
        out = subprocess.run(["curl", "--silent", "--show-error", "--max-time", "10",
                              f"http://127.0.0.1:{m.group(2)}/metrics"],
                             capture_output=True, text=True, timeout=15)
        assert out.returncode == 0, out.stderr
        return out.stdout


def metric(text: str, name: str, **labels: str) -> float | None:
    """Sum of `name`'s samples whose labels include `labels`; None if none has."""
    total, found = 0.0, False
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or m.group(1) != name:
            continue
        have = dict(_LABEL.findall(m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
            found = True
    return total if found else None


@pytest.fixture
def env(pki, tmp_path, tls_redis_server, shardgate) -> Env:
    return Env(pki, tmp_path, tls_redis_server, shardgate)


def tls_db(name: str, *shards, multiplex: bool | None = None, slots=None,
           shard_tls: dict | None = None, **keys) -> dict:
    """A database (clients over TLS) whose shards are reached over TLS:
    shard_tls defaults to {"ca": shard_ca.pem}. A shard is a server or a
    dict of its keys."""
    db: dict = {"name": name, "listen": "127.0.0.1:0", "tls": True}
    if multiplex is not None:
        db["multiplex"] = multiplex
    db["shard_tls"] = {"ca": SHARD_CA} if shard_tls is None else shard_tls
    db.update(keys)
    entries = []
    for i, s in enumerate(shards):
        entry = dict(s) if isinstance(s, dict) else {"address": s.address}
        if slots is not None:
            entry["slots"] = slots[i]
        entries.append(entry)
    db["shards"] = entries
    return db


def assert_tls_only(shard: TlsRedisServer) -> None:
    """The shard's port answers no plaintext: whatever reached it through
    shardgate came over TLS."""
    with socket.create_connection(("127.0.0.1", shard.port), timeout=5) as s:
        try:
            s.sendall(b"PING\r\n")
        except (BrokenPipeError, ConnectionResetError):
            return
        reply = recv_until(s, b"+PONG", timeout=2)
    assert b"+PONG" not in reply, f"{shard.address} answered plaintext: {reply!r}"


def direct_tls(shard: TlsRedisServer) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(shard.ca))
    ctx.check_hostname = False
    raw = socket.create_connection(("127.0.0.1", shard.port), timeout=5)
    return ctx.wrap_socket(raw)


# ---------------------------------------------------------------- 1. multiplexed, one shard


def test_multiplexed_one_shard_over_tls(env):
    shard = env.shard()
    assert_tls_only(shard)
    sg = env.start([tls_db("mux", shard, multiplex=True)])
    c = sg.client("mux")
    assert c.set("greeting", "hello over tls") is True
    assert c.get("greeting") == b"hello over tls"
    assert c.incr("counter") == 1
    c.close()
    # On the shard itself (TLS, direct), and through shardgate with redis-cli.
    assert shard.client().get("greeting") == b"hello over tls"
    assert shard.cli("GET", "counter").stdout.strip() == "1"
    cli = redis_cli(sg.port("mux"), sg.ca, "GET", "greeting")
    assert cli.stdout.strip() == "hello over tls", cli


# ---------------------------------------------------------------- 2. three shards


def test_three_tls_shards_keys_land_on_the_right_shard(env):
    shards = [env.shard() for _ in THREE_SHARD_SLOTS]
    sg = env.start([tls_db("db1", *shards, multiplex=True, slots=THREE_SHARD_SLOTS)])
    db = ShardedDb(sg=sg, shards=shards, slot_ranges=[parse_slot_ranges(r) for r in THREE_SHARD_SLOTS])
    c = sg.client("db1")
    keys = [f"user:{i}" for i in range(30)]
    for k in keys:
        assert c.set(k, f"v-{k}") is True
    assert c.mget(keys) == [f"v-{k}".encode() for k in keys]  # a request split over the shards
    c.close()
    direct = [shard.client() for shard in shards]  # one TLS connection each
    for k in keys:
        holders = [i for i, d in enumerate(direct) if d.exists(k)]
        assert holders == [db.shard_index(k)], (k, holders, db.describe())
    assert sorted(db.shard_sizes()) == sorted(
        sum(1 for k in keys if db.shard_index(k) == i) for i in range(3))
    # redis-cli --tls straight to a shard, for a key of each.
    for i, shard in enumerate(shards):
        k = next(k for k in keys if db.shard_index(k) == i)
        assert shard.cli("GET", k).stdout.strip() == f"v-{k}"


# ---------------------------------------------------------------- big values, deep pipelines


def test_big_values_and_deep_pipelines_cross_the_tls_hop(env):
    """Many TLS records each way: requests and values far above the 16 KiB
    record size, and a pipeline whose replies the shard writes faster than
    they are read. A client's first request is a big one: for a transparent
    database it arrives while shardgate's handshake with the shard runs."""
    shard = env.shard()
    env.start([tls_db("mux", shard, multiplex=True), tls_db("t", shard, multiplex=False)])
    big = bytes(range(256)) * (6 * 4096)  # 6 MiB, every byte value
    for db in ("mux", "t"):
        first = env.sg.client(db, socket_timeout=10, single_connection_client=True)
        try:
            assert first.set(f"first-{db}", b"f" * 100_000) is True
        except redis.exceptions.TimeoutError:
            seen = [(cl["addr"], cl["cmd"], cl["qbuf"]) for cl in shard.client().client_list()]
            pytest.fail(f"db {db}: no reply to a 100 kB first request within 10 s; the shard's "
                        f"connections (addr, last command, query buffer): {seen}")
        assert first.strlen(f"first-{db}") == 100_000
        first.close()
        c = env.sg.client(db, socket_timeout=30)
        assert c.set(f"big-{db}", big) is True
        assert c.get(f"big-{db}") == big
        p = c.pipeline(transaction=False)
        for i in range(2000):
            p.set(f"{db}:{i}", str(i) * 50)
        for i in range(2000):
            p.get(f"{db}:{i}")
        replies = p.execute()
        assert replies[:2000] == [True] * 2000
        assert replies[2000:] == [(str(i) * 50).encode() for i in range(2000)]
        c.close()
    assert shard.client().strlen("big-mux") == len(big)


# ---------------------------------------------------------------- 3. transparent


def test_transparent_database_over_tls_keeps_redis_semantics(env):
    shard = env.shard()
    plain_clients = tls_db("t_plain", shard, multiplex=False)
    plain_clients["tls"] = False  # plaintext clients, TLS to the shard
    env.start([tls_db("t", shard, multiplex=False), plain_clients])

    # A client's half-close: what it sent before is still answered, then the
    # connection ends (the shard's side closed after the replies).
    value = b"h" * 50_000
    with socket.create_connection(("127.0.0.1", env.sg.port("t_plain")), timeout=5) as s:
        s.sendall(RespClient.encode("SET", "half", value) + RespClient.encode("GET", "half"))
        s.shutdown(socket.SHUT_WR)
        data, closed = recv_until_eof(s, timeout=5)
    assert closed and data == b"+OK\r\n$%d\r\n%s\r\n" % (len(value), value), (closed, data[:200])

    # Byte for byte: the same pipeline (inline command, unknown command,
    # ECHO) answered the same by the shard directly and through shardgate.
    pipeline = (b"PING\r\n*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\nNOSUCHCMD a b\r\n"
                b"*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$1\r\n1\r\n*2\r\n$4\r\nINCR\r\n$1\r\nb\r\n")
    expected_end = b":2\r\n"
    with direct_tls(shard) as s:
        s.sendall(pipeline)
        direct = recv_until(s, expected_end)
    shard.client().delete("b")
    with env.raw("t") as conn:
        conn.send_raw(pipeline)
        proxied = recv_until(conn.sock, expected_end)
    assert proxied == direct, (proxied, direct)

    a = env.raw("t")
    # CLIENT SETNAME reaches the shard's own connection.
    assert a.call("CLIENT", "SETNAME", "via-shardgate") == "OK"
    names = [cl["name"] for cl in shard.client().client_list()]
    assert "via-shardgate" in names, names
    # MULTI/EXEC.
    assert a.pipeline([("MULTI",), ("SET", "m", "1"), ("INCR", "m"), ("EXEC",)]) == \
        ["OK", "QUEUED", "QUEUED", ["OK", 2]]
    # BLPOP blocks on the shard itself, then is woken by another client.
    b = env.raw("t")
    b.send("BLPOP", "queue", "10")
    wait_for_blocked_clients(shard.client(), 1)
    assert a.call("LPUSH", "queue", "job") == 1
    assert b.read_reply("BLPOP") == [b"queue", b"job"]
    a.close()
    b.close()


# ---------------------------------------------------------------- 4. private links


def test_private_links_of_a_multiplexed_database_are_tls(env):
    shard = env.shard()
    env.start([tls_db("mux", shard, multiplex=True)])
    blocked = env.raw("mux")
    other = env.raw("mux")
    assert other.call("SET", "k", "1") == "OK"  # the shared link is up
    # BLPOP runs on a private link: blocked on the shard, and the shared
    # link keeps serving meanwhile.
    blocked.send("BLPOP", "queue", "10")
    wait_for_blocked_clients(shard.client(), 1)
    assert other.call("INCR", "k") == 2
    assert other.call("RPUSH", "queue", "job") == 1
    assert blocked.read_reply("BLPOP") == [b"queue", b"job"]
    # WATCH/MULTI/EXEC on a private link; a write by another client between
    # WATCH and EXEC aborts it, as on redis-server.
    assert blocked.call("WATCH", "w") == "OK"
    assert blocked.pipeline([("MULTI",), ("SET", "w", "mine"), ("EXEC",)]) == ["OK", "QUEUED", ["OK"]]
    assert blocked.call("WATCH", "w") == "OK"
    assert other.call("SET", "w", "theirs") == "OK"
    assert blocked.pipeline([("MULTI",), ("SET", "w", "mine"), ("EXEC",)]) == ["OK", "QUEUED", None]
    assert shard.client().get("w") == b"theirs"
    # SUBSCRIBE: private links too.
    sub = env.raw("mux")
    assert sub.call("SUBSCRIBE", "news") == [b"subscribe", b"news", 1]
    assert other.call("PUBLISH", "news", "hello") == 1
    assert sub.read_reply("message") == [b"message", b"news", b"hello"]
    sub.close()
    blocked.close()
    other.close()


# ---------------------------------------------------------------- 5. client certificate


def test_shard_requiring_client_certificates(env, pki):
    shard = env.shard(auth_clients="yes")
    # Only with a certificate does the shard answer (checked directly).
    no_cert = redis.Redis(host="127.0.0.1", port=shard.port, ssl=True, ssl_ca_certs=str(shard.ca),
                          ssl_check_hostname=False, socket_timeout=5)
    with pytest.raises(redis.exceptions.ConnectionError):
        no_cert.ping()
    assert shard.client().ping() is True
    # With TLS 1.2 the refusal comes inside the handshake.
    shard12 = env.shard(auth_clients="yes", extra=("--tls-protocols", "TLSv1.2"))
    shutil.copy(pki.gate.cert, env.cert_dir / "gate.pem")
    shutil.copy(pki.gate.key, env.cert_dir / "gate.key")
    (env.cert_dir / "gate.key").chmod(0o600)

    env.start([
        # cert/key as absolute paths; the CA as a name in cert_dir.
        tls_db("good", shard, multiplex=True,
               shard_tls={"ca": SHARD_CA, "cert": str(pki.gate.cert), "key": str(pki.gate.key)}),
        tls_db("good_t", shard, multiplex=False,
               shard_tls={"ca": SHARD_CA, "cert": str(pki.gate.cert), "key": str(pki.gate.key)}),
        # Per-shard cert/key, as names in cert_dir.
        tls_db("good_per_shard", {"address": shard.address, "cert": "gate.pem", "key": "gate.key"},
               multiplex=True),
        # Without a certificate: several databases, as each multiplexed
        # one's shared link fails once (the TLS 1.3 refusal arrives after
        # the handshake, racing shardgate's first write: every try counts).
        *[tls_db(f"bad{i}", shard, multiplex=True) for i in range(BAD_TRIES)],
        tls_db("bad_t", shard, multiplex=False),
        tls_db("bad12", shard12, multiplex=True),
        tls_db("good12", shard12, multiplex=True,
               shard_tls={"ca": SHARD_CA, "cert": str(pki.gate.cert), "key": str(pki.gate.key)}),
    ])
    env.works("good")
    env.works("good_t")
    env.works("good_per_shard")
    # The COMMAND fetch at start presented the certificate too.
    env.wait_log(rf"db good: \d+ commands known, from shard {re.escape(shard.address)}")
    for i in range(BAD_TRIES):
        env.expect_unavailable(f"bad{i}", shard)
        env.expect_unavailable("bad_t", shard)  # a new shard connection each time
    env.expect_unavailable("bad12", shard12)
    env.works("good12")
    env.wait_log(rf"db bad\d: shard {re.escape(shard.address)} unavailable: .*")
    # Still running and serving.
    env.works("good", "after")
    assert shard.client().get("after") == b"v"


# ---------------------------------------------------------------- 6. server_name


def test_server_name_is_checked_and_the_default_requires_the_ip_san(env):
    named = env.shard(env.pki.dns_only)   # DNS:redis.internal, no IP SAN
    env.start([
        tls_db("wrong", named, multiplex=True, shard_tls={"ca": SHARD_CA, "server_name": "other.internal"}),
        tls_db("right", named, multiplex=True, shard_tls={"ca": SHARD_CA, "server_name": SERVER_NAME}),
        # The per-shard server_name overrides the database's.
        tls_db("override", {"address": named.address, "server_name": SERVER_NAME}, multiplex=True,
               shard_tls={"ca": SHARD_CA, "server_name": "other.internal"}),
        tls_db("default", named, multiplex=True),
        tls_db("default_t", named, multiplex=False),
    ])
    name_reason = r"(?i).*(hostname mismatch|verify failed|certificate verify)"
    env.expect_unavailable("wrong", named, name_reason)
    # Logged (not necessarily as "db wrong": the lines about shard links are
    # rate limited together, and "default" fails the same way at the same time).
    env.wait_log(rf"db \w+: shard {re.escape(named.address)} unavailable: .*"
                 r"(hostname mismatch|verify failed|certificate verify)")
    env.works("right")
    env.works("override")
    # No server_name: the certificate must carry 127.0.0.1; this one does not.
    env.expect_unavailable("default", named, name_reason)
    env.expect_unavailable("default_t", named, name_reason)
    assert named.client().get("probe") == b"v"


def test_server_name_is_sent_as_sni(env, pki):
    """The shard must see the server_name as SNI. redis-server does not
    record SNI, so an `openssl s_server` stands in as the shard: it logs the
    name it was sent (-servername with -cert2: a second certificate for that
    name, and "Switching server context." when it is asked for)."""
    log = env.tmp / "s_server.log"
    with open(log, "wb") as out:
        # Port 0: s_server prints the port it got ("ACCEPT 127.0.0.1:N").
        proc = subprocess.Popen(
            ["openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", str(pki.ip_only.cert),
             "-key", str(pki.ip_only.key), "-servername", SERVER_NAME, "-cert2", str(pki.dns_only.cert),
             "-key2", str(pki.dns_only.key), "-naccept", "20"],
            stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not (m := re.search(rb"ACCEPT 127\.0\.0\.1:(\d+)", log.read_bytes())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        port = int(m.group(1))
        sg = env.start([tls_db("t", {"address": f"127.0.0.1:{port}"}, multiplex=False,
                               shard_tls={"ca": SHARD_CA, "server_name": SERVER_NAME})])
        with socket.create_connection(("127.0.0.1", sg.port("t")), timeout=5) as raw:
            ctx = ssl.create_default_context(cafile=str(sg.ca))
            ctx.check_hostname = False
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            s.sendall(b"PING\r\n")
            s.settimeout(0.05)
            # s_server prints what it receives once the handshake is done;
            # an error line from shardgate instead ends the wait at once.
            while b"PING" not in log.read_bytes():
                try:
                    early = s.recv(4096)
                except (socket.timeout, TimeoutError):
                    early = b""
                assert not early, f"shardgate answered {early!r}\n{log.read_text()}\n{sg.log()}"
                assert time.monotonic() < deadline, f"{log.read_text()}\n{sg.log()}"
        assert "Switching server context" in log.read_text(), log.read_text()
    finally:
        proc.kill()
        proc.wait(timeout=5)


# ---------------------------------------------------------------- 7. wrong CA


def test_shard_certificate_from_another_ca_is_refused_promptly(env):
    foreign = env.shard(env.pki.foreign)
    good = env.shard()
    sg = env.start([tls_db("foreign", foreign, multiplex=True),
                    tls_db("foreign_t", foreign, multiplex=False),
                    tls_db("good", good, multiplex=True)],
                   metrics={"listen": "127.0.0.1:0", "tls": False})
    verify = r"(?i).*(verify failed|unable to get local issuer|unknown ca|self.signed)"
    env.expect_unavailable("foreign", foreign, verify)
    env.wait_log(rf"db foreign: shard {re.escape(foreign.address)} unavailable: .*")
    # Every client is told; the log is rate limited like other shard-down
    # lines (a line a second per worker, the rest counted).
    started = time.monotonic()
    for _ in range(30):
        env.expect_unavailable("foreign_t", foreign, verify)
    elapsed = time.monotonic() - started
    lines = re.findall(rf"db foreign_t: shard {re.escape(foreign.address)} unavailable: ", sg.log())
    assert 1 <= len(lines) <= 2 * (int(elapsed) + 2), f"{len(lines)} lines in {elapsed:.1f} s\n{sg.log()}"
    env.works("good")
    # The failures count as shard errors.
    deadline = time.monotonic() + DEADLINE_S
    while True:
        m = env.metrics()
        errors = metric(m, "shardgate_shard_errors_total", db="foreign", shard=foreign.address)
        errors_t = metric(m, "shardgate_shard_errors_total", db="foreign_t", shard=foreign.address)
        if (errors or 0) >= 1 and (errors_t or 0) >= 1:
            break
        assert time.monotonic() < deadline, (errors, errors_t, m)
        time.sleep(0.1)
    assert metric(m, "shardgate_shard_errors_total", db="good", shard=good.address) == 0
    # Reported like a shard that is down.
    assert metric(m, "shardgate_shard_up", db="foreign", shard=foreign.address) == 0, m
    assert metric(m, "shardgate_shard_up", db="foreign_t", shard=foreign.address) == 0, m
    assert metric(m, "shardgate_shard_up", db="good", shard=good.address) == 1, m


def test_plaintext_and_silent_shards_fail_the_handshake_promptly(env, redis_server):
    """TLS configured, but the shard speaks plaintext (a redis-server without
    TLS), or never answers the ClientHello (a socket whose connections are
    never accepted: the kernel completes TCP, nobody reads): each client gets
    the unavailable line with a TLS reason, not a hang."""
    plain = redis_server()
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    try:
        silent_address = "127.0.0.1:%d" % silent.getsockname()[1]
        env.start([tls_db("plain", plain, multiplex=True),
                   tls_db("plain_t", plain, multiplex=False),
                   tls_db("silent", {"address": silent_address}, multiplex=True),
                   tls_db("silent_t", {"address": silent_address}, multiplex=False)])
        timed_out = r"(?i).*(tls|ssl|handshake).*tim(ed|e)[ -]?out"
        # At once: each may take a handshake timeout.
        with ThreadPoolExecutor(4) as pool:
            checks = [pool.submit(env.expect_unavailable, "plain", plain),
                      pool.submit(env.expect_unavailable, "plain_t", plain),
                      pool.submit(env.expect_unavailable, "silent", silent_address, timed_out),
                      pool.submit(env.expect_unavailable, "silent_t", silent_address, timed_out)]
            for check in checks:
                check.result()
    finally:
        silent.close()


# ---------------------------------------------------------------- 8. min_version, ciphers


def test_min_version_ciphers_and_ciphersuites(env):
    old = env.shard(extra=("--tls-protocols", "TLSv1.2", "--tls-ciphers", "ECDHE-ECDSA-AES128-GCM-SHA256"))
    new = env.shard(extra=("--tls-protocols", "TLSv1.3", "--tls-ciphersuites", "TLS_AES_128_GCM_SHA256"))
    # The premise: the shard refuses TLS 1.3.
    probe = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{old.port}", "-tls1_3"],
                           input=b"", capture_output=True, timeout=10)
    assert probe.returncode != 0, "the shard accepted TLS 1.3: the test's premise is wrong"
    env.start([
        tls_db("v13", old, multiplex=True, shard_tls={"ca": SHARD_CA, "min_version": "1.3"}),
        tls_db("v13_t", old, multiplex=False, shard_tls={"ca": SHARD_CA, "min_version": "1.3"}),
        tls_db("v12", old, multiplex=True, shard_tls={"ca": SHARD_CA, "min_version": "1.2"}),
        tls_db("v_default", old, multiplex=False),  # the default minimum is 1.2
        # TLS 1.2 cipher list and TLS 1.3 suites offered to the shards.
        tls_db("ciphers_other", old, multiplex=False,
               shard_tls={"ca": SHARD_CA, "ciphers": "ECDHE-ECDSA-CHACHA20-POLY1305"}),
        tls_db("ciphers_same", old, multiplex=False,
               shard_tls={"ca": SHARD_CA, "ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256"}),
        tls_db("suites_other", new, multiplex=False,
               shard_tls={"ca": SHARD_CA, "ciphersuites": "TLS_CHACHA20_POLY1305_SHA256"}),
        tls_db("suites_same", new, multiplex=False,
               shard_tls={"ca": SHARD_CA, "ciphersuites": "TLS_AES_128_GCM_SHA256"}),
    ])
    env.expect_unavailable("v13", old)
    env.expect_unavailable("v13_t", old)
    env.works("v12")
    env.works("v_default")
    env.expect_unavailable("ciphers_other", old)
    env.works("ciphers_same")
    env.expect_unavailable("suites_other", new)
    env.works("suites_same")


# ---------------------------------------------------------------- 9. resumption


def test_reconnects_resume_the_tls_session(env):
    shard = env.shard()
    sg = env.start([tls_db("mux", shard, multiplex=True)],
                   metrics={"listen": "127.0.0.1:0", "tls": False})
    c = sg.client("mux")
    assert c.set("k", "0") is True
    before = env.metrics()
    full0 = metric(before, "shardgate_shard_tls_handshakes_total", db="mux", shard=shard.address,
                   resumed="false")
    resumed0 = metric(before, "shardgate_shard_tls_handshakes_total", db="mux", shard=shard.address,
                      resumed="true")
    assert full0 is not None and full0 >= 1, f"no full handshake counted\n{before}"
    assert resumed0 is not None, before

    admin = shard.client(single_connection_client=True)
    kills = 5
    for round_ in range(kills):
        killed = admin.execute_command("CLIENT", "KILL", "TYPE", "normal")  # SKIPME yes: not admin
        assert killed >= 1, f"round {round_}: shardgate had no connection on the shard"
        # Traffic continues once the link is back (errors while it reconnects).
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                if c.incr("k") >= 1:
                    break
            except redis.exceptions.ResponseError as e:
                assert "unavailable" in str(e), e
            assert time.monotonic() < deadline, f"round {round_}: no traffic after the kill\n{sg.log()}"
            time.sleep(0.05)
    assert int(c.get("k")) == kills

    after = env.metrics()
    full1 = metric(after, "shardgate_shard_tls_handshakes_total", db="mux", shard=shard.address,
                   resumed="false")
    resumed1 = metric(after, "shardgate_shard_tls_handshakes_total", db="mux", shard=shard.address,
                      resumed="true")
    full, resumed = full1 - full0, resumed1 - resumed0
    # Each kill forced at least one reconnect; most must have resumed.
    assert resumed >= kills and resumed > full, (
        f"{resumed} resumed and {full} full handshakes over {kills} kills\n{after}")

    # A new client context (the CA file changed: another trust set) does not
    # offer a session of the old one: the next reconnect is a full handshake.
    mark = len(sg.log())
    place(env.pki.ca.cert.read_bytes() + env.pki.other.cert.read_bytes(), env.cert_dir, SHARD_CA)
    env.wait_log(r"db mux: .*(reloaded|generation \d+ -> \d+)", since=mark)
    assert admin.execute_command("CLIENT", "KILL", "TYPE", "normal") >= 1
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            if c.incr("k") == kills + 1:
                break
        except redis.exceptions.ResponseError as e:
            assert "unavailable" in str(e), e
        assert time.monotonic() < deadline, f"no traffic after the reload and kill\n{sg.log()}"
        time.sleep(0.05)
    c.close()
    last = env.metrics()
    full2 = metric(last, "shardgate_shard_tls_handshakes_total", db="mux", shard=shard.address,
                   resumed="false")
    resumed2 = metric(last, "shardgate_shard_tls_handshakes_total", db="mux", shard=shard.address,
                      resumed="true")
    assert full2 > full1 and resumed2 == resumed1, (
        f"after the new context: {full2 - full1} full, {resumed2 - resumed1} resumed handshakes "
        f"(a session of the old context must not be offered)\n{last}")


@pytest.mark.parametrize("protocol", ["TLSv1.2", "TLSv1.3"])
def test_transparent_clients_resume_the_tls_session(env, protocol):
    """A transparent database makes a shard connection per client: after the
    first on each worker, they resume (TLS 1.2: the session known at the
    handshake; TLS 1.3: the ticket sent after it)."""
    shard = env.shard(extra=("--tls-protocols", protocol))
    env.start([tls_db("t", shard, multiplex=False)], metrics={"listen": "127.0.0.1:0", "tls": False})
    clients = 8
    for i in range(clients):
        with env.raw("t") as conn:
            assert conn.call("SET", f"k{i}", "v") == "OK"
    labels = {"db": "t", "shard": shard.address}
    deadline = time.monotonic() + DEADLINE_S
    while True:
        m = env.metrics()
        full = metric(m, "shardgate_shard_tls_handshakes_total", resumed="false", **labels) or 0
        resumed = metric(m, "shardgate_shard_tls_handshakes_total", resumed="true", **labels) or 0
        if full + resumed >= clients:
            break
        assert time.monotonic() < deadline, f"{full} full + {resumed} resumed handshakes for {clients}\n{m}"
        time.sleep(0.1)
    # One full handshake per worker (2) at most; the rest resumed.
    assert full <= 2 and resumed >= clients - 2, f"{full} full, {resumed} resumed\n{m}"


def test_a_restarted_shard_is_reached_again(env, procs, tmp_path):
    """A shard restarted on its address has new ticket keys: the session
    shardgate offers is refused and a full handshake follows, without an
    error loop."""
    shard = env.shard()
    sg = env.start([tls_db("mux", shard, multiplex=True), tls_db("t", shard, multiplex=False)],
                   metrics={"listen": "127.0.0.1:0", "tls": False})
    env.works("mux")
    env.works("t")
    for _ in range(2):
        stop_process(shard.proc)
        shard = start_tls_redis_on_port(procs, tmp_path, shard.port, cert=env.pki.ip_only.cert,
                                        key=env.pki.ip_only.key, ca=env.pki.ca.cert)
        deadline = time.monotonic() + DEADLINE_S
        c = sg.client("mux")
        while True:
            try:
                if c.set("after", "1") is True:
                    break
            except redis.exceptions.ResponseError as e:  # while the shard is away
                assert "unavailable" in str(e), e
            assert time.monotonic() < deadline, f"no traffic after the restart\n{sg.log()}"
            time.sleep(0.05)
        c.close()
        env.works("t", "after_t")
        assert shard.client().get("after") == b"1"
    assert sg.proc.poll() is None


# ---------------------------------------------------------------- 10. CA rotation


def test_live_rotation_of_the_shard_ca(env, pki):
    shard = env.shard()
    sg = env.start([tls_db("t", shard, multiplex=False)])
    held = sg.client("t", single_connection_client=True)
    assert held.set("held", "1") is True
    admin = shard.client(single_connection_client=True)
    assert admin.ping() is True

    # The shard moves to a certificate from another CA (redis-server applies
    # it to new connections); shardgate still trusts only the first CA.
    assert admin.execute_command("CONFIG", "SET", "tls-cert-file", str(pki.rotated.cert),
                                 "tls-key-file", str(pki.rotated.key)) == b"OK"
    env.expect_unavailable("t", shard, r"(?i).*(verify failed|unable to get local issuer|unknown ca)")
    assert held.get("held") == b"1", "the connection opened before the change must keep working"

    # shard_ca.pem replaced in cert_dir (atomic rename): new connections verify
    # against the new CA.
    place(pki.other.cert, env.cert_dir, SHARD_CA)
    env.wait_until_served("t", "held", b"1", "the new CA was not applied")
    assert held.incr("n") == 1

    # A bad CA file: one line naming the file, the CA before it kept.
    mark = len(sg.log())
    place(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", env.cert_dir, SHARD_CA)
    env.wait_bad_file_line(SHARD_CA, since=mark)
    for _ in range(3):
        with env.raw("t") as conn:
            assert conn.call("GET", "held") == b"1"
    assert held.incr("n") == 2
    assert sg.proc.poll() is None
    held.close()


def test_live_rotation_of_the_client_certificate(env, pki):
    """shard_tls.cert/key replaced in cert_dir (key, then certificate, each
    by rename): a key alone does not match and is refused, the pair is
    applied; new shard connections present the new certificate."""
    shutil.copy(pki.gate.cert, env.cert_dir / "gate.pem")
    shutil.copy(pki.gate.key, env.cert_dir / "gate.key")
    shard = env.shard(auth_clients="yes")
    sg = env.start([tls_db("t", shard, multiplex=False,
                           shard_tls={"ca": SHARD_CA, "cert": "gate.pem", "key": "gate.key"})])
    env.works("t")
    # A key that does not match the certificate: named in the log, the pair
    # before it kept.
    mark = len(sg.log())
    place(pki.gate_other.key, env.cert_dir, "gate.key")
    env.wait_bad_file_line("gate.key", "gate.pem", since=mark)
    env.works("t", "still")
    # The shard now accepts only client certificates of the other CA.
    admin = shard.client(single_connection_client=True)
    assert admin.execute_command("CONFIG", "SET", "tls-ca-cert-file", str(pki.other.cert)) == b"OK"
    env.expect_unavailable("t", shard)
    place(pki.gate_other.cert, env.cert_dir, "gate.pem")  # now matching the new key
    env.wait_until_served("t", "probe", b"v", "the new client certificate was not presented")
    assert sg.proc.poll() is None


def test_kubernetes_data_swap_of_the_shard_ca(env, pki):
    """cert_dir as a Kubernetes secret volume mounts it: shard_ca.pem is a
    symlink through `..data`, which the kubelet swaps by rename() to a new
    timestamped directory (the file itself never changes in place)."""
    (env.cert_dir / SHARD_CA).unlink()
    first = env.cert_dir / "..2026_12_06_03_00_00.000000001"
    first.mkdir()
    shutil.copy(pki.ca.cert, first / SHARD_CA)
    os.symlink(first.name, env.cert_dir / "..data")
    os.symlink(f"..data/{SHARD_CA}", env.cert_dir / SHARD_CA)
    shard = env.shard()
    env.start([tls_db("t", shard, multiplex=False)])
    env.works("t")
    admin = shard.client(single_connection_client=True)
    assert admin.execute_command("CONFIG", "SET", "tls-cert-file", str(pki.rotated.cert),
                                 "tls-key-file", str(pki.rotated.key)) == b"OK"
    env.expect_unavailable("t", shard, r"(?i).*(verify failed|unable to get local issuer|unknown ca)")
    # The kubelet's atomic writer: new dir, temporary symlink, rename over ..data.
    second = env.cert_dir / "..2026_12_06_03_05_00.000000002"
    second.mkdir()
    shutil.copy(pki.other.cert, second / SHARD_CA)
    os.symlink(second.name, env.cert_dir / "..data_tmp")
    os.replace(env.cert_dir / "..data_tmp", env.cert_dir / "..data")
    shutil.rmtree(first)
    env.wait_until_served("t", "probe", b"v", "the ..data swap was not picked up")


def test_sighup_reloads_a_shard_ca_given_by_absolute_path(env, pki):
    """A CA outside cert_dir (absolute path), changed in place: SIGHUP applies it."""
    outside = env.tmp / "elsewhere"
    outside.mkdir()
    ca_file = outside / "shard-ca.pem"
    shutil.copy(pki.ca.cert, ca_file)
    shard = env.shard()
    sg = env.start([tls_db("t", shard, multiplex=False, shard_tls={"ca": str(ca_file)})])
    env.works("t")
    admin = shard.client(single_connection_client=True)
    assert admin.execute_command("CONFIG", "SET", "tls-cert-file", str(pki.rotated.cert),
                                 "tls-key-file", str(pki.rotated.key)) == b"OK"
    env.expect_unavailable("t", shard, r"(?i).*(verify failed|unable to get local issuer|unknown ca)")
    ca_file.write_bytes(pki.ca.cert.read_bytes() + pki.other.cert.read_bytes())  # both CAs
    sg.proc.send_signal(signal.SIGHUP)
    env.wait_until_served("t", "probe", b"v", "SIGHUP did not apply the new CA")


# ---------------------------------------------------------------- 11. config errors


def check_config(tmp_path: Path, db: dict, start: bool = False) -> subprocess.CompletedProcess:
    config = write_config(tmp_path, [db])
    args = ["--config", config] + ([] if start else ["--check-config"])
    return run_shardgate(args)


def test_config_errors_name_the_key(env, tmp_path, pki):
    address = "127.0.0.1:7001"  # never connected: the config is refused first
    # tls on and no CA: --check-config and a start both refuse, naming the key.
    db = tls_db("db1", {"address": address}, shard_tls={"tls": True})
    for start in (False, True):
        r = check_config(tmp_path, db, start)
        assert r.returncode != 0, r
        assert "databases[0].shard_tls.ca" in r.stdout + r.stderr, r

    # A missing certificate file is named, with its key.
    db = tls_db("db1", {"address": address},
                shard_tls={"ca": SHARD_CA, "cert": "missing_client.pem", "key": str(pki.gate.key)})
    r = check_config(tmp_path, db)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "databases[0].shard_tls.cert" in out and "missing_client.pem" in out, r
    assert "No such file or directory" in out, r

    # The same for a shard's own certificate.
    db = tls_db("db1", {"address": address, "slots": "0-8191"},
                {"address": "127.0.0.1:7002", "slots": "8192-16383", "cert": "nope.pem",
                 "key": str(pki.gate.key)})
    r = check_config(tmp_path, db)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "databases[0].shards[1].cert" in out and "nope.pem" in out, r

    # A per-shard CA that does not exist.
    db = tls_db("db1", {"address": address, "slots": "0-8191"},
                {"address": "127.0.0.1:7002", "slots": "8192-16383", "ca": "nope_ca.pem"})
    r = check_config(tmp_path, db)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "databases[0].shards[1].ca" in out and "nope_ca.pem" in out, r

    # cert without key.
    db = tls_db("db1", {"address": address}, shard_tls={"ca": SHARD_CA, "cert": str(pki.gate.cert)})
    r = check_config(tmp_path, db)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and re.search(r"databases\[0\]\.shard_tls\.(cert|key)\b", out), r

    # A CA file that is no certificate.
    (env.cert_dir / "garbage.pem").write_text("hello\n")
    db = tls_db("db1", {"address": address}, shard_tls={"ca": "garbage.pem"})
    r = check_config(tmp_path, db)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "databases[0].shard_tls.ca" in out and "garbage.pem" in out, r

    # A good one passes and shows the shard TLS settings.
    db = tls_db("db1", {"address": address},
                shard_tls={"ca": SHARD_CA, "cert": str(pki.gate.cert), "key": str(pki.gate.key),
                           "server_name": SERVER_NAME, "min_version": "1.3"})
    r = check_config(tmp_path, db)
    out = r.stdout + r.stderr
    assert r.returncode == 0, r
    assert SHARD_CA in out and SERVER_NAME in out and "1.3" in out, r


# ---------------------------------------------------------------- 12. COMMAND fetch


def test_command_fetch_at_start_goes_over_tls(env):
    """Shards with a password too: AUTH with shard_password goes over TLS,
    in the fetch and on the links."""
    shards = [env.shard(extra=("--databases", "4", "--requirepass", "shard secret"))
              for _ in THREE_SHARD_SLOTS]
    sg = env.start([tls_db("db1", *shards, multiplex=True, slots=THREE_SHARD_SLOTS,
                           shard_password="shard secret")])
    version = re.search(r"v=(\S+)", subprocess.run(["redis-server", "--version"], capture_output=True,
                                                    text=True).stdout).group(1)
    line = env.wait_log(r"db db1: \d+ commands known, from shard 127\.0\.0\.1:\d+ .*")
    assert f"redis {version}, 4 databases" in line, line
    assert "no shard answered COMMAND" not in sg.log(), sg.log()
    db = ShardedDb(sg=sg, shards=shards, slot_ranges=[parse_slot_ranges(r) for r in THREE_SHARD_SLOTS])
    with db.raw() as conn:
        # What the shards said: their database count and version.
        assert conn.call("SELECT", "3") == "OK"
        assert conn.call("SELECT", "4") == Err("ERR DB index is out of range")
        assert conn.call("SELECT", "0") == "OK"
        hello = conn.call("HELLO")
        assert hello[hello.index(b"version") + 1] == version.encode(), hello
        # Commands whose keys the table finds: EVAL/EVAL_RO by numkeys, a
        # movable-keys LMPOP, each on the shard of its key.
        for i in range(3):
            key = db.key_on(i, "script")
            assert conn.call("EVAL", "return redis.call('SET', KEYS[1], ARGV[1])", "1", key, "x") == "OK"
            assert db.holders(key) == [i], (key, db.holders(key))
            assert conn.call("EVAL_RO", "return redis.call('GET', KEYS[1])", "1", key) == b"x"
            lkey = db.key_on(i, "list")
            assert conn.call("RPUSH", lkey, "a", "b") == 2
            assert conn.call("LMPOP", "1", lkey, "LEFT") == [lkey.encode(), [b"a"]]
            assert db.holders(lkey) == [i]


def test_tls_on_one_shard_of_a_database_without_shard_tls(env, redis_server):
    """No shard_tls on the database, or one with tls: false: a shard with its
    own `tls: true` (and `ca` where the database gives none) is reached over
    TLS, the others in plaintext."""
    tls_shard = env.shard()
    plain = redis_server()
    slots = ("0-8191", "8192-16383")
    db = tls_db("db1", {"address": tls_shard.address, "tls": True, "ca": SHARD_CA},
                {"address": plain.address}, multiplex=True, slots=slots)
    del db["shard_tls"]
    # shard_tls with tls: false keeps the settings for a shard that says tls: true.
    db_off = tls_db("db2", {"address": tls_shard.address, "tls": True}, {"address": plain.address},
                    multiplex=True, slots=slots, shard_tls={"tls": False, "ca": SHARD_CA})
    sg = env.start([db, db_off])
    sharded = ShardedDb(sg=sg, shards=[tls_shard, plain], slot_ranges=[parse_slot_ranges(s) for s in slots])
    for name in ("db1", "db2"):
        c = sg.client(name)
        for i in range(2):
            key = sharded.key_on(i, f"mixed-{name}")
            assert c.set(key, "v") is True
            assert sharded.holders(key) == [i]
        c.close()


# ---------------------------------------------------------------- 13. admin API


def test_bdbs_shows_tls_per_shard(env, admin_shardgate, redis_server):
    tls_shard = env.shard()
    plain = redis_server()
    slots = ("0-8191", "8192-16383")
    db = tls_db("db1", tls_shard, {"address": plain.address, "tls": False}, multiplex=True, slots=slots)
    transparent = tls_db("db2", tls_shard, multiplex=False)
    plain_db = database("db3", 0, plain.address)  # no shard_tls at all
    sg = admin_shardgate([db, transparent, plain_db])
    env.sg = sg
    r = sg.curl("GET", "/v1/bdbs")
    assert r.status == 200, r
    bdbs = {b["name"]: b for b in r.json()}
    shards = {s["address"]: s for s in bdbs["db1"]["shards"]}
    assert shards[tls_shard.address]["tls"] is True, shards
    assert shards[plain.address]["tls"] is False, shards
    assert [s["tls"] for s in bdbs["db2"]["shards"]] == [True], bdbs["db2"]
    assert [s["tls"] for s in bdbs["db3"]["shards"]] == [False], bdbs["db3"]
    # The mixed database routes to both.
    sharded = ShardedDb(sg=sg, shards=[tls_shard, plain], slot_ranges=[parse_slot_ranges(s) for s in slots])
    c = sg.client("db1")
    for i in range(2):
        key = sharded.key_on(i, "mixed")
        assert c.set(key, "v") is True
        assert sharded.holders(key) == [i]
    c.close()
