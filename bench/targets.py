"""The benchmark targets: one place that says how each one is started.

Every target is a server on a free loopback port. `direct` is a plaintext
redis-server: the baseline for every ratio and the backend of every proxy.
The others serve the same ECDSA P-256 leaf (see setup_env.make_certs).

A target is started with start_target(); the returned Proc knows every process
of the target (by process group: each server is started in its own session, so
nginx's workers are found with their master) and reads their CPU time and RSS
from /proc. Proc.stop() ends that process group only.
"""
from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

CLK_TCK = os.sysconf("SC_CLK_TCK")
NGINX_STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
# redis-server's own client limit: each proxied client is also a backend client.
REDIS_MAXCLIENTS = 20000
# Idle connections must survive the memory and 10k phases, so no target may
# time them out in under an hour.
IDLE_TIMEOUT_S = 3600


@dataclass
class Ctx:
    """What every target's start function needs."""
    certs: dict[str, Path]
    shardgate_bin: Path
    workdir: Path
    direct_port: int = 0       # set once `direct` is up; every proxy forwards there
    shard_ports: list[int] = field(default_factory=list)  # the 3 shards of `shards3`
    tls_shard_port: int = 0    # the mtls group's TLS shard (or the observer in front of it)
    # The cluster group's Redis Cluster: its masters' plaintext and TLS ports
    # (seeds) and the CA its nodes' certificate chains to.
    cluster_seeds: list[int] = field(default_factory=list)
    cluster_tls_seeds: list[int] = field(default_factory=list)
    cluster_ca: Path | None = None


@dataclass(frozen=True)
class TargetDef:
    name: str
    tls: bool
    peer: bool                 # a peer shardgate is compared against
    start: Callable[[Ctx, int, Path], tuple[list[str], dict]]  # -> argv, extra Popen kwargs
    what_is_measured: str      # whose CPU and RSS the "proxy" figures are
    handshake_only: bool = False  # serves handshakes, not Redis: only the handshake workload
    handshakes: bool = True       # False: its handshake path is another target's; not re-timed
    client_cert: bool = False     # clients must present the bench's client certificate
    shard_tls: bool = False       # speaks TLS to its shard (the mtls group's reconnect workload)


# ------------------------------------------------------------------ processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile() -> None:
    """preexec_fn and bench process: take the hard limit for open files.

    The hard limit cannot be raised without CAP_SYS_RESOURCE, so the soft
    limit goes up to it; the 10k check reports when that is not enough."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _read_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2:].split()


@dataclass
class Proc:
    name: str
    port: int
    popen: subprocess.Popen
    log: Path
    dir: Path
    tls: bool
    client_cert: bool = False
    _pgid: int = field(init=False)

    def __post_init__(self) -> None:
        self._pgid = self.popen.pid     # start_new_session=True: pgid == pid

    def pids(self) -> list[int]:
        """The root process and everything in its process group (nginx workers)."""
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            st = _read_stat(int(d))
            # st[2] is pgrp (fields after comm: state ppid pgrp ...)
            if st is not None and int(st[2]) == self._pgid:
                out.append(int(d))
        return out

    def cpu_seconds(self) -> float:
        """utime+stime summed over the target's processes; /proc/PID/stat of a
        process already covers all its threads."""
        ticks = 0
        for pid in self.pids():
            st = _read_stat(pid)
            if st is not None:
                ticks += int(st[11]) + int(st[12])   # utime, stime
        return ticks / CLK_TCK

    def rss_kib(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM to the target's process group, SIGKILL after 5 s."""
        if self.popen.poll() is None:
            try:
                os.killpg(self._pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        # Children (nginx workers) may outlive the master briefly.
        try:
            os.killpg(self._pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def probe(port: int, tls: bool, ca: Path, timeout: float = 3.0, ping: bool = True,
          client_cert: tuple[Path, Path] | None = None) -> None:
    """One PING through the target, verifying the certificate: the whole path
    (TLS, proxy, backend) works before anything is measured. ping=False: the
    verified handshake alone. client_cert: (certificate, key) to present."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        sock: socket.socket = raw
        if tls:
            ctx = ssl.create_default_context(cafile=str(ca))
            if client_cert:
                ctx.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
            sock = ctx.wrap_socket(raw, server_hostname="localhost")
        if not ping:
            return
        # RESP, not the inline form: twemproxy closes on an inline command.
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        buf = b""
        while not buf.endswith(b"\r\n"):
            chunk = sock.recv(64)
            if not chunk:
                break
            buf += chunk
        if buf != b"+PONG\r\n":
            raise RuntimeError(f"PING answered {buf!r}")


def start_target(tdef: TargetDef, ctx: Ctx, port: int | None = None,
                 timeout: float = 15.0) -> Proc:
    port = port or free_port()
    d = ctx.workdir / f"{tdef.name}-{port}"
    d.mkdir(parents=True, exist_ok=True)
    argv, kw = tdef.start(ctx, port, d)
    log = d / "output.log"
    with open(log, "wb") as logf:
        popen = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True,
                                 preexec_fn=raise_nofile, cwd=d, **kw)
    proc = Proc(tdef.name, port, popen, log, d, tdef.tls, tdef.client_cert)
    cc = (ctx.certs["client_cert"], ctx.certs["client_key"]) if tdef.client_cert else None
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            proc.stop()
            raise RuntimeError(f"{tdef.name} exited with {popen.returncode} on start:\n"
                               f"{proc.log_tail()}")
        try:
            probe(port, tdef.tls, ctx.certs["ca"], ping=not tdef.handshake_only,
                  client_cert=cc)
            return proc
        except (OSError, RuntimeError, ssl.SSLError) as e:
            last = e
            time.sleep(0.05)
    proc.stop()
    raise RuntimeError(f"{tdef.name} not answering on {port} after {timeout:.0f} s "
                       f"({last}):\n{proc.log_tail()}")


# -------------------------------------------------------- target definitions


def _redis_common() -> list[str]:
    # No persistence: a snapshot fork would land in some target's measurement.
    return ["--save", "", "--appendonly", "no", "--bind", "127.0.0.1",
            "--maxclients", str(REDIS_MAXCLIENTS), "--daemonize", "no",
            "--loglevel", "warning"]


def start_direct(ctx: Ctx, port: int, d: Path):
    return ["redis-server", "--port", str(port), *_redis_common()], {}


def start_redis_tls(ctx: Ctx, port: int, d: Path):
    c = ctx.certs
    # tls-session-caching is on by default (TLS 1.2 session ids and tickets).
    return ["redis-server", "--port", "0", "--tls-port", str(port),
            "--tls-cert-file", str(c["cert"]), "--tls-key-file", str(c["key"]),
            "--tls-ca-cert-file", str(c["ca"]), "--tls-auth-clients", "no",
            *_redis_common()], {}


def _stunnel_conf(ctx: Ctx, port: int, connect_port: int, d: Path) -> Path:
    c = ctx.certs
    conf = d / "stunnel.conf"
    # TCP_NODELAY on both sides, as haproxy and nginx do by default; session
    # cache (TLS 1.2) and tickets are stunnel's defaults.
    conf.write_text(f"""foreground = yes
pid = {d / 'stunnel.pid'}
debug = warning
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1

[redis]
accept = 127.0.0.1:{port}
connect = 127.0.0.1:{connect_port}
cert = {c['cert']}
key = {c['key']}
TIMEOUTidle = {IDLE_TIMEOUT_S}
""")
    return conf


def start_stunnel(ctx: Ctx, port: int, d: Path):
    return ["stunnel4", str(_stunnel_conf(ctx, port, ctx.direct_port, d))], {}


def start_haproxy(ctx: Ctx, port: int, d: Path):
    conf = d / "haproxy.cfg"
    # haproxy refuses to start when maxconn needs more descriptors than the
    # hard limit allows (two per proxied connection), so maxconn is what the
    # limit affords, up to 30000. Session tickets are on by default.
    maxconn = min(30000, (resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 200) // 2)
    conf.write_text(f"""global
    nbthread 2
    maxconn {maxconn}
    pidfile {d / 'haproxy.pid'}

defaults
    mode tcp
    maxconn {maxconn}
    timeout connect 5s
    timeout client {IDLE_TIMEOUT_S}s
    timeout server {IDLE_TIMEOUT_S}s

frontend fe
    bind 127.0.0.1:{port} ssl crt {ctx.certs['combined']}
    default_backend be

backend be
    server s1 127.0.0.1:{ctx.direct_port}
""")
    return ["haproxy", "-db", "-f", str(conf)], {}


def start_nginx(ctx: Ctx, port: int, d: Path):
    c = ctx.certs
    conf = d / "nginx.conf"
    conf.write_text(f"""load_module {NGINX_STREAM_MODULE};
daemon off;
master_process on;
worker_processes 2;
worker_rlimit_nofile 20000;
pid {d / 'nginx.pid'};
error_log {d / 'error.log'} warn;

events {{
    worker_connections 20000;
}}

stream {{
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {c['cert']};
        ssl_certificate_key {c['key']};
        ssl_session_tickets on;
        ssl_session_cache shared:SSL:10m;
        proxy_pass 127.0.0.1:{ctx.direct_port};
        proxy_timeout {IDLE_TIMEOUT_S}s;
    }}
}}
""")
    # -e: nginx opens its default error log before reading the config.
    return ["nginx", "-p", str(d), "-e", str(d / "error.log"), "-c", str(conf)], {}


def _start_shardgate(workers: str, tls: bool = True, multiplex: bool = False) -> Callable:
    def start(ctx: Ctx, port: int, d: Path):
        conf = d / "shardgate.yaml"
        conf.write_text(f"""workers: {workers}
log_level: warn
cert_dir: {json.dumps(str(ctx.certs['shardgate_dir']))}
generate_self_signed: false
drain_timeout_ms: 1000
databases:
  - name: bench
    listen: "127.0.0.1:{port}"
    tls: {"true" if tls else "false"}
    multiplex: {"true" if multiplex else "false"}
    shards:
      - address: "127.0.0.1:{ctx.direct_port}"
""")
        return [str(ctx.shardgate_bin), "--config", str(conf)], {}
    return start


def _start_floor(binary: str) -> Callable:
    def start(ctx: Ctx, port: int, d: Path):
        floor = ctx.shardgate_bin.parent / binary
        return [str(floor), str(ctx.certs["shardgate_dir"]), str(port)], {}
    return start


REDIS_ITSELF = "redis-server itself (no proxy in front)"
TARGETS: list[TargetDef] = [
    TargetDef("direct", False, False, start_direct, REDIS_ITSELF + ", plaintext"),
    TargetDef("redis-tls", True, True, start_redis_tls, REDIS_ITSELF + ", its own TLS port"),
    TargetDef("stunnel", True, True, start_stunnel, "stunnel4 process"),
    TargetDef("haproxy", True, True, start_haproxy, "haproxy process (2 threads)"),
    TargetDef("nginx", True, True, start_nginx, "nginx master + 2 workers"),
    TargetDef("shardgate-1w", True, False, _start_shardgate("1"), "shardgate, workers: 1"),
    TargetDef("shardgate", True, False, _start_shardgate("auto"), "shardgate, workers: auto"),
    # multiplex: true, the one-shard multiplexed path: clients share pipelined
    # shard connections. Its TLS handshake is the same code as above's, so the
    # handshake workload leaves it out.
    TargetDef("shardgate-mux-1w", True, False, _start_shardgate("1", multiplex=True),
              "shardgate, workers: 1, multiplex: true", handshakes=False),
    TargetDef("shardgate-mux", True, False, _start_shardgate("auto", multiplex=True),
              "shardgate, workers: auto, multiplex: true", handshakes=False),
    # The relay's floor: the same process and syscalls with TLS off, so the
    # table shows how much of a TLS proxy's cost is the relaying itself.
    TargetDef("relay-floor", False, False, _start_shardgate("1", tls=False),
              "shardgate, workers: 1, tls: false (relaying alone, no TLS)"),
    # The handshake's floor: shardgate's TLS layer in a blocking one-thread
    # server with no event loop and no backend (bench/floor/tls_floor_server.cpp).
    TargetDef("tls-floor", True, False, _start_floor("tls_floor_server"),
              "tls_floor_server: the TLS layer alone", handshake_only=True),
    # The same on a libuv loop (bench/floor/tls_loop_floor_server.cpp): the
    # floor of any non-blocking server built on this TLS layer.
    TargetDef("tls-loop-floor", True, False, _start_floor("tls_loop_floor_server"),
              "tls_loop_floor_server: the TLS layer on a libuv loop", handshake_only=True),
]


# ------------------------------------------- the 3-shard workload (shards3)
#
# Three plain redis-servers (SHARD, started with start_target like any target)
# hold the data; every SHARD3_TARGETS entry spreads keys over all three. The
# shards are shared by those targets, so a target's "proxy CPU" is its own
# processes only, never the shards'.

SHARD3_SLOTS = ["0-5460", "5461-10922", "10923-16383"]   # hash slots in thirds
SHARD = TargetDef("shard", False, False, start_direct, REDIS_ITSELF + ", one shard of three")


def _nutcracker() -> str:
    # Debian installs it in /usr/sbin, which is not on every user's PATH.
    return shutil.which("nutcracker") or "/usr/sbin/nutcracker"


def _twemproxy_argv(ctx: Ctx, port: int, d: Path) -> list[str]:
    """nutcracker over the 3 shards. twemproxy knows no Redis Cluster slots: it
    spreads keys with its own hash and distribution (fnv1a_64 + ketama, the
    pairing its README recommends), which is the same 3-way spread for this
    workload. One connection per shard, opened at start (preconnect), shared
    by every client, as shardgate does."""
    conf = d / "nutcracker.yml"
    servers = "\n".join(f"    - 127.0.0.1:{p}:1 shard{i}" for i, p in enumerate(ctx.shard_ports))
    conf.write_text(f"""shards3:
  listen: 127.0.0.1:{port}
  redis: true
  hash: fnv1a_64
  distribution: ketama
  preconnect: true
  server_connections: 1
  auto_eject_hosts: false
  backlog: 1024
  servers:
{servers}
""")
    # -s: each instance needs its own stats port (the default 22222 would clash).
    return [_nutcracker(), "-c", str(conf), "-s", str(free_port()), "-a", "127.0.0.1",
            "-o", str(d / "nutcracker.log")]


def start_twemproxy(ctx: Ctx, port: int, d: Path):
    return _twemproxy_argv(ctx, port, d), {}


def start_stunnel_twemproxy(ctx: Ctx, port: int, d: Path):
    """stunnel4 (TLS) -> its own nutcracker: the TLS-capable sharding proxy a
    user would otherwise assemble. Both run in one process group (the shell
    starts nutcracker, then becomes stunnel), so Proc's CPU and RSS figures
    are stunnel's plus twemproxy's and Proc.stop() ends both."""
    tw_port = free_port()
    tw = _twemproxy_argv(ctx, tw_port, d)
    conf = _stunnel_conf(ctx, port, tw_port, d)
    script = f"{shlex.join(tw)} & exec stunnel4 {shlex.quote(str(conf))}"
    return ["/bin/sh", "-c", script], {}


def _start_shardgate3(workers: str) -> Callable:
    def start(ctx: Ctx, port: int, d: Path):
        conf = d / "shardgate.yaml"
        shards = "".join(f"""      - address: "127.0.0.1:{p}"
        slots: "{s}"
""" for p, s in zip(ctx.shard_ports, SHARD3_SLOTS))
        conf.write_text(f"""workers: {workers}
log_level: warn
cert_dir: {json.dumps(str(ctx.certs['shardgate_dir']))}
generate_self_signed: false
drain_timeout_ms: 1000
databases:
  - name: bench3
    listen: "127.0.0.1:{port}"
    tls: true
    shards:
{shards}""")
        return [str(ctx.shardgate_bin), "--config", str(conf)], {}
    return start


SHARD3_TARGETS: list[TargetDef] = [
    TargetDef("twemproxy", False, True, start_twemproxy,
              "nutcracker process (plaintext, 1 connection per shard)"),
    TargetDef("stunnel-twemproxy", True, True, start_stunnel_twemproxy,
              "stunnel4 + nutcracker processes"),
    TargetDef("shardgate-3-1w", True, False, _start_shardgate3("1"),
              "shardgate, workers: 1, 3 shards"),
    TargetDef("shardgate-3", True, False, _start_shardgate3("auto"),
              "shardgate, workers: auto, 3 shards"),
]


# ------------------------------------- client certificates + TLS to the shard (mtls)
#
# One redis-server with a TLS port that requires a client certificate
# (`tls-auth-clients yes`) is the shard; every MTLS_TARGETS proxy asks its
# clients for a certificate (the bench's client.pem, verified against ca.pem)
# and speaks TLS to that shard, presenting the same client certificate and
# verifying the shard's (the leaf, which carries IP:127.0.0.1). The shard's
# plain port is the bench's own door: CLIENT KILL, and the backend of
# bench/shard_observer.py for the reconnect workload.


def start_tls_shard(ctx: Ctx, port: int, d: Path):
    """`port` is the plain port (probed, used for CLIENT KILL); the TLS port is
    ctx.tls_shard_port, chosen by the caller."""
    c = ctx.certs
    return ["redis-server", "--port", str(port), "--tls-port", str(ctx.tls_shard_port),
            "--tls-cert-file", str(c["cert"]), "--tls-key-file", str(c["key"]),
            "--tls-ca-cert-file", str(c["ca"]), "--tls-auth-clients", "yes",
            *_redis_common()], {}


def start_redis_mtls(ctx: Ctx, port: int, d: Path):
    c = ctx.certs
    return ["redis-server", "--port", "0", "--tls-port", str(port),
            "--tls-cert-file", str(c["cert"]), "--tls-key-file", str(c["key"]),
            "--tls-ca-cert-file", str(c["ca"]), "--tls-auth-clients", "yes",
            *_redis_common()], {}


def start_stunnel_mtls(ctx: Ctx, port: int, d: Path):
    """stunnel has no TLS-to-TLS service: a service is a TLS server or (client
    = yes) a TLS client. So two services in one process, chained over a
    loopback port: [mtls-in] terminates the clients' TLS and requires their
    certificate, [mtls-out] is the TLS client to the shard. Proc's CPU is the
    one stunnel process, both services and the loopback hop between them."""
    c = ctx.certs
    mid = free_port()
    conf = d / "stunnel.conf"
    conf.write_text(f"""foreground = yes
pid = {d / 'stunnel.pid'}
debug = warning
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1

[mtls-in]
accept = 127.0.0.1:{port}
connect = 127.0.0.1:{mid}
cert = {c['cert']}
key = {c['key']}
CAfile = {c['ca']}
requireCert = yes
verifyChain = yes
TIMEOUTidle = {IDLE_TIMEOUT_S}

[mtls-out]
client = yes
accept = 127.0.0.1:{mid}
connect = 127.0.0.1:{ctx.tls_shard_port}
cert = {c['client_cert']}
key = {c['client_key']}
CAfile = {c['ca']}
verifyChain = yes
checkIP = 127.0.0.1
TIMEOUTidle = {IDLE_TIMEOUT_S}
""")
    return ["stunnel4", str(conf)], {}


def start_haproxy_mtls(ctx: Ctx, port: int, d: Path):
    c = ctx.certs
    conf = d / "haproxy.cfg"
    maxconn = min(30000, (resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 200) // 2)
    # The server line: TLS, the shard's certificate verified against the CA,
    # the client certificate presented. haproxy reuses the last session per
    # server and thread by default (no-ssl-reuse would turn it off).
    conf.write_text(f"""global
    nbthread 2
    maxconn {maxconn}
    pidfile {d / 'haproxy.pid'}

defaults
    mode tcp
    maxconn {maxconn}
    timeout connect 5s
    timeout client {IDLE_TIMEOUT_S}s
    timeout server {IDLE_TIMEOUT_S}s

frontend fe
    bind 127.0.0.1:{port} ssl crt {c['combined']} ca-file {c['ca']} verify required
    default_backend be

backend be
    server s1 127.0.0.1:{ctx.tls_shard_port} ssl verify required ca-file {c['ca']} crt {c['client_combined']}
""")
    return ["haproxy", "-db", "-f", str(conf)], {}


def _start_shardgate_mtls(workers: str, multiplex: bool, client_tls: bool = True) -> Callable:
    """shard_tls as agreed for issue 16: ca, cert, key by absolute path; no
    server_name, so the shard's certificate must carry 127.0.0.1 (it does)."""
    def start(ctx: Ctx, port: int, d: Path):
        c = ctx.certs
        conf = d / "shardgate.yaml"
        client = (f"""    tls: true
    client_auth: required
    client_ca: {json.dumps(str(c['ca']))}
""" if client_tls else "    tls: false\n")
        conf.write_text(f"""workers: {workers}
log_level: warn
cert_dir: {json.dumps(str(c['shardgate_dir']))}
generate_self_signed: false
drain_timeout_ms: 1000
databases:
  - name: bench
    listen: "127.0.0.1:{port}"
{client}    multiplex: {"true" if multiplex else "false"}
    shard_tls:
      ca: {json.dumps(str(c['ca']))}
      cert: {json.dumps(str(c['client_cert']))}
      key: {json.dumps(str(c['client_key']))}
    shards:
      - address: "127.0.0.1:{ctx.tls_shard_port}"
""")
        return [str(ctx.shardgate_bin), "--config", str(conf)], {}
    return start


TLS_SHARD = TargetDef("tls-shard", False, False, start_tls_shard,
                      REDIS_ITSELF + ", the mtls group's TLS shard")
MTLS_TARGETS: list[TargetDef] = [
    TargetDef("redis-mtls", True, True, start_redis_mtls,
              REDIS_ITSELF + ", its own TLS port, tls-auth-clients yes", client_cert=True),
    TargetDef("stunnel-mtls", True, True, start_stunnel_mtls,
              "stunnel4 process (two chained services)", client_cert=True, shard_tls=True),
    TargetDef("haproxy-mtls", True, True, start_haproxy_mtls,
              "haproxy process (2 threads)", client_cert=True, shard_tls=True),
    TargetDef("shardgate-mtls-1w", True, False, _start_shardgate_mtls("1", False),
              "shardgate, workers: 1", client_cert=True, shard_tls=True),
    TargetDef("shardgate-mtls", True, False, _start_shardgate_mtls("auto", False),
              "shardgate, workers: auto", client_cert=True, shard_tls=True),
    TargetDef("shardgate-mtls-mux-1w", True, False, _start_shardgate_mtls("1", True),
              "shardgate, workers: 1, multiplex: true", client_cert=True, shard_tls=True),
    TargetDef("shardgate-mtls-mux", True, False, _start_shardgate_mtls("auto", True),
              "shardgate, workers: auto, multiplex: true", client_cert=True, shard_tls=True),
    # TLS to the shard alone: plaintext clients, so the table shows what the
    # shard hop costs without the client side's TLS.
    TargetDef("shard-tls", False, False, _start_shardgate_mtls("1", False, client_tls=False),
              "shardgate, workers: 1, tls: false, TLS to the shard", shard_tls=True),
]


# ------------------------------------------------ a Redis Cluster (cluster)
#
# A 3-master/3-replica Redis Cluster whose nodes serve TLS on a tls-port (and
# speak TLS on the cluster bus and for replication) beside a plaintext port;
# bench/cluster.py starts it with tests/integration/cluster_env.py. Its peer,
# `direct-cluster-tls`, is redis-benchmark --cluster --tls at the nodes' TLS
# ports (no process of its own: bench/cluster.py measures the nodes). The
# shardgate rows take TLS from the clients and find the nodes from the seeds.


def _start_shardgate_cluster(workers: str, tls_to_nodes: bool) -> Callable:
    """`cluster: {seeds}` over the masters' plaintext ports (the nodes do no
    TLS for shardgate's traffic) or, tls_to_nodes, their TLS ports with
    shard_tls (the nodes' certificate carries IP:127.0.0.1, so no server_name)."""
    def start(ctx: Ctx, port: int, d: Path):
        seeds = ctx.cluster_tls_seeds if tls_to_nodes else ctx.cluster_seeds
        shard_tls = (f"""    shard_tls:
      ca: {json.dumps(str(ctx.cluster_ca))}
""" if tls_to_nodes else "")
        conf = d / "shardgate.yaml"
        conf.write_text(f"""workers: {workers}
log_level: warn
cert_dir: {json.dumps(str(ctx.certs['shardgate_dir']))}
generate_self_signed: false
drain_timeout_ms: 1000
databases:
  - name: cluster
    listen: "127.0.0.1:{port}"
    tls: true
    cluster:
      seeds: [{", ".join(f'"127.0.0.1:{p}"' for p in seeds)}]
{shard_tls}""")
        return [str(ctx.shardgate_bin), "--config", str(conf)], {}
    return start


CLUSTER_DIRECT = "direct-cluster-tls"
CLUSTER_TARGETS: list[TargetDef] = [
    TargetDef("shardgate-cluster-1w", True, False, _start_shardgate_cluster("1", False),
              "shardgate, workers: 1, plaintext to the nodes"),
    TargetDef("shardgate-cluster", True, False, _start_shardgate_cluster("auto", False),
              "shardgate, workers: auto, plaintext to the nodes"),
    TargetDef("shardgate-cluster-tls", True, False, _start_shardgate_cluster("auto", True),
              "shardgate, workers: auto, shard_tls to the nodes' TLS ports"),
]

BY_NAME = {t.name: t for t in TARGETS + SHARD3_TARGETS + MTLS_TARGETS + CLUSTER_TARGETS}
PEERS = [t.name for t in TARGETS if t.peer]
# Plain forwarding (the default for one shard) and multiplex: true.
SHARDGATES_PLAIN = ["shardgate-1w", "shardgate"]
SHARDGATES = SHARDGATES_PLAIN + ["shardgate-mux-1w", "shardgate-mux"]
SHARD3_NAMES = [t.name for t in SHARD3_TARGETS]
MTLS_NAMES = [t.name for t in MTLS_TARGETS]
MTLS_PEERS = ["haproxy-mtls", "stunnel-mtls"]
# direct-cluster-tls is no TargetDef (nothing of its own to start), but a name
# --targets accepts.
CLUSTER_NAMES = [CLUSTER_DIRECT] + [t.name for t in CLUSTER_TARGETS]
