#!/usr/bin/python3
"""What the metrics cost on the request path: proxy CPU per request of GET/SET
at pipeline 16 (redis-benchmark, 50 connections) through a multiplexed
database, one worker, plaintext (so TLS does not hide the per-request work).

  bench/metrics_cost.py [--binary A] [--vs-binary B] [--rounds 5] [--requests 400000]

Phases, interleaved in each round so the machine's drift hits them alike:
  - "quiet":   the binary, no scrape;
  - "scraped": the same process while a client GETs /metrics every 100 ms
               (binaries with a metrics endpoint only);
  - "vs":      a second binary (e.g. one built before the metrics), no scrape.
Prints the median proxy CPU microseconds per request of each phase and the
ratios. Proxy CPU is utime+stime of the shardgate process from /proc.
"""

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    sys.exit(f"timed out waiting for {what}")


class Proxy:
    def __init__(self, binary: str, backend_port: int, workdir: Path, metrics: bool):
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "shardgate.yaml"
        text = (f"workers: 1\ncert_dir: ./certs\ndatabases:\n  - name: bench\n    listen: 127.0.0.1:0\n"
                f"    tls: false\n    multiplex: true\n    shards: [{{address: \"127.0.0.1:{backend_port}\"}}]\n")
        if metrics:
            text += "metrics:\n  listen: 127.0.0.1:0\n  tls: false\n"
        config.write_text(text)
        self.log = workdir / "shardgate.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([binary, "--config", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        text_of = lambda: self.log.read_text(errors="replace")
        m = wait_for(lambda: re.search(r"db bench listening on \S+:(\d+) ", text_of()), 15, "shardgate")
        self.port = int(m.group(1))
        self.metrics_port = None
        if metrics:
            m = wait_for(lambda: re.search(r"metrics listening on \S+:(\d+) ", text_of()), 5, "metrics")
            self.metrics_port = int(m.group(1))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def run_load(proxy: Proxy, requests: int, scrape: bool) -> float:
    """Proxy CPU microseconds per request of one redis-benchmark run."""
    stop = threading.Event()
    scrapes = [0]

    def scraper():
        url = f"http://127.0.0.1:{proxy.metrics_port}/metrics"
        while not stop.wait(0.1):
            with urllib.request.urlopen(url, timeout=5) as r:
                r.read()
            scrapes[0] += 1

    t = threading.Thread(target=scraper) if scrape else None
    before = cpu_seconds(proxy.proc.pid)
    if t:
        t.start()
    try:
        subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(proxy.port), "-c", "50", "-P", "16",
                        "-n", str(requests), "-t", "set,get", "-q"], check=True, capture_output=True, timeout=300)
    finally:
        stop.set()
        if t:
            t.join(10)
    after = cpu_seconds(proxy.proc.pid)
    return (after - before) * 1e6 / (2 * requests)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=str(REPO / "build" / "shardgate"))
    ap.add_argument("--vs-binary", default=None, help="a second shardgate, run without a metrics endpoint")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=400000)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        backend_port = free_port()
        redis = subprocess.Popen(["redis-server", "--port", str(backend_port), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no", "--dir", str(tmp)], stdout=subprocess.DEVNULL)
        proxies = []
        try:
            wait_for(lambda: subprocess.run(["redis-cli", "-p", str(backend_port), "ping"], capture_output=True,
                                            text=True).stdout.strip() == "PONG", 10, "redis-server")
            a = Proxy(args.binary, backend_port, tmp / "a", metrics=True)
            proxies.append(a)
            b = Proxy(args.vs_binary, backend_port, tmp / "b", metrics=False) if args.vs_binary else None
            if b:
                proxies.append(b)
            results = {"quiet": [], "scraped": [], "vs": []}
            run_load(a, args.requests // 4, False)  # warm-up
            if b:
                run_load(b, args.requests // 4, False)
            for r in range(args.rounds):
                results["quiet"].append(run_load(a, args.requests, False))
                results["scraped"].append(run_load(a, args.requests, True))
                if b:
                    results["vs"].append(run_load(b, args.requests, False))
                print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in results.items() if v),
                      flush=True)
        finally:
            for p in proxies:
                p.stop()
            redis.terminate()
            redis.wait(10)
    med = {k: statistics.median(v) for k, v in results.items() if v}
    for k, v in results.items():
        if v:
            print(f"{k:8s} proxy CPU us/request: median {med[k]:.3f} (min {min(v):.3f}, max {max(v):.3f})")
    print(f"scraped/quiet: {med['scraped'] / med['quiet']:.3f}")
    if "vs" in med:
        print(f"quiet/vs:      {med['quiet'] / med['vs']:.3f}")


if __name__ == "__main__":
    main()
