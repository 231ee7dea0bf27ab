"""Cluster-aware clients accept the cluster shardgate shows them.

shardgate answers CLUSTER SLOTS / SHARDS / NODES / INFO / MYID as a cluster
whose nodes are all itself, at the endpoint the client used
(redis/cluster_replies.h). These tests serve exactly those bytes (written by
build/cluster_face_dump) from a small stand-in endpoint that forwards every
other command to one plain redis-server, and run the real clients against it:
redis-py's RedisCluster, `redis-cli -c` and `redis-benchmark --cluster`. The
stand-in records each command a client sends, so the tests also pin down what
each client asks at start (the proxy must answer all of it).
"""
from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

import pytest
from redis.cluster import RedisCluster

from cluster_env import frame_end
from conftest import REPO
from sharding_env import keyslot

FACE_DUMP = Path(REPO / "build" / "cluster_face_dump")


def parse_command(frame: bytes) -> list[bytes]:
    assert frame[:1] == b"*", f"not a multibulk request: {frame[:40]!r}"
    lines = frame.split(b"\r\n")
    count, args, i = int(lines[0][1:]), [], 1
    while len(args) < count:
        n = int(lines[i][1:])
        start = len(b"\r\n".join(lines[:i + 1])) + 2
        args.append(frame[start:start + n])
        # Skip the lines the bulk spans (it may contain "\r\n" itself).
        consumed = frame[:start + n + 2].count(b"\r\n")
        i = consumed
    return args


class FaceEndpoint:
    """127.0.0.1:<port 0>: CLUSTER from the dumped files, the rest forwarded
    to `upstream_port`, INFO's cluster_enabled set to 1 (what shardgate's INFO
    must say for a cluster database: RedisCluster checks it)."""

    def __init__(self, upstream_port: int, nodes: int, tmp_path: Path) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.dir = tmp_path / f"face-{self.port}"
        self.dir.mkdir()
        subprocess.run([str(FACE_DUMP), "127.0.0.1", str(self.port), str(nodes), str(self.dir)],
                       check=True, timeout=10)
        self.replies = {p.stem: p.read_bytes() for p in self.dir.glob("*.bin")}
        self.commands: list[str] = []  # "CLUSTER NODES", "INFO", "SET", ... in order
        self.lock = threading.Lock()
        self.closing = False
        self.threads: list[threading.Thread] = []
        self.sockets: list[socket.socket] = []
        self._spawn(self._accept)

    def _spawn(self, fn, *args) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self.threads.append(t)

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        self.sockets.append(upstream)
        buf, up_buf, resp3 = b"", b"", False
        try:
            while True:
                end = frame_end(buf, 0) if buf else None
                if end is None:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                    continue
                frame, buf = buf[:end], buf[end:]
                args = parse_command(frame)
                name = args[0].decode().upper()
                sub = args[1].decode().upper() if len(args) > 1 else ""
                with self.lock:
                    self.commands.append(f"{name} {sub}".strip()
                                         if name in ("CLUSTER", "CONFIG", "COMMAND", "CLIENT") else name)
                if name == "CLUSTER":
                    key = f"{sub.lower()}_resp{3 if resp3 else 2}"
                    if key in self.replies:
                        client.sendall(self.replies[key])
                    elif sub == "KEYSLOT":
                        client.sendall(b":%d\r\n" % keyslot(args[2]))
                    else:
                        client.sendall(b"-ERR not in this test\r\n")
                    continue
                if name == "HELLO" and len(args) > 1 and args[1] == b"3":
                    resp3 = True
                upstream.sendall(frame)
                while (end := frame_end(up_buf, 0) if up_buf else None) is None:
                    chunk = upstream.recv(65536)
                    if not chunk:
                        return
                    up_buf += chunk
                reply, up_buf = up_buf[:end], up_buf[end:]
                if name == "INFO":
                    reply = reply.replace(b"cluster_enabled:0", b"cluster_enabled:1")
                client.sendall(reply)
        except OSError:
            return

    def seen(self) -> list[str]:
        with self.lock:
            return list(self.commands)

    def close(self) -> None:
        self.closing = True
        for s in [self.listener, *self.sockets]:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept/recv
            except OSError:
                pass
            s.close()
        for t in self.threads:
            t.join(timeout=5)


@pytest.fixture
def face(redis_server, tmp_path):
    if not FACE_DUMP.exists():
        pytest.fail(f"{FACE_DUMP} not built: ninja -C build cluster_face_dump")
    upstream = redis_server()
    endpoints = []

    def make(nodes: int = 1) -> FaceEndpoint:
        ep = FaceEndpoint(upstream.port, nodes, tmp_path)
        endpoints.append(ep)
        return ep

    make.upstream = upstream
    yield make
    for ep in endpoints:
        ep.close()


def test_redis_py_cluster_client_works_through_one_node(face):
    ep = face(1)
    with RedisCluster(host="127.0.0.1", port=ep.port, socket_timeout=5,
                      decode_responses=True) as rc:
        nodes = rc.get_nodes()
        assert [n.name for n in nodes] == [f"127.0.0.1:{ep.port}"]
        # Every slot is ours (RedisCluster does not insist by default).
        assert sorted(rc.nodes_manager.slots_cache) == list(range(16384))
        for i in range(200):
            assert rc.set(f"py:{i}", i)
        assert [rc.get(f"py:{i}") for i in range(200)] == [str(i) for i in range(200)]
        assert rc.keyslot("foo") == 12182
    with face.upstream.client() as direct:
        assert direct.get("py:7") == b"7"
    # What RedisCluster (redis-py 4.3) asks before its first command.
    start = ep.seen()
    assert start[:3] == ["INFO", "CLUSTER SLOTS", "COMMAND"], start[:6]


def test_redis_py_cluster_client_accepts_several_virtual_nodes(face):
    ep = face(3)
    with RedisCluster(host="127.0.0.1", port=ep.port, socket_timeout=5,
                      decode_responses=True) as rc:
        assert [n.name for n in rc.get_nodes()] == [f"127.0.0.1:{ep.port}"]
        assert sorted(rc.nodes_manager.slots_cache) == list(range(16384))
        for i in range(100):
            assert rc.set(f"py3:{i}", i)
        assert rc.get("py3:42") == "42"


def test_redis_cli_cluster_mode(face):
    ep = face(1)
    for args, want in [(["SET", "cli-key", "v1"], "OK"), (["GET", "cli-key"], "v1"),
                       (["CLUSTER", "KEYSLOT", "cli-key"], str(keyslot("cli-key")))]:
        done = subprocess.run(["redis-cli", "-c", "-p", str(ep.port), *args],
                              capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == want
    # redis-cli -c asks nothing about the cluster: it only follows MOVED/ASK.
    assert [c for c in ep.seen() if c.startswith("CLUSTER")] == ["CLUSTER KEYSLOT"]


def run_benchmark(port: int) -> subprocess.CompletedProcess:
    return subprocess.run(["redis-benchmark", "--cluster", "-p", str(port), "-t", "set,get",
                           "-n", "2000", "-c", "4", "-q"],
                          capture_output=True, text=True, timeout=60)


def test_redis_benchmark_cluster_needs_two_nodes(face):
    # One node, the plain truth: redis-benchmark refuses it.
    one = run_benchmark(face(1).port)
    assert one.returncode != 0
    assert "Invalid cluster: 1 node(s)" in one.stdout + one.stderr
    # Two virtual nodes at the same endpoint: it runs.
    ep = face(2)
    two = run_benchmark(ep.port)
    assert two.returncode == 0, two.stdout + two.stderr
    out = two.stdout
    assert "SET:" in out and "GET:" in out, out
    seen = ep.seen()
    assert seen[0] == "CLUSTER NODES", seen[:5]
    assert "CONFIG GET" in seen  # per master, for its own report; a failure is only a warning
    assert "CLUSTER SLOTS" not in seen  # asked only after a MOVED or ASK
    assert seen.count("SET") >= 2000 and seen.count("GET") >= 2000
