#!/usr/bin/python3
"""Syscalls per command on one Redis Cluster master: behind shardgate against
redis-benchmark --cluster straight at the nodes.

    bench/cluster_syscalls.py [N]

Starts the cluster group's TLS cluster (bench/cluster.py) and
shardgate-cluster-1w in front of it, then runs `redis-benchmark -t get -P 16
-c 50 -n N` (default 200,000) once through shardgate and once with --cluster
straight at the nodes' TLS ports, each under `strace -c -f` on the first
master, and prints read/write/epoll_wait calls per command that master
processed (INFO stats). strace slows that master, so the rates printed are
not figures to quote; the per-command counts are. Every process started is
stopped at the end. Needs the release build (bench/run builds it).
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cluster as C  # noqa: E402
import setup_env  # noqa: E402
import targets as T  # noqa: E402


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200000
    d = Path(tempfile.mkdtemp(prefix="shardgate-cluster-syscalls."))
    certs = setup_env.make_certs(d / "certs")
    ctx = T.Ctx(certs, setup_env.SHARDGATE_BIN, d)
    cl = C.Cluster(d / "cluster")
    sg = None
    try:
        m = cl.masters()
        cctx = dataclasses.replace(ctx, cluster_seeds=[x.port for x in m],
                                   cluster_tls_seeds=[x.tls_port for x in m],
                                   cluster_ca=cl.env.ca_cert)
        sg = T.start_target(T.BY_NAME["shardgate-cluster-1w"], cctx)
        common = ["-c", "50", "-P", "16", "-n", str(n), "-r", "100000", "-t", "get", "-q"]
        runs = {
            "through shardgate-cluster-1w": ["redis-benchmark", "-h", "127.0.0.1", "-p",
                                             str(sg.port), "--tls", "--cacert",
                                             str(certs["ca"]), *common],
            "redis-benchmark --cluster": ["redis-benchmark", "--cluster", "-h", "127.0.0.1",
                                          "-p", str(m[0].tls_port), "--tls", "--cacert",
                                          str(cl.env.ca_cert), *common],
        }
        node = m[0]
        for name, argv in runs.items():
            out = d / "strace.txt"
            with node.client() as r:
                cmds0 = r.info("stats")["total_commands_processed"]
            st = subprocess.Popen(["strace", "-c", "-f", "-p", str(node.proc.pid), "-o", str(out)],
                                  stderr=subprocess.DEVNULL)
            time.sleep(1)   # strace attached before the load starts
            subprocess.run(argv, capture_output=True, text=True, timeout=300)
            st.terminate()
            st.wait(timeout=10)
            with node.client() as r:
                cmds = r.info("stats")["total_commands_processed"] - cmds0
            print(f"{name}: {cmds:,} commands on master {node.address}")
            for line in out.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 5 and parts[-1] in ("read", "write", "writev", "epoll_wait"):
                    calls = int(parts[3])
                    print(f"   {parts[-1]:<11} {calls:>8} calls, {calls / cmds:.3f} per command")
    finally:
        if sg is not None:
            sg.stop()
        cl.stop()


if __name__ == "__main__":
    main()
