"""The cluster group of bench/run (`--only cluster`, opt-in): shardgate in
front of a real Redis Cluster, beside the cluster-aware client a user would
otherwise point straight at the nodes.

    redis-benchmark --cluster --tls ──TLS──▶ node ports (tls-port)   direct-cluster-tls
    redis-benchmark --tls ──TLS──▶ shardgate ──plain──▶ node ports   shardgate-cluster{,-1w}
    redis-benchmark --tls ──TLS──▶ shardgate ──TLS────▶ tls-ports    shardgate-cluster-tls

The cluster is tests/integration/cluster_env.py's rig with tls=True: 3
masters, 3 replicas, every node serving TLS on its tls-port beside its
plaintext port, cluster bus and replication over TLS (tls-cluster,
tls-replication), one certificate (SAN IP:127.0.0.1) from the rig's own CA.
Clients are not asked for certificates (tls-auth-clients no).

Besides the GET/SET rounds, `reshard_check` runs a bounded GET/SET load
through shardgate while `redis-cli --cluster reshard` moves slots with their
keys, and the same load with no reshard, to compare p99 and count errors.
"""
from __future__ import annotations

import csv
import io
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import targets as T
import workloads as W

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

import cluster_env as CE  # noqa: E402
from conftest import Procs  # noqa: E402
from sharding_env import keyslot  # noqa: E402

# The reshard check's load: fewer connections than the rounds' 50, so the
# machine (2 cores) has room for the migration itself; the same load runs
# with and without a reshard.
RESHARD_CLIENTS = 10


class Cluster:
    """The rig's TLS cluster, its processes in a conftest Procs registry."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.procs = Procs()
        try:
            self.env = CE.start_cluster(self.procs, workdir, tls=True)
        except KeyboardInterrupt:
            self.procs.stop_all()
            raise
        except BaseException as e:  # noqa: BLE001 - the rig fails with pytest.fail (a BaseException)
            self.procs.stop_all()
            raise RuntimeError(f"the cluster did not start: {e}") from e

    def masters(self) -> list[CE.ClusterNode]:
        return self.env.masters()

    def cpu_seconds(self) -> float:
        """utime+stime of every node (masters and replicas: a replica's
        share of a write is part of what the cluster spends)."""
        ticks = 0
        for n in self.env.live_nodes():
            st = T._read_stat(n.proc.pid)
            if st is not None:
                ticks += int(st[11]) + int(st[12])
        return ticks / T.CLK_TCK

    def stop(self) -> None:
        self.procs.stop_all()


@dataclass
class DirectCluster:
    """direct-cluster-tls, shaped as a targets.Proc for workloads.getset:
    redis-benchmark --cluster at a master's TLS port, the 'proxy' CPU being
    the nodes' (as `direct`'s is redis-server's)."""
    cluster: Cluster
    name: str = T.CLUSTER_DIRECT
    tls: bool = True
    client_cert: bool = False
    extra_args: list[str] = field(default_factory=lambda: ["--cluster"])

    @property
    def port(self) -> int:
        return self.cluster.masters()[0].tls_port

    def cpu_seconds(self) -> float:
        return self.cluster.cpu_seconds()

    def alive(self) -> bool:
        return all(n.alive() for n in self.cluster.env.nodes)

    def log_tail(self, n: int = 15) -> str:
        return ""


def populate(proc: T.Proc, ctx: T.Ctx, keys: int = W.KEYSPACE) -> None:
    """Every benchmark key (key:%012d, 0 <= i < keys) set through `proc`, so
    each slot holds keys and a reshard has keys to move."""
    with W.Resp(proc.port, tls=True, ca=ctx.certs["ca"]) as c:
        step = 1000
        for lo in range(0, keys, step):
            replies = c.pipeline([("SET", W.bench_key(i), "xxx")
                                  for i in range(lo, min(keys, lo + step))])
            bad = [r for r in replies if r != "OK"]
            if bad:
                raise RuntimeError(f"populating through {proc.name}: {bad[0]!r}")


def _load(port: int, ctx: T.Ctx, n: int, extra: list[str] = ()) -> dict:
    """The reshard check's bounded load: redis-benchmark --tls at shardgate,
    RESHARD_CLIENTS connections, pipeline 1, SET then GET, n each.
    redis-benchmark 7 exits at the first error reply or connection error
    ("Error from server: ...", "Error: ..."): a nonzero exit or any such
    line is an error; a run that ends with 0 had none."""
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "--tls",
            "--cacert", str(ctx.certs["ca"]), "-c", str(RESHARD_CLIENTS), "-P", "1",
            "-n", str(n), "-r", str(W.KEYSPACE), "-t", "set,get", "--csv", *extra]
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    wall = time.monotonic() - t0
    rows = {row["test"]: row for row in csv.DictReader(
        io.StringIO("\n".join(l for l in r.stdout.splitlines() if l.startswith('"'))))
        if row.get("test") in ("SET", "GET")}
    err_lines = [l for l in (r.stdout + r.stderr).splitlines() if "Error" in l]
    out = {"rc": r.returncode, "wall_s": round(wall, 2), "errors_shown": len(err_lines),
           "first_errors": err_lines[:3]}
    if set(rows) == {"SET", "GET"}:
        s, g = rows["SET"], rows["GET"]
        out.update(rps=2 * n / (n / float(s["rps"]) + n / float(g["rps"])),
                   p50_ms=(float(s["p50_latency_ms"]) + float(g["p50_latency_ms"])) / 2,
                   p99_ms=max(float(s["p99_latency_ms"]), float(g["p99_latency_ms"])),
                   max_ms=max(float(s["max_latency_ms"]), float(g["max_latency_ms"])))
    return out


class _Verifier(threading.Thread):
    """SET then GET, one at a time, on keys whose slots the reshard moves,
    until stopped: every reply checked, every error counted (exactly, unlike
    redis-benchmark's -e)."""

    def __init__(self, port: int, ca: Path, keys: list[str]) -> None:
        super().__init__(daemon=True)
        self.port, self.ca, self.keys = port, ca, keys
        self.stop_evt = threading.Event()
        self.ops = 0
        self.errors: list[str] = []

    def run(self) -> None:
        i = 0
        try:
            with W.Resp(self.port, tls=True, ca=self.ca) as c:
                while not self.stop_evt.is_set():
                    k = self.keys[i % len(self.keys)]
                    v = f"v{i}"
                    for cmd, want in ((("SET", k, v), "OK"), (("GET", k), v)):
                        got = c.pipeline([cmd])[0]   # an error reply comes back as a value
                        got = got.decode() if isinstance(got, bytes) else got
                        self.ops += 1
                        if got != want and len(self.errors) < 1000:
                            self.errors.append(f"{cmd[0]} {k}: {got!r}")
                    i += 1
        except Exception as e:  # noqa: BLE001 - the connection itself failed
            self.errors.append(f"connection: {type(e).__name__}: {e}")


def _moving_keys(env: CE.ClusterEnv, source: CE.ClusterNode, n_slots: int,
                 count: int = 500) -> list[str]:
    """The verifier's keys: in the first n_slots slots `source` owns (redis-cli
    --cluster reshard takes a source's slots in ascending order), and outside
    redis-benchmark's key:%012d, which the load would overwrite between the
    verifier's SET and GET."""
    moving = set([s for s, p in enumerate(env.slot_map()) if p == source.port][:n_slots])
    keys, i = [], 0
    while len(keys) < count:
        if keyslot(f"verify:{i}") in moving:
            keys.append(f"verify:{i}")
        i += 1
    return keys


def reshard_check(cluster: Cluster, proc: T.Proc, ctx: T.Ctx, n_slots: int,
                  rounds: int, log) -> dict:
    """p99 through shardgate (`proc`) while n_slots slots move with their
    keys, against the same load with none moving; errors counted. The load
    always runs with a verifier beside it (SET and GET checked one at a time
    on 500 keys of its own in the slots that move).

    1. A reshard with no load, A -> B: its duration D sizes the load.
    2. Each round: the load (n requests, about D long) with nothing moving
       ("steady"), then the same load started with a reshard of the same
       slots and keys the other way ("during"); B -> A, then A -> B, ...
    3. Steady once more, so the machine's drift shows.
    The check compares the medians of the during and the steady p99s."""
    env = cluster.env
    a, b = env.masters()[0], env.masters()[1]
    out: dict = {"slots": n_slots, "from_to": [a.address, b.address], "rounds": rounds,
                 "steady": [], "during": []}
    # Only the benchmark's keys, ~6 a slot: redis-benchmark --cluster's own
    # keys (direct-cluster-tls) carry one hash tag per master, so they pile
    # up in a few slots, which would make the moved key count depend on
    # which slots those happen to be.
    for m in env.masters():
        m.command("FLUSHALL")
    populate(proc, ctx)
    out["keys_total"] = sum(n.command("DBSIZE") for n in env.masters())
    # The verifier's keys exist before the first move, so they move too.
    moving = _moving_keys(env, a, n_slots)
    out["verifier_keys"] = len(moving)
    with W.Resp(proc.port, tls=True, ca=ctx.certs["ca"]) as c:
        bad = [r for r in c.pipeline([("SET", k, "0") for k in moving]) if r != "OK"]
        if bad:
            raise RuntimeError(f"setting the verifier's keys: {bad[0]!r}")
    keys_a = a.command("DBSIZE")
    # What the reshard itself costs the 2 cores: redis-cli (the only child
    # process running now) and the nodes.
    cli0, nodes0, t0 = W._children_cpu(), cluster.cpu_seconds(), time.monotonic()
    env.reshard(n_slots, a, b)
    out["reshard_alone_s"] = round(time.monotonic() - t0, 2)
    out["reshard_cli_cpu_s"] = round(W._children_cpu() - cli0, 2)
    out["reshard_nodes_cpu_s"] = round(cluster.cpu_seconds() - nodes0, 2)
    out["keys_moved"] = keys_a - a.command("DBSIZE")
    log(f"  cluster reshard of {n_slots} slots ({out['keys_moved']:,} keys) with no load: "
        f"{out['reshard_alone_s']} s; CPU: redis-cli {out['reshard_cli_cpu_s']} s, "
        f"nodes {out['reshard_nodes_cpu_s']} s")
    # Size the load to last about as long as the reshard.
    probe = _load(proc.port, ctx, 5000)
    rate = probe.get("rps", 10000)
    n = max(5000, int(rate * out["reshard_alone_s"] / 2 / 1000) * 1000)
    out["load_n_each"] = n
    # reshard takes a source's lowest slots: a's lowest went to b, where they
    # are now the lowest, and so the same slots go back and forth.

    def verified_load() -> dict:
        """The load with the verifier beside it, in every phase alike."""
        ver = _Verifier(proc.port, ctx.certs["ca"], moving)
        ver.start()
        try:
            res = _load(proc.port, ctx, n)
        finally:
            ver.stop_evt.set()
            ver.join(timeout=10)
        res["verifier"] = {"ops": ver.ops, "errors": len(ver.errors),
                           "first_errors": ver.errors[:5]}
        return res

    # The control: the same load straight at the nodes (redis-benchmark
    # --cluster --tls, which follows MOVED and ASK itself), steady and during
    # a reshard, so the machine's share of the p99 shows apart from shardgate's.
    dctx = T.Ctx(certs={**ctx.certs, "ca": env.ca_cert}, shardgate_bin=ctx.shardgate_bin,
                 workdir=ctx.workdir)
    out["direct_steady"], out["direct_during"] = [], []

    def loaded_reshard(src, dst, load) -> dict:
        result: dict = {}

        def resh() -> None:
            t = time.monotonic()
            try:
                env.reshard(n_slots, src, dst)
            except Exception as e:  # noqa: BLE001 - reported as an error of the check
                result["error"] = f"{type(e).__name__}: {e}"
            result["s"] = round(time.monotonic() - t, 2)
            result["end"] = time.monotonic()

        th = threading.Thread(target=resh, daemon=True)
        start = time.monotonic()
        th.start()
        during = load()
        load_end = time.monotonic()
        th.join(timeout=300)
        during["overlap"] = round(min(load_end, result.get("end", load_end)) - start, 2)
        during["reshard_s"] = result.get("s")
        during["reshard_error"] = result.get("error")
        during["direction"] = f"{src.address} -> {dst.address}"
        return during

    def direct_load() -> dict:
        return _load(a.tls_port, dctx, n, ["--cluster"])

    def drop_direct_keys() -> None:
        """redis-benchmark --cluster puts a hash tag in every key, a new one
        per request: its SETs would add ~n new keys each run, and later
        reshards would move more keys than earlier ones."""
        for m in env.masters():
            with m.client() as rc:
                # One UNLINK per key: a node refuses keys of several slots.
                pipe = rc.pipeline(transaction=False)
                for i, k in enumerate(rc.scan_iter(match="*{*", count=1000)):
                    pipe.unlink(k)
                    if i % 1000 == 999:
                        pipe.execute()
                pipe.execute()

    src, dst = b, a
    for r in range(rounds):
        steady = verified_load()
        out["steady"].append(steady)
        log(f"  round {r + 1}/{rounds} steady (n {n:,} SET + {n:,} GET): {_fmt(steady)}")
        during = loaded_reshard(src, dst, verified_load)
        out["during"].append(during)
        log(f"  round {r + 1}/{rounds} during a reshard ({during['reshard_s']} s): {_fmt(during)}"
            + (f"; reshard failed: {during['reshard_error']}" if during["reshard_error"] else ""))
        if during["reshard_error"]:
            break
        src, dst = dst, src
        out["direct_steady"].append(direct_load())
        drop_direct_keys()
        log(f"  round {r + 1}/{rounds} control, straight at the nodes, steady: "
            f"{_fmt(out['direct_steady'][-1])}")
        ctl = loaded_reshard(src, dst, direct_load)
        out["direct_during"].append(ctl)
        drop_direct_keys()
        log(f"  round {r + 1}/{rounds} control during a reshard ({ctl['reshard_s']} s): "
            f"{_fmt(ctl)}")
        if ctl["reshard_error"]:
            break
        src, dst = dst, src
    out["steady"].append(verified_load())
    log(f"  steady once more: {_fmt(out['steady'][-1])}")
    out["keys_end"] = sum(n_.command("DBSIZE") for n_ in env.masters())
    return out


def _fmt(r: dict) -> str:
    if "p99_ms" not in r:
        return f"failed rc {r.get('rc')}: {r.get('first_errors')}"
    return (f"{r['rps']:,.0f} req/s, p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms, "
            f"max {r['max_ms']:.1f} ms, {r['wall_s']} s, rc {r['rc']}, error lines "
            f"{r['errors_shown']}" + (f"; verifier {r['verifier']['ops']:,} commands, "
                                      f"{r['verifier']['errors']} errors"
                                      if "verifier" in r else ""))
