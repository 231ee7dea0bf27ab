"""The workloads of bench/run. Each function measures one target once and
returns a flat dict of figures (plus raw details), so rounds can be
interleaved and aggregated the same way for every workload.

"Proxy CPU" is the target's own utime+stime from /proc around the workload
(targets.Proc.cpu_seconds); for `direct` and `redis-tls` that is redis-server.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import resource
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import targets as T

HERE = Path(__file__).resolve().parent
KEYSPACE = 100000          # redis-benchmark -r: random keys
CLIENTS = 50


def _children_cpu() -> float:
    """CPU seconds of this process's reaped children (the load generators)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _tls_args(proc: T.Proc, ctx: T.Ctx) -> list[str]:
    if not proc.tls:
        return []
    out = ["--tls", "--cacert", str(ctx.certs["ca"])]
    if proc.client_cert:
        out += ["--cert", str(ctx.certs["client_cert"]), "--key", str(ctx.certs["client_key"])]
    return out


# ------------------------------------------------------------ a. GET/SET


def getset(proc: T.Proc, ctx: T.Ctx, pipeline: int, n: int, extra_args: list[str] = ()) -> dict:
    """redis-benchmark -t set,get: SET then GET, n requests each.

    req/s is the combined rate over both tests (2n requests / their summed
    durations); p50 is the mean of the two tests' p50s (equal request counts),
    p99 the worse of the two. Proxy CPU per request covers the whole run,
    including redis-benchmark's 50 connection setups per test, a constant that
    is small beside n requests."""
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(proc.port), *_tls_args(proc, ctx),
            "-c", str(CLIENTS), "-P", str(pipeline), "-n", str(n), "-r", str(KEYSPACE),
            "-t", "set,get", "--csv", *extra_args]
    cli0, cpu0, t0 = _children_cpu(), proc.cpu_seconds(), time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    wall, cpu = time.monotonic() - t0, proc.cpu_seconds() - cpu0
    client_cpu = _children_cpu() - cli0
    # --cluster prints the nodes it found before the CSV.
    table = r.stdout[max(0, r.stdout.find('"test"')):]
    rows = {row["test"]: row for row in csv.DictReader(io.StringIO(table))
            if row.get("test") in ("SET", "GET")}
    if r.returncode != 0 or set(rows) != {"SET", "GET"}:
        raise RuntimeError(f"redis-benchmark on {proc.name} failed (rc {r.returncode}): "
                           f"{(r.stderr or r.stdout).strip()[-400:]}")
    s, g = rows["SET"], rows["GET"]
    rps_set, rps_get = float(s["rps"]), float(g["rps"])
    duration = n / rps_set + n / rps_get
    return {
        "rps": 2 * n / duration,
        "p50_ms": (float(s["p50_latency_ms"]) + float(g["p50_latency_ms"])) / 2,
        "p99_ms": max(float(s["p99_latency_ms"]), float(g["p99_latency_ms"])),
        "cpu_us_per_req": cpu * 1e6 / (2 * n),
        # redis-benchmark is single-threaded: near 1.0 means the client, not
        # the target, set the pace.
        "client_core_share": client_cpu / wall,
        "raw": {"n": n, "pipeline": pipeline, "wall_s": round(wall, 3),
                "proxy_cpu_s": round(cpu, 3), "SET": s, "GET": g},
    }


def calibrate_getset(proc: T.Proc, ctx: T.Ctx, pipeline: int, seconds_per_test: float,
                     extra_args: list[str] = ()) -> int:
    """-n so that each test (SET, then GET) takes about seconds_per_test here.
    Doubles as the target's warm-up. The same n is then used in every round,
    so rounds stay comparable."""
    probe_n = 2000 if pipeline == 1 else 20000
    rps = getset(proc, ctx, pipeline, probe_n, extra_args)["rps"]
    step = 1000 * pipeline
    return max(step, int(rps * seconds_per_test / step) * step)


# ------------------------------------------------------- b. handshakes


def handshakes(proc: T.Proc, ctx: T.Ctx, mode: str, seconds: float) -> dict:
    """openssl s_time, one new connection per handshake, for `seconds`.

    s_time prints one character per connection as it goes ('*' full handshake,
    'r' resumed session). Its own summary counts whole seconds of time(), so
    its windows last T to T+1 s; instead the bench reads the characters as they
    arrive, stops s_time after exactly `seconds` and uses its own clock.
    -tls1_2: s_time never reads after the handshake, so it never receives a
    TLS 1.3 ticket and `-reuse` over TLS 1.3 resumes nothing (checked: all
    '*'); TLS 1.2 session resumption works, and both modes use it so that
    full and resumed figures are comparable."""
    assert mode in ("new", "reuse")
    argv = ["openssl", "s_time", "-connect", f"127.0.0.1:{proc.port}", f"-{mode}",
            "-time", str(int(seconds) + 30), "-CAfile", str(ctx.certs["ca"]), "-tls1_2"]
    if proc.client_cert:
        # A full handshake then carries the client's certificate and its
        # CertificateVerify, which the target checks; a resumed one carries none.
        argv += ["-cert", str(ctx.certs["client_cert"]), "-key", str(ctx.certs["client_key"])]
    cli0 = _children_cpu()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    buf = bytearray()
    try:
        fd = p.stdout.fileno()
        # -reuse makes one full handshake before its timed loop, and prints
        # "starting" when the loop begins: start the clock there.
        if mode == "reuse":
            end = time.monotonic() + 10
            while b"starting\n" not in buf and time.monotonic() < end:
                if select.select([fd], [], [], 0.5)[0]:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    buf += chunk
            buf = buf[buf.find(b"starting\n") + 9:] if b"starting\n" in buf else bytearray()
        cpu0, t0 = proc.cpu_seconds(), time.monotonic()
        end = t0 + seconds
        while (left := end - time.monotonic()) > 0:
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                buf += chunk
        wall, cpu = time.monotonic() - t0, proc.cpu_seconds() - cpu0
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    client_cpu = _children_cpu() - cli0
    text = buf.decode(errors="replace")
    full, resumed = 0, 0
    for word in text.split():
        # Only words made of progress characters, not the letters of s_time's
        # prose ("Collecting connection statistics for ...").
        if re.fullmatch(r"[*r]+", word):
            full += word.count("*")
            resumed += word.count("r")
    total = full + resumed
    if total == 0:
        raise RuntimeError(f"s_time -{mode} on {proc.name}: no connection completed")
    return {"hs_per_s": total / wall, "cpu_us_per_hs": cpu * 1e6 / total,
            "resumed_frac": resumed / total,
            # s_time is one process: near 1.0 means the client set the pace.
            "client_core_share": client_cpu / wall,
            "raw": {"mode": mode, "connections": total, "full": full, "resumed": resumed,
                    "wall_s": round(wall, 3), "proxy_cpu_s": round(cpu, 3)}}


# ------------------------------------------- c. idle memory / 10k connections


def idle_conns(tdef: T.TargetDef, ctx: T.Ctx, count: int, check: bool = False,
               settle_s: float = 0.25) -> dict:
    """RSS of a fresh instance of the target before and after `count` idle
    connections (TLS: handshake + PING + PONG, then idle).

    A fresh instance each time: an allocator keeps freed memory, so a process
    that already held connections in an earlier round would show a smaller
    growth; a new process makes every round measure the same thing. With
    check=True (the 10k check) every held connection is PINGed again after
    holding, and the target must still be running."""
    proc = T.start_target(tdef, ctx)
    helper = None
    try:
        time.sleep(settle_s)
        rss0 = proc.rss_kib()
        argv = [sys.executable, str(HERE / "idle_conns.py"), "--port", str(proc.port),
                "--count", str(count)]
        argv += ["--ca", str(ctx.certs["ca"])] if tdef.tls else ["--plain"]
        helper = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, preexec_fn=T.raise_nofile)
        opened = _read_json_line(helper, 180)
        time.sleep(settle_s)
        rss1 = proc.rss_kib()
        out = {"kib_per_conn": (rss1 - rss0) / max(1, opened["opened"]),
               "raw": {"count": count, "rss_before_kib": rss0, "rss_after_kib": rss1,
                       "open": opened}}
        if check:
            time.sleep(2)           # hold idle a little before the check
            helper.stdin.write("check\n")
            helper.stdin.flush()
            chk = _read_json_line(helper, 120)
            errors = opened["errors"] + chk["errors"]
            alive = proc.alive()
            out["raw"]["check"] = chk
            out["pass"] = (opened["opened"] == count and chk["alive"] == count
                           and errors == 0 and alive)
            out["errors"] = errors
            out["first_errors"] = opened["first_errors"] + chk["first_errors"]
            if not alive:
                out["first_errors"].append("target exited: " + proc.log_tail(3))
        return out
    finally:
        if helper is not None:
            try:
                helper.stdin.close()
            except OSError:
                pass
            try:
                helper.wait(timeout=20)
            except subprocess.TimeoutExpired:
                helper.kill()
                helper.wait()
        proc.stop()


def _read_json_line(p: subprocess.Popen, timeout: float) -> dict:
    fd = p.stdout.fileno()
    if not select.select([fd], [], [], timeout)[0]:
        raise RuntimeError(f"idle_conns helper silent for {timeout:.0f} s")
    line = p.stdout.readline()
    if not line:
        raise RuntimeError(f"idle_conns helper exited ({p.poll()})")
    return json.loads(line)


# ------------------------------------------------------ e. openssl speed


def openssl_speed(seconds: int) -> dict:
    """The physical limit on one core (taskset -c 0): P-256 signatures (one per
    full handshake on the server), X25519 (one per full handshake) and
    AES-128-GCM bytes/s at 16 KiB records (the bulk data path)."""
    def run(*algo: str) -> str:
        r = subprocess.run(["taskset", "-c", "0", "openssl", "speed", "-mr", "-seconds",
                            str(seconds), *algo], capture_output=True, text=True,
                           timeout=60 + 10 * seconds)
        return r.stdout + r.stderr

    out: dict = {"seconds": seconds}
    m = re.search(r"^\+F4:\d+:256:([\d.]+):([\d.]+)", run("ecdsap256"), re.M)
    if m:
        out["ecdsap256_sign_per_s"], out["ecdsap256_verify_per_s"] = float(m[1]), float(m[2])
    m = re.search(r"^\+F5:\d+:253:([\d.]+)", run("ecdhx25519"), re.M)
    if m:
        out["x25519_op_per_s"] = float(m[1])
    m = re.search(r"^\+F:\d+:AES-128-GCM:([\d.]+)", run("-bytes", "16384", "-evp",
                                                        "aes-128-gcm"), re.M)
    if m:
        out["aes128gcm_bytes_per_s_16k"] = float(m[1])
    return out


# ------------------------------------------------------ f. rotation soak


SOAK_PATTERNS = {
    "dropped": (r"connections dropped:\s+(\d+)", int),
    "failed": (r"failed requests:\s+(\d+)", int),
    "requests": (r"failed requests:.*?of (\d+) requests", int),
    "rotations_applied": (r"rotations applied:\s+(\d+)", int),
    "renames": (r"rotations \(renames\):\s+(\d+)", int),
    "p50_ms": (r"first new serial:\s+p50 (\d+) ms", int),
    "p99_ms": (r"first new serial:.*?p99 (\d+) ms", int),
    "applied_one_by_one": (r"applied one by one \(SIGHUP\):\s+(\d+) of", int),
    "rss_before_kib": (r"applied one by one.*?RSS before (\d+) kB", int),
    "rss_after_kib": (r"applied one by one.*?after (\d+) kB", int),
    "rss_delta_kib": (r"applied one by one.*?\(([+-]\d+) kB\)", int),
    "result": (r"RESULT: (\w+)", str),
}


def rotation_soak(quick: bool, shardgate_bin: Path) -> dict:
    """bench/rotation_soak against the release binary."""
    # --quick: 5 s of rotations under load and 100 applied one by one, so that
    # bench/run --quick stays well under 3 minutes.
    argv = [str(HERE / "rotation_soak")]
    argv += ["--seconds=5", "--applied=100"] if quick else ["--seconds=60"]
    env = dict(os.environ, SHARDGATE_BIN=str(shardgate_bin))
    t0 = time.monotonic()
    # Its own session, so that on Ctrl-C or a timeout the bench decides: SIGINT
    # to the soak's group lets rotation_soak stop its redis-server and
    # shardgate in its finally block (subprocess.run would SIGKILL the script
    # alone and orphan them); SIGKILL to the group only if that hangs.
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, start_new_session=True)
    try:
        stdout, stderr = p.communicate(timeout=150 if quick else 400)
    except BaseException:
        for sig, wait in ((signal.SIGINT, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(p.pid, sig)
                p.wait(timeout=wait)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        raise
    out: dict = {"rc": p.returncode, "seconds": round(time.monotonic() - t0, 1),
                 "args": argv[1:]}
    for key, (pat, conv) in SOAK_PATTERNS.items():
        m = re.search(pat, stdout)
        out[key] = conv(m[1]) if m else None
    out["output"] = stdout[-3000:] + (stderr[-1000:] if p.returncode else "")
    return out


# ------------------------------------------- g. 3 shards (shards3)


MGET_KEYS = 10


class Resp:
    """A minimal blocking RESP client (plaintext or verified TLS): enough for
    the shards3 correctness check, which must not trust redis-benchmark
    (it does not look at replies)."""

    def __init__(self, port: int, tls: bool = False, ca: Path | None = None,
                 timeout: float = 10.0, client_cert: tuple[Path, Path] | None = None):
        import socket
        import ssl
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            sctx = ssl.create_default_context(cafile=str(ca))
            if client_cert:
                sctx.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
            raw = sctx.wrap_socket(raw, server_hostname="localhost")
        self.sock = raw
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def encode(*args: str | bytes) -> bytes:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a.encode() if isinstance(a, str) else a
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(out)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed by the target")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed by the target")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RuntimeError(f"unexpected reply line {line[:80]!r}")

    def pipeline(self, cmds: list[tuple]) -> list:
        self.sock.sendall(b"".join(self.encode(*c) for c in cmds))
        return [self.reply() for _ in cmds]

    def call(self, *args):
        r = self.pipeline([args])[0]
        if isinstance(r, Exception):
            raise r
        return r


def bench_key(i: int) -> str:
    """redis-benchmark's key for random number i (-r): key:%012d."""
    return f"key:{i:012d}"


def shard_sizes(ports: list[int]) -> list[int]:
    out = []
    for p in ports:
        with Resp(p) as c:
            out.append(c.call("DBSIZE"))
    return out


def flush_shards(ports: list[int]) -> None:
    for p in ports:
        with Resp(p) as c:
            c.call("FLUSHALL")


def shards3_check(proc: T.Proc, ctx: T.Ctx, keys: int = 3000) -> dict:
    """Correctness before timing, on empty shards: SET `keys` keys through the
    target (pipelined), GET and MGET them back through it, count the keys on
    each shard directly; then redis-benchmark's own MSET of 10 __rand_int__
    keys (200 commands), which must add about 2,000 keys, so each
    __rand_int__ of one command is a different key and the target splits a
    multi-key command over the shards. A target that answers but sends
    everything to one shard fails ('at least 2 shards hold keys')."""
    problems: list[str] = []
    flush_shards(ctx.shard_ports)
    tls = proc.tls
    with Resp(proc.port, tls, ctx.certs["ca"]) as c:
        sets = c.pipeline([("SET", bench_key(i), f"v{i}") for i in range(keys)])
        bad = [r for r in sets if r != "OK"]
        if bad:
            problems.append(f"{len(bad)} of {keys} SETs not OK (first {bad[0]!r})")
        step = max(1, keys // 100)
        sample = list(range(0, keys, step))
        gets = c.pipeline([("GET", bench_key(i)) for i in sample])
        wrong = [i for i, v in zip(sample, gets) if v != f"v{i}".encode()]
        if wrong:
            problems.append(f"{len(wrong)} of {len(sample)} GETs wrong "
                            f"(key {wrong[0]}: {gets[sample.index(wrong[0])]!r})")
        for start in (0, keys // 2, keys - MGET_KEYS):
            ids = list(range(start, start + MGET_KEYS))
            got = c.call("MGET", *[bench_key(i) for i in ids])
            if got != [f"v{i}".encode() for i in ids]:
                problems.append(f"MGET of keys {ids[0]}..{ids[-1]} answered {str(got)[:120]}")
                break
        got = c.call("MGET", bench_key(keys + 7), bench_key(0))   # a miss and a hit
        if got != [None, b"v0"]:
            problems.append(f"MGET of a missing and a present key answered {got!r}")
    after_sets = shard_sizes(ctx.shard_ports)
    if sum(after_sets) != keys:
        problems.append(f"shards hold {sum(after_sets)} keys after {keys} SETs: {after_sets}")
    if sum(1 for n in after_sets if n > 0) < 2:
        problems.append(f"keys on fewer than 2 shards: {after_sets}")
    # redis-benchmark's custom command: keys key:%012d with 0 <= n < KEYSPACE.
    mset = ["MSET"] + [a for _ in range(MGET_KEYS) for a in ("key:__rand_int__", "xxx")]
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(proc.port), *_tls_args(proc, ctx),
            "-c", "1", "-n", "200", "-r", str(KEYSPACE), "-e", "--csv", *mset]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    after_mset = shard_sizes(ctx.shard_ports)
    added = sum(after_mset) - sum(after_sets)
    # 2,000 draws from 100,000 keys: ~20 repeats, ~60 hits on the first `keys`.
    if r.returncode != 0 or "Error" in r.stdout or added < 1800:
        problems.append(f"redis-benchmark MSET x{MGET_KEYS} (200 commands) added {added} keys "
                        f"(rc {r.returncode}) {(r.stdout + r.stderr).strip()[-200:]}")
    flush_shards(ctx.shard_ports)
    return {"pass": not problems, "problems": problems, "keys_per_shard": after_sets,
            "mset_keys_per_shard": [b - a for a, b in zip(after_sets, after_mset)]}


def populate_shards(ports: list[int], value: str = "xxx") -> None:
    """Every shard gets all KEYSPACE keys redis-benchmark can draw, with the
    value its SET writes (-d 3: "xxx"). Each target routes keys its own way
    (twemproxy: ketama over fnv1a_64; shardgate: hash slots), so with every key
    on every shard, every GET and MGET is a hit whichever shard is asked, and
    all targets answer the same replies."""
    blob = b"".join(Resp.encode("SET", bench_key(i), value) for i in range(KEYSPACE))
    for p in ports:
        r = subprocess.run(["redis-cli", "-p", str(p), "--pipe"], input=blob,
                           capture_output=True, timeout=120)
        if r.returncode != 0 or b"errors: 0" not in r.stdout:
            raise RuntimeError(f"populating shard :{p} failed: {r.stdout[-300:]!r}")


def mget(proc: T.Proc, ctx: T.Ctx, pipeline: int, n: int) -> dict:
    """redis-benchmark custom command MGET of MGET_KEYS random keys, n commands.
    -e prints error replies, which the run then refuses (redis-benchmark would
    otherwise time an error reply like any other). Figures are per MGET."""
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(proc.port), *_tls_args(proc, ctx),
            "-c", str(CLIENTS), "-P", str(pipeline), "-n", str(n), "-r", str(KEYSPACE),
            "-e", "--csv", "MGET", *["key:__rand_int__"] * MGET_KEYS]
    cli0, cpu0, t0 = _children_cpu(), proc.cpu_seconds(), time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    wall, cpu = time.monotonic() - t0, proc.cpu_seconds() - cpu0
    client_cpu = _children_cpu() - cli0
    rows = [row for row in csv.DictReader(io.StringIO(r.stdout))
            if row.get("test", "").startswith("MGET")]
    if r.returncode != 0 or len(rows) != 1 or "Error from server" in r.stdout:
        raise RuntimeError(f"redis-benchmark MGET on {proc.name} failed (rc {r.returncode}): "
                           f"{(r.stderr or r.stdout).strip()[-400:]}")
    row = rows[0]
    return {
        "rps": float(row["rps"]),
        "keys_per_s": float(row["rps"]) * MGET_KEYS,
        "p50_ms": float(row["p50_latency_ms"]),
        "p99_ms": float(row["p99_latency_ms"]),
        "cpu_us_per_req": cpu * 1e6 / n,
        "client_core_share": client_cpu / wall,
        "raw": {"n": n, "pipeline": pipeline, "keys": MGET_KEYS, "wall_s": round(wall, 3),
                "proxy_cpu_s": round(cpu, 3), "MGET": row},
    }


def calibrate_mget(proc: T.Proc, ctx: T.Ctx, pipeline: int, seconds: float) -> int:
    probe_n = 2000 if pipeline == 1 else 10000
    rps = mget(proc, ctx, pipeline, probe_n)["rps"]
    step = 500 * pipeline
    return max(step, int(rps * seconds / step) * step)


# ------------------------------- h. shard reconnects resumed (mtls)


def start_observer(ctx: T.Ctx, backend_port: int, d: Path) -> tuple[subprocess.Popen, int, Path]:
    """bench/shard_observer.py in front of the shard's plain port: a TLS shard
    that records, per accepted connection, whether the handshake resumed."""
    port = T.free_port()
    events = d / "observer_events.jsonl"
    events.touch()
    c = ctx.certs
    argv = [sys.executable, str(HERE / "shard_observer.py"), "--port", str(port),
            "--backend-port", str(backend_port), "--cert", str(c["cert"]),
            "--key", str(c["key"]), "--ca", str(c["ca"]), "--events", str(events)]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    if not select.select([p.stdout], [], [], 10)[0] or "listening" not in p.stdout.readline():
        p.kill()
        p.wait()
        raise RuntimeError("shard_observer.py did not start")
    return p, port, events


def observer_events(events: Path) -> list[dict]:
    return [json.loads(line) for line in events.read_text().splitlines() if line.strip()]


def shard_reconnects(tdef: T.TargetDef, ctx: T.Ctx, kill_port: int, events: Path,
                     count: int, per_kill_s: float = 5.0) -> dict:
    """Forces `count` shard reconnects on a fresh instance of the target whose
    shard is the observer (ctx.tls_shard_port), and counts how the resulting
    shard-side handshakes went, as the observer saw them.

    Each round: CLIENT KILL TYPE normal on the shard's plain port (which drops
    the observer's backend connections, so the observer drops the target's TLS
    connections), then a GET through the target (a new client connection when
    the target closed ours, as a proxy with a shard connection per client does)
    until the observer records a new handshake and a GET is answered. GET, not
    PING: a multiplexing proxy may answer PING itself without its shard. The
    handshake that set the target up comes before the first kill and is not
    counted: every counted one is a reconnect, which should resume."""
    proc = T.start_target(tdef, ctx)
    cc = (ctx.certs["client_cert"], ctx.certs["client_key"]) if tdef.client_cert else None
    client: Resp | None = None
    last: object = None

    def ping() -> bool:
        nonlocal client, last
        try:
            if client is None:
                client = Resp(proc.port, tdef.tls, ctx.certs["ca"], timeout=2, client_cert=cc)
            last = client.call("GET", "bench:reconnect-probe")
            return last is None         # the key never exists: a nil bulk reply
        except (OSError, RuntimeError) as e:
            last = e
            if client is not None:
                try:
                    client.close()
                except OSError:
                    pass
            client = None
            return False

    try:
        deadline = time.monotonic() + per_kill_s
        while not ping():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{tdef.name}: no GET answered through the observer "
                               f"({last!r})")
            time.sleep(0.02)
        time.sleep(0.2)             # connections a target opens at start (other workers)
        base = len(observer_events(events))
        killed, slow, slow_in_a_row = [], 0, 0
        for _ in range(count):
            if slow_in_a_row == 3:
                # A target that does not reconnect would cost per_kill_s per
                # round: three in a row is the verdict.
                raise RuntimeError(f"{tdef.name}: no new shard handshake within "
                                   f"{per_kill_s:.0f} s after each of 3 kills in a row "
                                   f"(last GET answered: {last!r})")
            before = len(observer_events(events))
            with Resp(kill_port) as k:
                killed.append(k.call("CLIENT", "KILL", "TYPE", "normal"))
            deadline = time.monotonic() + per_kill_s
            while True:
                ok = ping()
                if ok and len(observer_events(events)) > before:
                    slow_in_a_row = 0
                    break
                if time.monotonic() > deadline:
                    slow += 1
                    slow_in_a_row += 1
                    break
                time.sleep(0.01)
        time.sleep(0.3)             # reconnects of links the client did not use
        evs = observer_events(events)[base:]
        hs = [e for e in evs if "reused" in e]
        resumed = sum(1 for e in hs if e["reused"])
        return {"reconnects": count, "handshakes": len(hs), "resumed": resumed,
                "full": len(hs) - resumed,
                "resumed_frac": resumed / len(hs) if hs else 0.0,
                "failed_handshakes": len(evs) - len(hs),
                "versions": sorted({e.get("version") for e in hs}),
                "rounds_without_reconnect": slow,
                "killed_per_round": killed}
    finally:
        if client is not None:
            try:
                client.close()
            except OSError:
                pass
        proc.stop()


def connect_ping(proc: T.Proc, ctx: T.Ctx, resume: bool, seconds: float) -> dict:
    """A new connection per request, for `seconds`: TLS handshake with the
    client certificate (TLS 1.3, the default), one GET of a missing key (a
    command every target sends to the shard; a multiplexing proxy may answer
    PING itself), its nil reply, close.
    resume=True offers the previous connection's session (a TLS 1.3 ticket,
    read with the PONG).

    s_time (the hs_* workloads) sends no command, and a proxy that opens its
    shard connection on the client's first command (shardgate's transparent
    mode) then never touches the shard, while one that connects on accept
    (haproxy, stunnel) does. Here every connection carries a command, so
    every target pays what a real client's connection costs it: its
    client-side handshake plus, for a proxy with a shard connection per
    client, the TLS connection to the shard. The client is Python, so the
    rate is the client's; CPU per connection is the target's own."""
    import socket
    import ssl
    sctx = ssl.create_default_context(cafile=str(ctx.certs["ca"]))
    if proc.client_cert:
        sctx.load_cert_chain(str(ctx.certs["client_cert"]), str(ctx.certs["client_key"]))
    session = None
    full = resumed = 0

    def one() -> None:
        nonlocal session, full, resumed
        raw = socket.create_connection(("127.0.0.1", proc.port), timeout=5)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s = sctx.wrap_socket(raw, server_hostname="localhost", session=session)
        try:
            s.sendall(b"*2\r\n$3\r\nGET\r\n$20\r\nbench:conn-probe-key\r\n")
            buf = b""
            while not buf.endswith(b"\r\n"):
                chunk = s.recv(64)
                if not chunk:
                    break
                buf += chunk
            if buf != b"$-1\r\n":
                raise RuntimeError(f"GET through {proc.name} answered {buf!r}")
            if s.session_reused:
                resumed += 1
            else:
                full += 1
            if resume:
                session = s.session
        finally:
            s.close()

    if resume:
        one()                       # the session to resume
        full = resumed = 0
    cpu0, t0 = proc.cpu_seconds(), time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        one()
    wall, cpu = time.monotonic() - t0, proc.cpu_seconds() - cpu0
    total = full + resumed
    return {"conns_per_s": total / wall, "cpu_us_per_conn": cpu * 1e6 / total,
            "resumed_frac": resumed / total,
            "raw": {"connections": total, "full": full, "resumed": resumed,
                    "wall_s": round(wall, 3), "proxy_cpu_s": round(cpu, 3)}}
