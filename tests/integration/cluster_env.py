"""A real Redis Cluster on loopback, for the tests of a cluster backend.

`start_cluster(procs, tmp_path)` starts six redis-server nodes in cluster mode,
joins them with `redis-cli --cluster create ... --cluster-replicas 1` (three
masters with 5461/5461/5462 slots, one replica each) and waits until the
cluster is settled: `cluster_state:ok` on every node, every node reporting the
same slot owners, every replica's link to its master up. The returned
`ClusterEnv` then changes the cluster the way an operator or a crash does, and
each change returns only once the cluster has settled again:

    reshard(n, from, to)   redis-cli --cluster reshard (moves keys too)
    rebalance()            redis-cli --cluster rebalance --cluster-use-empty-masters
    add_master()           a new empty node, redis-cli --cluster add-node
    remove_node(node)      redis-cli --cluster del-node (a master must be empty)
    failover(replica)      CLUSTER FAILOVER on a replica (no data lost)
    kill_master(i)         SIGKILL, then waits for the automatic failover
    restart(node)          a killed node back on its port with its nodes.conf

and answers what tests ask: `masters()`, `replicas()`, `slot_owner(slot)`,
`slot_map()`. Node timeouts are short (`cluster-node-timeout 1000`), so a
killed master's replica takes over within a few seconds.

Every process is registered with conftest's `Procs` (the `procs` fixture), so
the test's teardown stops every node whether the test passed or not.
`redis-cli --cluster` runs with a timeout. Every wait polls for its condition
with a deadline and fails naming what it saw last.

Run directly (`python3 cluster_env.py DIR`) it starts a cluster, writes the
raw reply bytes of CLUSTER SHARDS / SLOTS / NODES (RESP2 and RESP3) into DIR
and stops it: that is how the unit tests' fixtures were captured.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis  # noqa: E402

from conftest import (  # noqa: E402
    Procs, PortTaken, free_port, wait_for_redis_ready)

SLOT_COUNT = 16384
NODE_TIMEOUT_MS = 1000
SETTLE_TIMEOUT_S = 30.0
REDIS_CLI_TIMEOUT_S = 120.0


class ClusterError(AssertionError):
    """The cluster did not reach the state a helper waits for."""


@dataclass
class ClusterNode:
    port: int
    cluster_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen
    node_id: str = ""
    tls_port: int = 0  # 0: no TLS (ClusterEnv(tls=False))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def client(self, **kw) -> redis.Redis:
        """A plain (non-cluster) redis-py client to this one node."""
        kw.setdefault("socket_timeout", 5)
        return redis.Redis(host="127.0.0.1", port=self.port, **kw)

    def command(self, *args):
        """One command, reply as redis-py returns it without a callback."""
        with self.client() as r:
            return r.execute_command(*args)

    def __str__(self) -> str:
        return f"{self.address} ({self.node_id[:8] or '?'})"


def raw_command(port: int, *args: str | bytes, resp3: bool = False,
                timeout: float = 5.0) -> bytes:
    """Sends one command and returns its reply's exact bytes (after HELLO 3 when
    resp3): what a unit test feeds to the C++ parsers."""
    def encode(parts) -> bytes:
        out = b"*%d\r\n" % len(parts)
        for p in parts:
            p = p if isinstance(p, bytes) else str(p).encode()
            out += b"$%d\r\n%s\r\n" % (len(p), p)
        return out

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        if resp3:
            sock.sendall(encode(["HELLO", "3"]))
            _read_frame(sock, bytearray())
        sock.sendall(encode(args))
        return _read_frame(sock, bytearray())


def _read_frame(sock: socket.socket, buf: bytearray) -> bytes:
    """Reads exactly one complete RESP2/RESP3 frame (no pipelining here)."""
    while True:
        end = frame_end(bytes(buf), 0)
        if end is not None:
            return bytes(buf[:end])
        chunk = sock.recv(65536)
        if not chunk:
            raise ClusterError(f"connection closed mid-reply after {len(buf)} bytes")
        buf += chunk


def frame_end(data: bytes, pos: int) -> int | None:
    """The offset just past the frame at `pos`, or None if it is incomplete."""
    line_end = data.find(b"\r\n", pos)
    if line_end < 0:
        return None
    kind, head = data[pos:pos + 1], data[pos + 1:line_end]
    after = line_end + 2
    if kind in b"$!=":
        n = int(head)
        if n < 0:
            return after
        return after + n + 2 if len(data) >= after + n + 2 else None
    if kind in b"*~>%|":
        n = int(head)
        if n < 0:
            return after
        count = n * 2 if kind in b"%|" else n
        for _ in range(count):
            after = frame_end(data, after)
            if after is None:
                return None
        if kind == b"|":  # an attribute precedes the value it annotates
            return frame_end(data, after)
        return after
    return after  # + - : _ , # (


_NODE_EXT = """[ node ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
"""


def _issue_node_cert(ca):
    """One certificate for every node: each serves TLS with it and presents
    it as a client on the cluster bus and to its master (both usages)."""
    from certs import _EC, Pair, run_openssl
    (ca.dir / "node_ext.cnf").write_text(_NODE_EXT)
    key, csr, cert = (ca.dir / "cluster-node.key.pem", ca.dir / "cluster-node.csr",
                      ca.dir / "cluster-node.cert.pem")
    run_openssl("req", "-new", *_EC, "-subj", "/CN=localhost", "-keyout", key, "-out", csr,
                cwd=ca.dir)
    run_openssl("x509", "-req", "-in", csr, "-CA", "ca.pem", "-CAkey", "ca.key",
                "-set_serial", "1", "-days", "30", "-extfile", "node_ext.cnf",
                "-extensions", "node", "-out", cert, cwd=ca.dir)
    return Pair(cert=cert, key=key, serial="1")


class ClusterEnv:
    """tls=True: every node also serves TLS on its own `tls_port`, and the
    cluster bus and replication run over TLS (`tls-cluster`,
    `tls-replication`), with one certificate (CN localhost, SAN 127.0.0.1)
    from the CA at `ca_cert`. Clients are not asked for certificates. The
    plaintext port stays open for the rig's own helpers; a client on the TLS
    port sees TLS ports in CLUSTER SLOTS / NODES and in MOVED, a plaintext
    client plaintext ones, and CLUSTER SHARDS lists both ("port", "tls-port")."""

    def __init__(self, procs: Procs, tmp_path: Path, tls: bool = False) -> None:
        self.procs = procs
        self.tmp_path = tmp_path
        self.nodes: list[ClusterNode] = []  # every node started, in start order
        self._counter = 0
        self.tls = tls
        self.ca_cert: Path | None = None
        if tls:
            from certs import CA
            ca = CA(tmp_path / "cluster-ca", name="cluster test CA")
            self._pair = _issue_node_cert(ca)
            self.ca_cert = ca.cert

    # ------------------------------------------------------------ processes

    def _node_args(self, node_port: int, cluster_port: int, data_dir: Path,
                   tls_port: int = 0) -> list[str]:
        tls = []
        if tls_port:
            tls = ["--tls-port", str(tls_port),
                   "--tls-cert-file", str(self._pair.cert), "--tls-key-file", str(self._pair.key),
                   "--tls-ca-cert-file", str(self.ca_cert), "--tls-auth-clients", "no",
                   "--tls-cluster", "yes", "--tls-replication", "yes"]
        return [*self._plain_args(node_port, cluster_port, data_dir), *tls]

    def _plain_args(self, node_port: int, cluster_port: int, data_dir: Path) -> list[str]:
        return ["redis-server", "--port", str(node_port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--dir", str(data_dir),
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",   # inside --dir
                "--cluster-port", str(cluster_port),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                # A replica may take over at once after its master fails,
                # however long ago it last heard from it (tests kill masters
                # right after writing).
                "--cluster-replica-validity-factor", "0",
                "--cluster-allow-replica-migration", "no"]

    def start_node(self) -> ClusterNode:
        """A new, empty cluster-mode node on free ports (retried if a port is
        taken between picking and binding: redis-server cannot bind port 0)."""
        for attempt in range(5):
            self._counter += 1
            data_dir = self.tmp_path / f"cluster-node{self._counter}"
            data_dir.mkdir()
            log_path = self.tmp_path / f"cluster-node{self._counter}.log"
            node_port, cluster_port = free_port(), free_port()
            tls_port = free_port() if self.tls else 0
            proc = self.procs.start(
                self._node_args(node_port, cluster_port, data_dir, tls_port), log_path)
            try:
                wait_for_redis_ready(proc, log_path, node_port)
            except PortTaken:
                if attempt == 4:
                    raise
                continue
            node = ClusterNode(node_port, cluster_port, data_dir, log_path, proc,
                               tls_port=tls_port)
            node.node_id = node.command("CLUSTER", "MYID").decode()
            self.nodes.append(node)
            return node
        raise AssertionError("unreachable")

    def restart(self, node: ClusterNode) -> None:
        """Brings a stopped node back on its own ports with its own nodes.conf:
        the cluster sees the same node return (as a replica of whoever took
        over its slots, if it was a failed master)."""
        assert not node.alive(), f"{node} is still running"
        node.proc = self.procs.start(
            self._node_args(node.port, node.cluster_port, node.data_dir, node.tls_port),
            node.data_dir.with_name(node.data_dir.name + "-restarted.log"))
        wait_for_redis_ready(node.proc, node.data_dir.with_name(
            node.data_dir.name + "-restarted.log"), node.port)
        self.wait_settled()

    def cli_address(self, node: ClusterNode) -> str:
        """The node as redis-cli --cluster must name it: in a TLS cluster the
        nodes meet on their TLS ports, so the tool speaks TLS to those."""
        return f"127.0.0.1:{node.tls_port}" if self.tls else node.address

    def redis_cli(self, *args: str, timeout: float = REDIS_CLI_TIMEOUT_S) -> str:
        tls = ["--tls", "--cacert", str(self.ca_cert)] if self.tls else []
        cmd = ["redis-cli", *tls, *map(str, args)]
        try:
            done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise ClusterError(f"{' '.join(cmd)} still running after {timeout} s\n"
                               f"{e.stdout or ''}{e.stderr or ''}") from None
        if done.returncode != 0 or "[ERR]" in done.stdout:
            raise ClusterError(f"{' '.join(cmd)} failed ({done.returncode}):\n"
                               f"{done.stdout}{done.stderr}")
        return done.stdout

    # ------------------------------------------------------------ creation

    def create(self, masters: int = 3, replicas_per_master: int = 1) -> None:
        fresh = [self.start_node() for _ in range(masters * (1 + replicas_per_master))]
        self.redis_cli("--cluster", "create", *[self.cli_address(n) for n in fresh],
                       "--cluster-replicas", str(replicas_per_master), "--cluster-yes",
                       timeout=SETTLE_TIMEOUT_S)
        self.wait_settled(expect_nodes=len(fresh))

    # ------------------------------------------------------------ views

    def live_nodes(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.alive()]

    def by_id(self, node_id: str) -> ClusterNode:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise ClusterError(f"no node with id {node_id}")

    def by_port(self, port: int) -> ClusterNode:
        for n in self.nodes:
            if n.port == port:
                return n
        raise ClusterError(f"no node on port {port}")

    def nodes_view(self, node: ClusterNode | None = None) -> list[dict]:
        """CLUSTER NODES as seen by `node` (default: the first live node):
        [{id, port, flags, master_id, slots: [(lo, hi), ...]}, ...]."""
        node = node or self.live_nodes()[0]
        text = node.command("CLUSTER", "NODES").decode()
        out = []
        for line in text.splitlines():
            fields = line.split(" ")
            if len(fields) < 8:
                continue
            addr = fields[1].split("@")[0]
            slots = []
            for spec in fields[8:]:
                if spec.startswith("["):  # a migration in progress, not ownership
                    continue
                lo, _, hi = spec.partition("-")
                slots.append((int(lo), int(hi or lo)))
            out.append({"id": fields[0], "port": int(addr.rpartition(":")[2] or 0),
                        "flags": set(fields[2].split(",")), "master_id": fields[3],
                        "link": fields[7], "slots": slots})
        return out

    def slot_map(self, node: ClusterNode | None = None) -> list[int]:
        """For each slot, the port of its master as `node` sees it (0: uncovered)."""
        owners = [0] * SLOT_COUNT
        for entry in self.nodes_view(node):
            if "master" in entry["flags"] and "fail" not in entry["flags"]:
                for lo, hi in entry["slots"]:
                    for s in range(lo, hi + 1):
                        owners[s] = entry["port"]
        return owners

    def masters(self) -> list[ClusterNode]:
        """Live masters that own slots, by port order."""
        view = self.nodes_view()
        ports = sorted(e["port"] for e in view if "master" in e["flags"]
                       and "fail" not in e["flags"] and e["slots"])
        return [self.by_port(p) for p in ports]

    def replicas(self, master: ClusterNode | None = None) -> list[ClusterNode]:
        view = self.nodes_view()
        return [self.by_port(e["port"]) for e in view
                if "slave" in e["flags"] and "fail" not in e["flags"]
                and (master is None or e["master_id"] == master.node_id)]

    def slot_owner(self, slot: int) -> ClusterNode:
        port = self.slot_map()[slot]
        if not port:
            raise ClusterError(f"slot {slot} is not covered")
        return self.by_port(port)

    def slots_of(self, master: ClusterNode) -> int:
        return sum(1 for p in self.slot_map() if p == master.port)

    # ------------------------------------------------------------ waits

    def wait_settled(self, expect_nodes: int | None = None,
                     timeout: float = SETTLE_TIMEOUT_S) -> None:
        """Until every live node says cluster_state:ok, knows every live node,
        sees the same slot owners with every slot covered, no slot is
        migrating, and every live replica's link to its master is up."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            try:
                last = self._unsettled_reason(expect_nodes)
                if not last:
                    return
            except (redis.RedisError, OSError, ValueError) as e:
                last = f"{type(e).__name__}: {e}"
            if time.monotonic() > deadline:
                raise ClusterError(f"cluster not settled after {timeout} s: {last}")
            time.sleep(0.1)

    def _unsettled_reason(self, expect_nodes: int | None) -> str:
        live = self.live_nodes()
        live_ids = {n.node_id for n in live}
        reference = None
        for node in live:
            info = node.command("CLUSTER", "INFO").decode()
            if "cluster_state:ok" not in info:
                return f"{node}: cluster_state not ok"
            view = self.nodes_view(node)
            known = {e["id"] for e in view if "fail" not in e["flags"]
                     and "handshake" not in e["flags"] and "noaddr" not in e["flags"]}
            if known != live_ids:
                return f"{node} knows {len(known)} live nodes, {len(live_ids)} running"
            if expect_nodes is not None and len(known) != expect_nodes:
                return f"{node} knows {len(known)} nodes, expected {expect_nodes}"
            text = node.command("CLUSTER", "NODES").decode()
            if "->-" in text or "-<-" in text:
                return f"{node}: a slot is still migrating or importing"
            owners = self.slot_map(node)
            if 0 in owners:
                return f"{node}: slot {owners.index(0)} not covered"
            if reference is None:
                reference = owners
            elif owners != reference:
                slot = next(i for i in range(SLOT_COUNT) if owners[i] != reference[i])
                return (f"{node} and {live[0]} disagree on slot {slot}: "
                        f"{owners[slot]} vs {reference[slot]}")
            role = node.client().info("replication")
            if role.get("role") == "slave" and role.get("master_link_status") != "up":
                return f"{node}: replica link to its master is {role.get('master_link_status')}"
        return ""

    # ------------------------------------------------------------ changes

    def reshard(self, n_slots: int, source: ClusterNode, target: ClusterNode) -> None:
        """Moves n_slots slots (with their keys) from source to target."""
        self.redis_cli("--cluster", "reshard", self.cli_address(source),
                       "--cluster-from", source.node_id, "--cluster-to", target.node_id,
                       "--cluster-slots", n_slots, "--cluster-yes")
        self.wait_settled()

    def rebalance(self) -> None:
        self.redis_cli("--cluster", "rebalance", self.cli_address(self.masters()[0]),
                       "--cluster-use-empty-masters")
        self.wait_settled()

    def add_master(self) -> ClusterNode:
        """A new empty master, known to every node (it owns no slots yet:
        reshard or rebalance onto it)."""
        node = self.start_node()
        self.redis_cli("--cluster", "add-node", self.cli_address(node),
                       self.cli_address(self.masters()[0]))
        self.wait_settled()
        return node

    def add_replica(self, master: ClusterNode) -> ClusterNode:
        node = self.start_node()
        self.redis_cli("--cluster", "add-node", self.cli_address(node), self.cli_address(master),
                       "--cluster-slave", "--cluster-master-id", master.node_id)
        self.wait_settled()
        return node

    def remove_node(self, node: ClusterNode) -> None:
        """del-node forgets the node on every other node and shuts it down. A
        master must own no slots (reshard them away first)."""
        if node in self.masters():
            raise ClusterError(f"{node} still owns {self.slots_of(node)} slots")
        other = next(n for n in self.live_nodes() if n is not node)
        self.redis_cli("--cluster", "del-node", self.cli_address(other), node.node_id)
        try:
            node.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait(timeout=5)
        self.nodes.remove(node)
        self.wait_settled()

    def failover(self, replica: ClusterNode) -> ClusterNode:
        """A manual CLUSTER FAILOVER on `replica` (coordinated with its master:
        no acknowledged write is lost). Returns the old master, now a replica."""
        view = {e["id"]: e for e in self.nodes_view(replica)}
        old_master = self.by_id(view[replica.node_id]["master_id"])
        reply = replica.command("CLUSTER", "FAILOVER")
        if reply not in (b"OK", "OK", True):
            raise ClusterError(f"CLUSTER FAILOVER on {replica}: {reply!r}")
        self._wait_for(lambda: replica in self.masters()
                       and old_master in self.replicas(replica),
                       f"{replica} to become master after CLUSTER FAILOVER")
        self.wait_settled()
        return old_master

    def kill_master(self, index: int) -> tuple[ClusterNode, ClusterNode]:
        """SIGKILLs masters()[index], waits for one of its replicas to take
        over its slots (the automatic failover) and for the cluster to be ok.
        Returns (dead master, new master)."""
        dead = self.masters()[index]
        slot = self.slot_map().index(dead.port)
        os.kill(dead.proc.pid, signal.SIGKILL)
        dead.proc.wait(timeout=5)

        def promoted() -> bool:
            return self.slot_map()[slot] not in (0, dead.port)

        self._wait_for(promoted, f"a replica of {dead} to take over slot {slot}")
        self.wait_settled()
        return dead, self.slot_owner(slot)

    def wait_replicas_listed(self, node: ClusterNode) -> None:
        """Until `node`'s CLUSTER SLOTS lists every live replica (Redis 7.0
        leaves out a replica whose replication offset is still 0)."""
        def listed() -> bool:
            with node.client() as r:
                ranges = r.execute_command("CLUSTER", "SLOTS")
            seen = {int(e[1]) for rng in ranges for e in rng[3:]}
            return seen == {n.port for n in self.replicas()}

        self._wait_for(listed, f"{node}'s CLUSTER SLOTS to list every replica")

    def _wait_for(self, condition, what: str, timeout: float = SETTLE_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        last_error = ""
        while True:
            try:
                if condition():
                    return
            except (redis.RedisError, OSError, ClusterError) as e:
                last_error = f" (last error: {e})"
            if time.monotonic() > deadline:
                raise ClusterError(f"waited {timeout} s for {what}{last_error}")
            time.sleep(0.1)

    # ------------------------------------------------------------ clients

    def cluster_client(self, **kw) -> "redis.cluster.RedisCluster":
        """redis-py's cluster-aware client, straight to the nodes."""
        from redis.cluster import RedisCluster
        kw.setdefault("socket_timeout", 5)
        return RedisCluster(host="127.0.0.1", port=self.masters()[0].port, **kw)


def start_cluster(procs: Procs, tmp_path: Path, masters: int = 3,
                  replicas_per_master: int = 1, tls: bool = False) -> ClusterEnv:
    env = ClusterEnv(procs, tmp_path, tls=tls)
    env.create(masters, replicas_per_master)
    return env


def capture_fixtures(out_dir: Path, only: str | None = None) -> None:
    """Writes the raw replies the C++ unit tests use as fixtures (only="tls":
    just the TLS cluster's)."""
    import tempfile
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = Procs()
    try:
        if only != "tls":
            with tempfile.TemporaryDirectory() as tmp:
                _capture_plain(start_cluster(procs, Path(tmp)), out_dir)
            procs.stop_all()
        with tempfile.TemporaryDirectory() as tmp:
            # TLS nodes: CLUSTER SHARDS lists "port" and "tls-port".
            env = start_cluster(procs, Path(tmp), masters=3, replicas_per_master=0, tls=True)
            (out_dir / "shards_tls_resp2.bin").write_bytes(
                raw_command(env.masters()[0].port, "CLUSTER", "SHARDS"))
    finally:
        procs.stop_all()


def _capture_plain(env: ClusterEnv, out_dir: Path) -> None:
    node = env.masters()[0]
    # Redis 7.0 lists a replica in CLUSTER SLOTS (and reports it
    # "online" in CLUSTER SHARDS) only once it has a replication
    # offset: write something, then wait for the offsets to spread.
    with env.cluster_client() as rc:
        for i in range(100):
            rc.set(f"fixture:{i}", i)
    env.wait_replicas_listed(node)
    for name, args in [("shards", ("CLUSTER", "SHARDS")),
                       ("slots", ("CLUSTER", "SLOTS")),
                       ("nodes", ("CLUSTER", "NODES")),
                       ("info", ("CLUSTER", "INFO"))]:
        for resp3 in (False, True):
            data = raw_command(node.port, *args, resp3=resp3)
            (out_dir / f"{name}_resp{3 if resp3 else 2}.bin").write_bytes(data)
    _capture_redirects(env, out_dir)
    # After a reshard of 100 slots the map has a split range.
    env.reshard(100, env.masters()[0], env.masters()[1])
    (out_dir / "slots_resharded_resp2.bin").write_bytes(
        raw_command(node.port, "CLUSTER", "SLOTS"))
    (out_dir / "shards_resharded_resp2.bin").write_bytes(
        raw_command(node.port, "CLUSTER", "SHARDS"))
    # A killed master: CLUSTER SHARDS shows it with health "fail".
    env.kill_master(2)
    live = env.masters()[0]
    (out_dir / "shards_failed_resp2.bin").write_bytes(
        raw_command(live.port, "CLUSTER", "SHARDS"))
    (out_dir / "slots_failed_resp2.bin").write_bytes(
        raw_command(live.port, "CLUSTER", "SLOTS"))


def _capture_redirects(env: ClusterEnv, out_dir: Path) -> None:
    """The error replies a cluster database answers: MOVED (with and without a
    host), ASK and TRYAGAIN during a migration, CLUSTERDOWN from a node that
    owns no slot."""
    from sharding_env import keyslot
    key = b"fixture:redirect"
    slot = keyslot(key)
    owner = env.slot_owner(slot)
    other = next(m for m in env.masters() if m is not owner)
    (out_dir / "moved.bin").write_bytes(raw_command(other.port, "GET", key))
    other.command("CONFIG", "SET", "cluster-preferred-endpoint-type", "unknown-endpoint")
    (out_dir / "moved_unknown_endpoint.bin").write_bytes(raw_command(other.port, "GET", key))
    other.command("CONFIG", "SET", "cluster-preferred-endpoint-type", "ip")
    # A slot half-way from owner to other: a key the owner lacks is asked for
    # at the importing node; a multi-key command over a present and a missing
    # key cannot run anywhere until the migration ends.
    with owner.client() as r:
        r.set(b"{fixture:redirect}present", b"1")
    other.command("CLUSTER", "SETSLOT", slot, "IMPORTING", owner.node_id)
    owner.command("CLUSTER", "SETSLOT", slot, "MIGRATING", other.node_id)
    (out_dir / "ask.bin").write_bytes(raw_command(owner.port, "GET", key))
    (out_dir / "tryagain.bin").write_bytes(raw_command(
        owner.port, "MGET", b"{fixture:redirect}present", b"{fixture:redirect}missing"))
    owner.command("CLUSTER", "SETSLOT", slot, "STABLE")
    other.command("CLUSTER", "SETSLOT", slot, "STABLE")
    loner = env.start_node()  # never joined: owns no slot
    (out_dir / "clusterdown.bin").write_bytes(raw_command(loner.port, "GET", key))
    stop_node = loner.proc
    stop_node.terminate()
    stop_node.wait(timeout=10)
    env.nodes.remove(loner)


if __name__ == "__main__":
    capture_fixtures(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
